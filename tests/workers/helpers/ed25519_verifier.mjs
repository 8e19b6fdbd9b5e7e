// A webhook receiver that verifies Standard Webhooks' asymmetric signatures with Node's crypto.
//
// `node ed25519_verifier.mjs <whpk_…>` listens on a free loopback port, prints {"port": N} once
// listening, and answers every POST 200 "verified" when one `v1a,` signature of the
// `webhook-signature` header verifies `${webhook-id}.${webhook-timestamp}.${body}` under the
// public key, else 401. Independent of Leadgate: only Node's own crypto.verify.
import crypto from "crypto";
import http from "http";

const [publicKeyText] = process.argv.slice(2);
if (!publicKeyText || !publicKeyText.startsWith("whpk_")) {
  console.error("usage: node ed25519_verifier.mjs whpk_<base64 raw public key>");
  process.exit(2);
}
const raw = Buffer.from(publicKeyText.slice("whpk_".length), "base64");
const publicKey = crypto.createPublicKey({
  key: { kty: "OKP", crv: "Ed25519", x: raw.toString("base64url") },
  format: "jwk",
});

function verified(headers, body) {
  const signed = Buffer.concat([
    Buffer.from(`${headers["webhook-id"]}.${headers["webhook-timestamp"]}.`),
    body,
  ]);
  return (headers["webhook-signature"] ?? "").split(" ").some((part) => {
    const [version, signature] = part.split(",");
    return (
      version === "v1a" &&
      crypto.verify(null, signed, publicKey, Buffer.from(signature ?? "", "base64"))
    );
  });
}

const server = http.createServer((request, response) => {
  const chunks = [];
  request.on("data", (chunk) => chunks.push(chunk));
  request.on("end", () => {
    const ok = verified(request.headers, Buffer.concat(chunks));
    response.writeHead(ok ? 200 : 401, { "Content-Type": "text/plain" });
    response.end(ok ? "verified" : "Invalid signature");
  });
});

server.listen(0, "127.0.0.1", () => {
  console.log(JSON.stringify({ port: server.address().port }));
});

process.on("SIGTERM", () => server.close(() => process.exit(0)));

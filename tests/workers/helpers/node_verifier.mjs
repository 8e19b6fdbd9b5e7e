// A webhook receiver as the lead systems' own docs write it, run under Node.
//
// `node node_verifier.mjs <scheme> <secret>` listens on a free loopback port, prints
// {"port": N} once listening, and answers every POST 200 if its signature verifies, else 401.
// The verifiers are the docs' snippets, unchanged but for how the raw body is read:
//   shortstack: X-ShortStack-Signature: sha256=<hex>   (seeds/000, compared with ===)
//   leaditio:   X-Leaditio-Signature: <hex>            (seeds/001, crypto.timingSafeEqual)
import crypto from "crypto";
import http from "http";

function verifyWebhook(body, signature, secret) {
  const expected = crypto
    .createHmac("sha256", secret)
    .update(body)
    .digest("hex");
  return signature === `sha256=${expected}`;
}

function verifySignature(rawBody, secret, signature) {
  const expected = crypto
    .createHmac("sha256", secret)
    .update(rawBody, "utf8")
    .digest("hex");
  return crypto.timingSafeEqual(
    Buffer.from(expected),
    Buffer.from(signature)
  );
}

const VERIFIERS = {
  shortstack: (rawBody, headers, secret) =>
    verifyWebhook(rawBody, headers["x-shortstack-signature"], secret),
  // timingSafeEqual throws on a length mismatch; a missing or short header is a bad signature.
  leaditio: (rawBody, headers, secret) => {
    try {
      return verifySignature(rawBody, secret, headers["x-leaditio-signature"] ?? "");
    } catch {
      return false;
    }
  },
};

const [scheme, secret] = process.argv.slice(2);
const verify = VERIFIERS[scheme];
if (!verify || !secret) {
  console.error("usage: node node_verifier.mjs shortstack|leaditio <secret>");
  process.exit(2);
}

const server = http.createServer((request, response) => {
  const chunks = [];
  request.on("data", (chunk) => chunks.push(chunk));
  request.on("end", () => {
    // What `await request.text()` gives in the docs' handler: the raw body as UTF-8 text.
    const rawBody = Buffer.concat(chunks).toString("utf8");
    const ok = verify(rawBody, request.headers, secret);
    response.writeHead(ok ? 200 : 401, { "Content-Type": "text/plain" });
    response.end(ok ? "verified" : "Invalid signature");
  });
});

server.listen(0, "127.0.0.1", () => {
  console.log(JSON.stringify({ port: server.address().port }));
});

process.on("SIGTERM", () => server.close(() => process.exit(0)));

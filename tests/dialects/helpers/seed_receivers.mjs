// The seed lead systems' own webhook receivers, run under Node as real servers.
//
// `node seed_receivers.mjs shortstack|leaditio|salesos <secret>` listens on a free loopback
// port and prints {"port": N}. Each handler is the seed's code as its docs print it (seeds 000,
// 001 and 004 in shared/seeds/), adapted only where needed to run: the ShortStack handler body is
// wrapped in a function of a Fetch API Request (as its docs' runtime calls it) and returns a
// Response when verified; Leaditio documents a verifier and a payload but no handler, so the
// handler here only verifies and reads the documented fields; the SalesOS Express route runs on a
// minimal stand-in for Express and express.json() (which parses the body with JSON.parse).
// What each handler logs with console.log is what it read; GET /__seen returns it, one list of
// log lines per verified request.
import crypto from "crypto";
import http from "http";

const [system, secret] = process.argv.slice(2);
const YOUR_SIGNING_SECRET = secret;
const seen = [];
let current = null;
console.log = (...args) => current?.push(args);

// --- ShortStack (seed 000), verbatim ---
function verifyWebhook(body, signature, secret) {
const expected = crypto
.createHmac("sha256", secret)
.update(body)
.digest("hex");
return signature === `sha256=${expected}`;
}
async function shortstackHandler(request) {
// In your handler:
const rawBody = await request.text();
const sig = request.headers.get("X-ShortStack-Signature");
if (!verifyWebhook(rawBody, sig, YOUR_SIGNING_SECRET)) {
return new Response("Invalid signature", { status: 401 });
}
const event = JSON.parse(rawBody);
console.log(event.event); // "lead.created"
console.log(event.data); // { leadId: "...", ... }
console.log(event.timestamp); // "2026-03-28T09:15:00.000Z"
return new Response("ok", { status: 200 });
}

// --- Leaditio (seed 001), the verifier verbatim ---
function verifySignature(rawBody, secret, signature) {
const expected = crypto
.createHmac('sha256', secret)
.update(rawBody, 'utf8')
.digest('hex');
return crypto.timingSafeEqual(
Buffer.from(expected),
Buffer.from(signature)
);
}
function leaditioHandler(rawBody, headers) {
  const signature = headers["x-leaditio-signature"] ?? "";
  let ok = false;
  try {
    ok = verifySignature(rawBody, YOUR_SIGNING_SECRET, signature);
  } catch {
    ok = false; // timingSafeEqual throws on a length mismatch
  }
  if (!ok) return [401, "Invalid signature"];
  const payload = JSON.parse(rawBody);
  console.log(payload.event);
  console.log(payload.lead.id);
  console.log(payload.contact.email);
  console.log(payload.timestamp);
  return [200, "ok"];
}

// --- SalesOS (seed 004), verbatim, on a stand-in for Express ---
const routes = {};
const app = { post: (path, handler) => { routes[path] = handler; } };
process.env.WEBHOOK_SECRET = YOUR_SIGNING_SECRET;
function verifyWebhookSignature(payload, signature, secret) {
const hmac = crypto.createHmac('sha256', secret);
const calculatedSignature = hmac.update(JSON.stringify(payload)).digest('hex');
return crypto.timingSafeEqual(
Buffer.from(signature),
Buffer.from(calculatedSignature)
);
}
// Express.js example
app.post('/webhooks', (req, res) => {
const signature = req.headers['x-webhook-signature'];
const secret = process.env.WEBHOOK_SECRET;
if (!verifyWebhookSignature(req.body, signature, secret)) {
return res.status(401).send('Invalid signature');
}
// Process webhook
console.log('Webhook verified:', req.body);
res.status(200).send('OK');
});

function expressLike(rawBody, request, response) {
  const req = { headers: request.headers, body: JSON.parse(rawBody) }; // express.json()
  const res = {
    statusCode: 200,
    status(code) { this.statusCode = code; return this; },
    send(text) { response.writeHead(this.statusCode, { "Content-Type": "text/plain" }); response.end(text); },
  };
  try {
    routes["/webhooks"](req, res);
  } catch (error) {
    // timingSafeEqual throws on a length mismatch; Express would answer 500.
    res.status(500).send(String(error));
  }
  return res.statusCode;
}

async function handle(rawBody, request, response) {
  current = [];
  let status;
  if (system === "shortstack") {
    const fetchRequest = new Request(`http://127.0.0.1${request.url}`, {
      method: request.method, headers: request.headers, body: rawBody,
    });
    const answer = await shortstackHandler(fetchRequest);
    status = answer.status;
    response.writeHead(status, { "Content-Type": "text/plain" });
    response.end(await answer.text());
  } else if (system === "leaditio") {
    const [code, text] = leaditioHandler(rawBody, request.headers);
    status = code;
    response.writeHead(code, { "Content-Type": "text/plain" });
    response.end(text);
  } else {
    status = expressLike(rawBody, request, response);
  }
  if (status === 200) seen.push(current);
  current = null;
}

const server = http.createServer((request, response) => {
  if (request.method === "GET" && request.url === "/__seen") {
    response.writeHead(200, { "Content-Type": "application/json" });
    response.end(JSON.stringify(seen));
    return;
  }
  const chunks = [];
  request.on("data", (chunk) => chunks.push(chunk));
  request.on("end", () => {
    handle(Buffer.concat(chunks).toString("utf8"), request, response).catch((error) => {
      response.writeHead(500);
      response.end(String(error));
    });
  });
});
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + "\n");
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));

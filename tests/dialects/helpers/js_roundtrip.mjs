// Reads one base64-encoded body per line on stdin; answers one line per body: "1" when
// JSON.stringify(JSON.parse(body)) === body, else "0 " and what JavaScript wrote back instead.
import readline from "node:readline";

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const body = Buffer.from(line, "base64").toString("utf8");
  let again;
  try {
    again = JSON.stringify(JSON.parse(body));
  } catch (error) {
    again = `unparseable: ${error.message}`;
  }
  process.stdout.write(again === body ? "1\n" : `0 ${again}\n`);
});

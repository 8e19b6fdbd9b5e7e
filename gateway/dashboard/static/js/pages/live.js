// Live: every delivery attempt of the tenant as it happens — the feed `leadgate tail` follows,
// as server-sent events. The newest is on top; the page keeps the last few hundred.

import { badge, field, fmtMs, fmtTime, h } from "../dom.js";
import { pageHeader } from "../ui.js";

const KEEP = 300;
const STREAM = "/dashboard/stream/outcomes";

function row(o) {
  return h(
    "tr",
    { dataset: { outcome: o.outcome, endpoint: o.endpoint_id } },
    h("td", {}, fmtTime(o.at)),
    h("td", {}, badge(o.outcome)),
    h("td", {}, o.status === null || o.status === undefined ? "—" : String(o.status)),
    h("td", {}, fmtMs(o.latency_ms)),
    h("td", {}, o.attempt ? `#${o.attempt}` : "—"),
    h("td", {}, o.event_type),
    h("td", {}, h("a", { href: `/dashboard/deliveries/${encodeURIComponent(o.delivery_id)}` }, o.delivery_id)),
    h("td", {}, o.endpoint_id),
    h("td", {}, o.error || ""),
  );
}

export async function render(ctx) {
  const state = h("p", { class: "hint", role: "status" }, "Connecting…");
  const failedOnly = h("input", { type: "checkbox", name: "failed" });
  const endpoint = h("input", { type: "text", name: "endpoint", placeholder: "ep_…" });
  const body = h("tbody", {}, h("tr", { class: "waiting" }, h("td", { colspan: "9", class: "empty" }, "Waiting for the next attempt…")));
  const headings = ["Time", "Outcome", "Status", "Latency", "Attempt", "Event", "Delivery", "Endpoint", "Error"];
  ctx.main.replaceChildren(
    pageHeader("Live deliveries"),
    h("form", { class: "filters", onsubmit: (e) => e.preventDefault() },
      h("label", { class: "check" }, failedOnly, "Only failures and retries"),
      field("Endpoint", endpoint)),
    state,
    h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Live outcomes" },
      h("table", { id: "live" }, h("caption", {}, "Attempts, newest first"),
        h("thead", {}, h("tr", {}, headings.map((t) => h("th", { scope: "col" }, t)))), body)),
  );
  const keep = (o) =>
    (!failedOnly.checked || o.outcome === "failed" || o.outcome === "retrying") &&
    (!endpoint.value.trim() || o.endpoint_id === endpoint.value.trim());
  const stream = new EventSource(STREAM);
  stream.addEventListener("open", () => {
    state.textContent = "Connected: attempts appear here as workers make them.";
  });
  stream.addEventListener("error", () => {
    state.textContent = "Connection lost; reconnecting…";
  });
  stream.addEventListener("outcome", (event) => {
    const o = JSON.parse(event.data);
    if (!keep(o)) return;
    const waiting = body.querySelector(".waiting");
    if (waiting) waiting.remove();
    body.prepend(row(o));
    while (body.rows.length > KEEP) body.deleteRow(-1);
  });
  return () => stream.close();
}

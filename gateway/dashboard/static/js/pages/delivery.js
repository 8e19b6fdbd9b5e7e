// One delivery and every attempt at it: status, latency, error and the response's first bytes,
// from GET /v1/deliveries/{id}; a finished one can be sent again.

import { api } from "../api.js";
import { badge, facts, fmtDate, fmtMs, h, table } from "../dom.js";
import { act, announce, outcome, pageHeader } from "../ui.js";
import { canRetry } from "./deliveries.js";

export async function render(ctx) {
  const [deliveryId] = ctx.params;
  const result = outcome();
  const body = h("div");
  ctx.main.replaceChildren(body);

  async function draw() {
    const d = (await api("GET", `/v1/deliveries/${encodeURIComponent(deliveryId)}`)).data;
    const retry = ctx.can("manage") && canRetry(d) ? h("button", { type: "button" }, "Retry now") : null;
    if (retry) {
      retry.addEventListener("click", () => act(retry, result, async () => {
        await api("POST", `/v1/deliveries/${encodeURIComponent(d.id)}/retry`);
        announce("The delivery is being sent again.");
        await draw();
      }));
    }
    body.replaceChildren(
      h("p", {}, h("a", { href: "/dashboard/deliveries" }, "← Deliveries")),
      pageHeader(`Delivery ${d.id}`, badge(d.state)),
      result.box,
      retry ? h("div", { class: "actions-row" }, retry, h("button", { type: "button", class: "secondary", onclick: () => draw() }, "Refresh")) : h("div", { class: "actions-row" }, h("button", { type: "button", class: "secondary", onclick: () => draw() }, "Refresh")),
      h("section", { class: "panel" }, facts([
        ["Event", `${d.event_type} (${d.event_id})`],
        ["Endpoint", h("a", { href: `/dashboard/deliveries?endpoint_id=${encodeURIComponent(d.endpoint_id)}` }, d.endpoint_id)],
        ["Lead", d.lead_id ? h("a", { href: `/dashboard/leads/${encodeURIComponent(d.lead_id)}` }, d.lead_id) : null],
        ["State", d.state],
        ["Attempts", String(d.attempt_count)],
        ["Last status", d.last_status === null ? null : String(d.last_status)],
        ["Last error", d.last_error],
        ["Next attempt", d.next_attempt_at ? fmtDate(d.next_attempt_at) : null],
        ["Created", fmtDate(d.created_at)],
        ["Updated", fmtDate(d.updated_at)],
      ])),
      h("section", { class: "panel" }, h("h2", {}, "Attempts"), table("Every attempt, first to last", [
        ["#", (a) => String(a.attempt)],
        ["Started", (a) => fmtDate(a.started_at)],
        ["Status", (a) => (a.status === null ? "—" : String(a.status))],
        ["Latency", (a) => fmtMs(a.latency_ms)],
        ["Outcome", (a) => badge(a.outcome)],
        ["Error", (a) => a.error || "—"],
        ["Response", (a) => (a.response_body ? h("pre", { class: "snippet" }, a.response_body) : "—")],
      ], d.attempts, "Not attempted yet.")),
    );
  }

  await draw();
  return null;
}

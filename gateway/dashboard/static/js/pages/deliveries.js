// Deliveries: the deliveries API's filters (state, endpoint, lead, event type) and paging;
// a retry per finished delivery, and replaying an endpoint's deliveries since a time.

import { api } from "../api.js";
import { badge, field, fmtDate, fmtNumber, h, select, table } from "../dom.js";
import { act, filterForm, outcome, pageHeader } from "../ui.js";

const STATES = [["", "Any state"], ["pending", "pending"], ["succeeded", "succeeded"], ["failed", "failed"], ["cancelled", "cancelled"]];
const LIMIT = 50;

export function canRetry(delivery) {
  return delivery.state !== "pending";
}

function endpointOptions(endpoints, any) {
  return [...(any ? [["", any]] : []), ...endpoints.map((e) => [e.id, e.description ? `${e.description} (${e.url})` : e.url])];
}

function replayForm(ctx, endpoints, result) {
  const chosen = ctx.query.get("endpoint_id") || (endpoints[0] && endpoints[0].id) || "";
  const since = h("input", { type: "datetime-local", name: "since", required: true });
  const state = select("state", STATES.slice(1), "failed");
  const endpoint = select("endpoint", endpointOptions(endpoints), chosen);
  const button = h("button", { type: "submit" }, "Replay");
  const form = h("form", { class: "filters", "aria-labelledby": "replay-h" },
    field("Endpoint", endpoint), field("Created since", since), field("In state", state),
    h("div", { class: "field actions" }, button));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    act(button, result, async () => {
      const body = { since: new Date(since.value).toISOString(), state: state.value };
      const done = await api("POST", `/v1/endpoints/${encodeURIComponent(endpoint.value)}/replay`, { body });
      result.say(`${fmtNumber(done.replayed)} deliveries sent again.`);
    });
  });
  return h("section", { class: "panel" }, h("h2", { id: "replay-h" }, "Replay an endpoint's deliveries"), form);
}

function pager(ctx, page) {
  const link = (offset) => {
    const q = new URLSearchParams(ctx.query);
    q.set("offset", String(offset));
    return `/dashboard/deliveries?${q}`;
  };
  const end = page.offset + page.data.length;
  return h(
    "nav",
    { class: "pager", "aria-label": "Pages" },
    h("span", {}, page.data.length ? `${fmtNumber(page.offset + 1)}–${fmtNumber(end)} of ${fmtNumber(page.total)}` : `0 of ${fmtNumber(page.total)}`),
    page.offset > 0 ? h("a", { href: link(Math.max(0, page.offset - page.limit)) }, "Previous") : null,
    end < page.total ? h("a", { href: link(end), rel: "next" }, "Next") : null,
  );
}

export async function render(ctx) {
  const q = ctx.query;
  const result = outcome();
  const [endpoints, page] = await Promise.all([
    api("GET", "/v1/endpoints"),
    api("GET", "/v1/deliveries", {
      query: {
        state: q.get("state"), endpoint_id: q.get("endpoint_id"), lead_id: q.get("lead_id"),
        event_type: q.get("event_type"), limit: LIMIT, offset: q.get("offset"),
      },
    }),
  ]);
  const names = new Map(endpoints.data.map((e) => [e.id, e.url]));
  const retry = (d, button) => act(button, result, async () => {
    await api("POST", `/v1/deliveries/${encodeURIComponent(d.id)}/retry`);
    result.say("Delivery ", h("a", { href: `/dashboard/deliveries/${encodeURIComponent(d.id)}` }, d.id), " is being sent again.");
    button.remove();
  });
  const columns = [
    ["Created", (d) => fmtDate(d.created_at)],
    ["Event", (d) => d.event_type],
    ["Endpoint", (d) => names.get(d.endpoint_id) || d.endpoint_id],
    ["Lead", (d) => (d.lead_id ? h("a", { href: `/dashboard/leads/${encodeURIComponent(d.lead_id)}` }, d.lead_id) : "—")],
    ["State", (d) => badge(d.state)],
    ["Attempts", (d) => String(d.attempt_count)],
    ["Last status", (d) => (d.last_status === null ? "—" : String(d.last_status))],
    ["Next attempt", (d) => fmtDate(d.next_attempt_at)],
    ["Actions", (d) => [
      h("a", { href: `/dashboard/deliveries/${encodeURIComponent(d.id)}`, "aria-label": `Open delivery ${d.id}` }, "Open"),
      ctx.can("manage") && canRetry(d)
        ? h("button", { type: "button", class: "link", "aria-label": `Retry delivery ${d.id}`, onclick: (e) => retry(d, e.currentTarget) }, "Retry")
        : null,
    ]],
  ];
  ctx.main.replaceChildren(
    pageHeader("Deliveries"),
    filterForm(ctx, "/dashboard/deliveries", [
      field("State", select("state", STATES, q.get("state"))),
      field("Endpoint", select("endpoint_id", endpointOptions(endpoints.data, "Any endpoint"), q.get("endpoint_id"))),
      field("Lead", h("input", { type: "text", name: "lead_id", value: q.get("lead_id") || "", placeholder: "lead_…" })),
      field("Event type", h("input", { type: "text", name: "event_type", value: q.get("event_type") || "", placeholder: "lead.created" })),
    ]),
    result.box,
    table("Deliveries, newest first", columns, page.data, "No delivery matches these filters."),
    pager(ctx, page),
    ctx.can("manage") && endpoints.data.length ? replayForm(ctx, endpoints.data, result) : null,
  );
  return null;
}

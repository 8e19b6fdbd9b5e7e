// One lead: its fields and custom data, timeline, deals, stage history and deliveries, from
// GET /v1/leads/{id}.

import { api } from "../api.js";
import { badge, facts, field, fmtDate, h, leadName, select, table } from "../dom.js";
import { act, announce, outcome, pageHeader } from "../ui.js";

const FIELDS = [
  "email", "phone", "first_name", "last_name", "company", "external_id", "source", "domain",
  "campaign", "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "referrer",
  "ip_address", "user_agent", "browser", "device_type", "form_completion_percent",
  "form_fields_completed", "form_fields_total", "estimated_value", "opted_out_at", "created_at",
  "updated_at",
];

function label(name) {
  return name.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());
}

function shown(name, value) {
  if (value === null || value === undefined) return null;
  if (name.endsWith("_at")) return fmtDate(value);
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function move(m) {
  if (!m.from_stage) return `entered at ${m.to_stage}`;
  return `${m.from_stage} → ${m.to_stage}${m.forced ? " (forced)" : ""}`;
}

function sent(deliveries) {
  if (!Array.isArray(deliveries) || !deliveries.length) return "";
  const states = {};
  for (const d of deliveries) states[d.state] = (states[d.state] || 0) + 1;
  return Object.entries(states).map(([state, n]) => `${n} ${state}`).join(", ");
}

function described(item) {
  const data = item.data || {};
  switch (item.kind) {
    case "stage_change":
      return { what: "stage", detail: move(item) };
    case "message":
      return { what: `${item.type} (${item.channel || item.source})`, detail: item.text || "" };
    case "deal_change":
      return { what: item.type, detail: [data.title, data.stage].filter(Boolean).join(" · ") };
    case "follow_up":
      return { what: item.type, detail: item.deliver_at ? `due ${fmtDate(item.deliver_at)}` : "" };
    default:
      return { what: item.type || item.kind || "event", detail: "" };
  }
}

/** The lead's timeline (GET /v1/leads/{id}'s `timeline`), each item with its webhooks' states;
 * drawn from the stage history and deliveries where the API gives none. */
export function timeline(lead) {
  if (Array.isArray(lead.timeline)) {
    return lead.timeline.map((item) => {
      const { what, detail } = described(item);
      return { at: item.at, what, detail, sent: sent(item.deliveries) };
    });
  }
  const moves = lead.stage_history.map((m) => ({ at: m.at, what: "stage", detail: move(m), sent: "" }));
  const out = lead.deliveries.map((d) => ({ at: d.created_at, what: d.event_type, detail: "", sent: `1 ${d.state}` }));
  return [...moves, ...out].sort((a, b) => String(b.at).localeCompare(String(a.at)));
}

function money(deal) {
  if (deal.value === null || deal.value === undefined) return "—";
  return `${deal.value.toLocaleString(undefined, { maximumFractionDigits: 4 })} ${deal.currency}`;
}

function actions(ctx, lead, result, reload) {
  if (!ctx.can("manage")) return null;
  const stages = [...ctx.session.stages, ...ctx.session.exit_stages];
  const menu = select("stage", stages.map((s) => [s, s]), lead.stage);
  const change = h("button", { type: "submit" }, "Change stage");
  const form = h("form", { class: "inline" }, field("Stage", menu), change);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    act(change, result, async () => {
      await api("PATCH", `/v1/leads/${encodeURIComponent(lead.id)}`, { body: { stage: menu.value } });
      announce(`Stage changed to ${menu.value}.`);
      await reload();
    });
  });
  const stop = h("button", { type: "button", class: "secondary" }, "Stop follow-ups");
  stop.addEventListener("click", () => act(stop, result, async () => {
    const done = await api("POST", `/v1/leads/${encodeURIComponent(lead.id)}/stop`);
    result.say(`${done.cancelled} pending deliveries cancelled.`);
  }));
  const erase = h("button", { type: "button", class: "danger" }, "Erase personal data");
  erase.addEventListener("click", () => {
    if (!window.confirm("Erase this lead's personal data? This cannot be undone.")) return;
    act(erase, result, async () => {
      await api("DELETE", `/v1/leads/${encodeURIComponent(lead.id)}`);
      ctx.navigate("/dashboard/leads");
    });
  });
  return h("section", { class: "panel actions-row", "aria-label": "Actions" }, form, stop, erase);
}

export async function render(ctx) {
  const [leadId] = ctx.params;
  const result = outcome();
  const body = h("div");
  ctx.main.replaceChildren(body);

  async function draw() {
    const lead = (await api("GET", `/v1/leads/${encodeURIComponent(leadId)}`)).data;
    const custom = Object.entries(lead.custom_data || {});
    body.replaceChildren(
      h("p", {}, h("a", { href: "/dashboard/leads" }, "← All leads")),
      pageHeader(leadName(lead), badge(lead.stage, "stage"), lead.opted_out_at ? badge("opted out", "failed") : null),
      h("p", { class: "hint" }, h("code", {}, lead.id)),
      result.box,
      actions(ctx, lead, result, draw),
      h(
        "div",
        { class: "grid" },
        h("section", { class: "panel" }, h("h2", {}, "Fields"), facts(FIELDS.map((n) => [label(n), shown(n, lead[n])]))),
        h("section", { class: "panel" }, h("h2", {}, "Custom data"),
          custom.length ? facts(custom.map(([k, v]) => [k, shown(k, v)])) : h("p", { class: "empty" }, "None.")),
      ),
      h("section", { class: "panel", id: "timeline" }, h("h2", {}, "Timeline"),
        table("The lead's timeline, newest first", [
          ["When", (e) => fmtDate(e.at)], ["What", (e) => e.what], ["Detail", (e) => e.detail],
          ["Webhooks", (e) => e.sent || "—"],
        ], timeline(lead))),
      h("section", { class: "panel", id: "deals" }, h("h2", {}, "Deals"),
        table("The lead's deals, newest first", [
          ["Title", (d) => d.title], ["Value", money], ["Stage", (d) => d.stage || "—"],
          ["Probability", (d) => (d.probability === null ? "—" : `${d.probability}%`)],
          ["Created", (d) => fmtDate(d.created_at)],
        ], lead.deals || [], "No deals.")),
      h("section", { class: "panel" }, h("h2", {}, "Stage history"),
        table("Stage changes, oldest first", [
          ["When", (m) => fmtDate(m.at)], ["From", (m) => m.from_stage || "—"], ["To", (m) => m.to_stage],
          ["Forced", (m) => (m.forced ? "yes" : "no")], ["By key", (m) => m.api_key_id || "—"],
        ], lead.stage_history)),
      h("section", { class: "panel" }, h("h2", {}, "Deliveries"),
        table("The lead's most recent deliveries", [
          ["Created", (d) => fmtDate(d.created_at)],
          ["Event", (d) => d.event_type],
          ["Endpoint", (d) => d.endpoint_id],
          ["State", (d) => badge(d.state)],
          ["Attempts", (d) => String(d.attempt_count)],
          ["Last status", (d) => (d.last_status === null ? "—" : String(d.last_status))],
          ["", (d) => h("a", { href: `/dashboard/deliveries/${encodeURIComponent(d.id)}` }, "Open")],
        ], lead.deliveries, "No deliveries yet.")),
    );
  }

  await draw();
  return null;
}

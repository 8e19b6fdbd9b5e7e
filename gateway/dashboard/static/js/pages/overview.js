// Overview: leads in a chosen range, conversion, delivery success and latency, endpoints that
// need attention; the funnel, top sources and campaigns, and new leads over the last 30 days.
// All of it from GET /v1/analytics and GET /v1/endpoints.

import { api } from "../api.js";
import { barChart, dayChart, lastDays } from "../charts.js";
import { field, fmtDate, fmtMs, fmtNumber, fmtPercent, h, select } from "../dom.js";
import { dayStart, filterForm, pageHeader } from "../ui.js";

const RANGES = [["7d", "Last 7 days"], ["30d", "Last 30 days"], ["90d", "Last 90 days"], ["", "From – to"]];

function timeWindow(query) {
  if (query.get("from") || query.get("to")) {
    return { label: "custom", params: { from: dayStart(query.get("from")), to: dayStart(query.get("to"), 1) } };
  }
  const range = ["7d", "30d", "90d"].includes(query.get("range")) ? query.get("range") : "30d";
  return { label: range, params: { range } };
}

function kpi(label, value, detail) {
  return h("div", { class: "kpi" }, h("span", { class: "kpi-label" }, label), h("strong", {}, value), detail ? h("small", {}, detail) : null);
}

export function needsAttention(endpoint, now = Date.now()) {
  const health = endpoint.health;
  const open = health.circuit_open_until && new Date(health.circuit_open_until).getTime() > now;
  return !endpoint.enabled || health.consecutive_failures > 0 || open || Boolean(health.failing_since);
}

function endpointList(list) {
  if (!list.length) return h("p", { class: "ok" }, "Every endpoint is enabled and delivering.");
  return h(
    "ul",
    { class: "attention" },
    list.map((e) =>
      h(
        "li",
        {},
        h("a", { href: `/dashboard/deliveries?endpoint_id=${encodeURIComponent(e.id)}&state=failed` }, e.url),
        " ",
        e.enabled ? h("span", { class: "badge badge-failing" }, "failing") : h("span", { class: "badge badge-disabled" }, "disabled"),
        h(
          "small",
          {},
          e.enabled
            ? ` ${fmtNumber(e.health.consecutive_failures)} failures in a row since ${fmtDate(e.health.failing_since)}`
            : ` ${e.disabled_reason || "disabled by an operator"}`,
        ),
      ),
    ),
  );
}

export async function render(ctx) {
  const chosen = timeWindow(ctx.query);
  const form = filterForm(ctx, "/dashboard/", [
    field("Range", select("range", RANGES, chosen.label === "custom" ? "" : chosen.label)),
    field("From", h("input", { type: "date", name: "from", value: ctx.query.get("from") || "" })),
    field("To", h("input", { type: "date", name: "to", value: ctx.query.get("to") || "" })),
  ], { submit: "Show" });
  // Dates count only for "From – to"; a disabled input is left out of the query.
  const byDates = () => {
    const custom = form.elements.range.value === "";
    form.elements.from.disabled = !custom;
    form.elements.to.disabled = !custom;
  };
  form.elements.range.addEventListener("change", byDates);
  byDates();
  ctx.main.replaceChildren(pageHeader("Overview"), form);

  const [analytics, monthly, endpoints] = await Promise.all([
    api("GET", "/v1/analytics", { query: chosen.params }),
    chosen.label === "30d" ? null : api("GET", "/v1/analytics", { query: { range: "30d" } }),
    api("GET", "/v1/endpoints"),
  ]);
  const data = analytics.data;
  const last = data.funnel[data.funnel.length - 1];
  const latency = data.deliveries.latency_ms;
  const attention = endpoints.data.filter((e) => needsAttention(e));
  const perDay = (monthly || analytics).data.new_leads_per_day;

  ctx.main.append(
    h("p", { class: "range" }, `${fmtDate(data.from)} – ${fmtDate(data.to)}`),
    h(
      "section",
      { class: "kpis", "aria-label": "Key figures" },
      kpi("Leads", fmtNumber(data.leads)),
      kpi(`Converted (${last ? last.stage : "—"})`, fmtPercent(last ? last.conversion : null), last ? `${fmtNumber(last.leads)} leads` : null),
      kpi("Delivery success", fmtPercent(data.deliveries.success_rate), `${fmtNumber(data.deliveries.succeeded)} of ${fmtNumber(data.deliveries.attempts)} attempts`),
      kpi("Latency p50 / p95 / p99", `${fmtMs(latency.p50)}`, `${fmtMs(latency.p95)} · ${fmtMs(latency.p99)}`),
      kpi("Endpoints needing attention", fmtNumber(attention.length), `of ${fmtNumber(endpoints.data.length)}`),
    ),
    h("section", { class: "panel", "aria-labelledby": "attention-h" }, h("h2", { id: "attention-h" }, "Endpoints failing or disabled"), endpointList(attention)),
    h(
      "div",
      { class: "grid" },
      h("section", { class: "panel" }, h("h2", {}, "Pipeline funnel"),
        barChart("Leads that reached each stage", data.funnel.map((f) => ({ label: f.stage, value: f.leads, note: fmtPercent(f.conversion) })))),
      h("section", { class: "panel" }, h("h2", {}, "Top sources"),
        barChart("Leads by source", data.top_sources.map((x) => ({ label: x.name ?? "(none)", value: x.leads })))),
      h("section", { class: "panel" }, h("h2", {}, "Top campaigns"),
        barChart("Leads by campaign", data.top_campaigns.map((x) => ({ label: x.name ?? "(none)", value: x.leads })))),
      h("section", { class: "panel wide" }, h("h2", {}, "New leads (last 30 days)"),
        dayChart("New leads per day, last 30 days", lastDays(perDay, 30))),
    ),
  );
  return null;
}

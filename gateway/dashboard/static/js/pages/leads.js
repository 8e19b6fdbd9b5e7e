// All leads: the seed tracker's table with the leads API's own filters (stage, source,
// campaign, search, dates, custom fields) and its keyset paging (`next_cursor`).

import { api } from "../api.js";
import { badge, field, fmtDate, fmtNumber, h, leadName, table } from "../dom.js";
import { act, dayStart, filterForm, outcome, pageHeader } from "../ui.js";

const LIMITS = ["25", "50", "100"];

/** "vertical=solar; budget=50k" → {"custom.vertical": "solar", "custom.budget": "50k"}. */
export function customFilters(text) {
  const found = {};
  for (const part of (text || "").split(/[;\n]/)) {
    const at = part.indexOf("=");
    if (at > 0) found[`custom.${part.slice(0, at).trim()}`] = part.slice(at + 1).trim();
  }
  return found;
}

function filters(ctx) {
  const q = ctx.query;
  const stages = [...ctx.session.stages, ...ctx.session.exit_stages];
  const chosen = new Set(q.getAll("stage"));
  const stageBoxes = h(
    "fieldset",
    { class: "field stages" },
    h("legend", {}, "Stage"),
    stages.map((stage) =>
      h("label", { class: "check" }, h("input", { type: "checkbox", name: "stage", value: stage, checked: chosen.has(stage) }), stage),
    ),
  );
  const input = (name, type = "text") => h("input", { type, name, value: q.get(name) || "" });
  return filterForm(ctx, "/dashboard/leads", [
    field("Search", input("search", "search"), "Name, email, phone or company"),
    field("Source", input("source")),
    field("Campaign", input("campaign")),
    field("Created from", input("from", "date")),
    field("Created to", input("to", "date")),
    field("Custom fields", input("custom"), "key=value; another=value"),
    field("Per page", h("select", { name: "limit" }, LIMITS.map((n) => h("option", { value: n, selected: (q.get("limit") || "50") === n }, n)))),
    stageBoxes,
  ]);
}

function query(ctx) {
  const q = ctx.query;
  return {
    stage: q.getAll("stage"),
    source: q.get("source"),
    campaign: q.get("campaign"),
    search: q.get("search"),
    from: dayStart(q.get("from")),
    to: dayStart(q.get("to"), 1),
    limit: q.get("limit") || "50",
    cursor: q.get("cursor"),
    ...customFilters(q.get("custom")),
  };
}

function pager(ctx, page, number) {
  const next = new URLSearchParams(ctx.query);
  next.set("cursor", page.next_cursor || "");
  next.set("page", String(number + 1));
  const first = new URLSearchParams(ctx.query);
  first.delete("cursor");
  first.delete("page");
  const shown = page.data.length;
  const start = (number - 1) * page.limit;
  return h(
    "nav",
    { class: "pager", "aria-label": "Pages" },
    h("span", {}, shown ? `${fmtNumber(start + 1)}–${fmtNumber(start + shown)} of ${fmtNumber(page.total)}` : `0 of ${fmtNumber(page.total)}`),
    number > 1 ? h("a", { href: `/dashboard/leads?${first}` }, "First page") : null,
    number > 1 ? h("button", { type: "button", class: "secondary", onclick: () => window.history.back() }, "Previous") : null,
    page.next_cursor ? h("a", { href: `/dashboard/leads?${next}`, rel: "next" }, "Next") : null,
  );
}

export async function render(ctx) {
  const number = Math.max(1, Number.parseInt(ctx.query.get("page") || "1", 10) || 1);
  const result = outcome();
  ctx.main.replaceChildren(pageHeader("All leads"), filters(ctx), result.box);
  const page = await api("GET", "/v1/leads", { query: query(ctx) });
  const remove = async (lead, button) => {
    if (!window.confirm(`Erase the personal data of ${leadName(lead)}? This cannot be undone.`)) return;
    await act(button, result, async () => {
      await api("DELETE", `/v1/leads/${encodeURIComponent(lead.id)}`);
      result.say(`${leadName(lead)} was erased.`);
      button.closest("tr").remove();
    });
  };
  const columns = [
    ["Date", (l) => fmtDate(l.created_at)],
    ["Name / Email", (l) => [h("a", { href: `/dashboard/leads/${encodeURIComponent(l.id)}` }, leadName(l)), l.email && leadName(l) !== l.email ? h("small", { class: "block" }, l.email) : null]],
    ["Phone", (l) => l.phone || "—"],
    ["Stage", (l) => badge(l.stage, "stage")],
    ["Source", (l) => l.source || "—"],
    ["Campaign", (l) => l.campaign || "—"],
    ["Form %", (l) => (l.form_completion_percent === null ? "—" : `${Math.round(l.form_completion_percent)} %`)],
    ["IP", (l) => l.ip_address || "—"],
    ["Device", (l) => [l.device_type || "—", l.browser ? h("small", { class: "block" }, l.browser) : null]],
    ["Actions", (l) => [
      h("a", { href: `/dashboard/leads/${encodeURIComponent(l.id)}`, "aria-label": `Open ${leadName(l)}` }, "Open"),
      ctx.can("manage") ? h("button", { type: "button", class: "link danger", "aria-label": `Erase ${leadName(l)}`, onclick: (e) => remove(l, e.currentTarget) }, "Erase") : null,
    ]],
  ];
  ctx.main.append(table("Leads, newest first", columns, page.data, "No lead matches these filters."), pager(ctx, page, number));
  return null;
}

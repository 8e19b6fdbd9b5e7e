// Pipeline board: a column per stage (the pipeline's, then its exit stages), a card per lead,
// newest first, and each column's count (GET /v1/leads/stage-counts). Moving a card is PATCH /v1/leads/{id} {stage}: the API's rules decide, and the
// board is drawn again from the API afterwards. Cards move by dragging, or by keyboard (and on
// touch screens) with each card's stage menu.

import { api } from "../api.js";
import { field, fmtDate, fmtNumber, h, leadName, select } from "../dom.js";
import { announce, filterForm, outcome, pageHeader } from "../ui.js";

const PER_COLUMN = 20;

function card(lead, stages, ctx, move) {
  const menu = ctx.can("manage")
    ? select("stage", stages.map((s) => [s, s]), lead.stage, { "aria-label": `Stage of ${leadName(lead)}`, class: "move" })
    : null;
  if (menu) menu.addEventListener("change", () => move(lead, menu.value));
  return h(
    "li",
    { class: "card", draggable: ctx.can("manage") ? "true" : null, dataset: { id: lead.id } },
    h("a", { href: `/dashboard/leads/${encodeURIComponent(lead.id)}` }, leadName(lead)),
    h("small", {}, [lead.email, lead.source].filter(Boolean).join(" · ") || "—"),
    h("small", {}, fmtDate(lead.created_at)),
    menu,
  );
}

function column(stage, page, stages, ctx, move) {
  const id = `col-${stages.indexOf(stage)}`;
  const more = page.total > page.data.length
    ? h("a", { class: "more", href: `/dashboard/leads?stage=${encodeURIComponent(stage)}` }, `All ${fmtNumber(page.total)} in ${stage}`)
    : null;
  const section = h(
    "section",
    { class: "column", "aria-labelledby": id, dataset: { stage } },
    h("h2", { id }, stage, " ", h("span", { class: "count" }, fmtNumber(page.total))),
    h("ul", {}, page.data.map((lead) => card(lead, stages, ctx, move))),
    more,
  );
  if (ctx.can("manage")) {
    section.addEventListener("dragover", (event) => {
      event.preventDefault();
      section.classList.add("drop");
    });
    section.addEventListener("dragleave", () => section.classList.remove("drop"));
    section.addEventListener("drop", (event) => {
      event.preventDefault();
      section.classList.remove("drop");
      const leadId = event.dataTransfer.getData("text/plain");
      const found = page.all.get(leadId);
      if (found && found.stage !== stage) move(found, stage);
    });
  }
  return section;
}

export async function render(ctx) {
  const stages = [...ctx.session.stages, ...ctx.session.exit_stages];
  const search = ctx.query.get("search") || "";
  const result = outcome();
  const columns = h("div", { class: "board" });
  ctx.main.replaceChildren(
    pageHeader("Pipeline board"),
    filterForm(ctx, "/dashboard/board", [field("Search", h("input", { type: "search", name: "search", value: search }), "Name, email, phone or company")], { submit: "Find" }),
    ctx.can("manage") ? h("p", { class: "hint" }, "Drag a card to another column, or choose its stage from the card's menu.") : null,
    result.box,
    columns,
  );

  async function draw() {
    // One pass counts every column; each column's cards then skip counting again.
    const [counted, ...pages] = await Promise.all([
      api("GET", "/v1/leads/stage-counts", { query: { search } }),
      ...stages.map((stage) => api("GET", "/v1/leads", { query: { stage, limit: PER_COLUMN, search, total: "false" } })),
    ]);
    const totals = new Map(counted.data.map((c) => [c.stage, c.leads]));
    const all = new Map(pages.flatMap((p) => p.data.map((lead) => [lead.id, lead])));
    columns.replaceChildren(...stages.map((stage, i) =>
      column(stage, { ...pages[i], total: totals.get(stage) ?? pages[i].data.length, all }, stages, ctx, move)));
    for (const item of columns.querySelectorAll(".card[draggable]")) {
      item.addEventListener("dragstart", (event) => {
        event.dataTransfer.setData("text/plain", item.dataset.id);
        event.dataTransfer.effectAllowed = "move";
      });
    }
  }

  async function move(lead, stage) {
    result.clear();
    try {
      await api("PATCH", `/v1/leads/${encodeURIComponent(lead.id)}`, { body: { stage } });
      announce(`${leadName(lead)} moved to ${stage}.`);
      await draw();
      const moved = columns.querySelector(`.card[data-id="${CSS.escape(lead.id)}"] select`);
      if (moved) moved.focus();
    } catch (error) {
      result.error(error);
      await draw();
    }
  }

  await draw();
  return null;
}

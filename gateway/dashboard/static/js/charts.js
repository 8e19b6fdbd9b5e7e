// Charts as plain SVG, each with its figures as a table beside it for screen readers and
// for anyone who wants the numbers. Colours come from the style sheet.

import { fmtNumber, h, s } from "./dom.js";

const WIDTH = 640;

function dataTable(caption, headings, rows) {
  return h(
    "details",
    { class: "chart-data" },
    h("summary", {}, "Show the figures"),
    h(
      "table",
      {},
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, headings.map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c))))),
    ),
  );
}

function clip(text, length) {
  return text.length > length ? `${text.slice(0, length - 1)}…` : text;
}

/** Horizontal bars: items are {label, value, note?}. */
export function barChart(title, items, { empty = "No data in this range." } = {}) {
  const figure = h("figure", { class: "chart" }, h("figcaption", {}, title));
  if (!items.length) return append(figure, h("p", { class: "empty" }, empty));
  const row = 30;
  const labelWidth = 190;
  const barSpace = WIDTH - labelWidth - 120;
  const max = Math.max(1, ...items.map((i) => i.value));
  const summary = items.map((i) => `${i.label}: ${fmtNumber(i.value)}`).join(", ");
  const svg = s(
    "svg",
    {
      viewBox: `0 0 ${WIDTH} ${items.length * row + 4}`,
      role: "img",
      "aria-label": `${title}. ${summary}`,
      class: "bars",
    },
    items.map((item, i) => {
      const y = i * row + 2;
      const width = Math.max(item.value > 0 ? 2 : 0, (item.value / max) * barSpace);
      return s(
        "g",
        {},
        s("title", {}, `${item.label}: ${fmtNumber(item.value)}${item.note ? ` (${item.note})` : ""}`),
        s("text", { x: labelWidth - 8, y: y + row / 2 + 5, class: "label", "text-anchor": "end" },
          clip(item.label, 26)),
        s("rect", { x: labelWidth, y: y + 4, width, height: row - 10, rx: 3, class: "bar" }),
        s("text", { x: labelWidth + width + 6, y: y + row / 2 + 5, class: "value" },
          `${fmtNumber(item.value)}${item.note ? ` · ${item.note}` : ""}`),
      );
    }),
  );
  return append(
    figure,
    svg,
    dataTable(title, ["Name", "Leads", ""], items.map((i) => [i.label, fmtNumber(i.value), i.note || ""])),
  );
}

/** Columns over days: days are {date: "YYYY-MM-DD", leads}, one per day, oldest first. */
export function dayChart(title, days) {
  const height = 200;
  const bottom = 24;
  const left = 36;
  const max = Math.max(1, ...days.map((d) => d.leads));
  const step = (WIDTH - left) / days.length;
  const total = days.reduce((sum, d) => sum + d.leads, 0);
  const svg = s(
    "svg",
    {
      viewBox: `0 0 ${WIDTH} ${height}`,
      role: "img",
      "aria-label": `${title}: ${fmtNumber(total)} leads over ${days.length} days, at most ${fmtNumber(max)} a day`,
      class: "columns",
    },
    s("text", { x: left - 6, y: 12, class: "axis", "text-anchor": "end" }, fmtNumber(max)),
    s("text", { x: left - 6, y: height - bottom, class: "axis", "text-anchor": "end" }, "0"),
    s("line", { x1: left, x2: WIDTH, y1: height - bottom, y2: height - bottom, class: "baseline" }),
    days.map((day, i) => {
      const barHeight = ((height - bottom - 8) * day.leads) / max;
      const x = left + i * step;
      return s(
        "g",
        {},
        s("title", {}, `${day.date}: ${fmtNumber(day.leads)} leads`),
        s("rect", {
          x: x + 1, y: height - bottom - barHeight, width: Math.max(1, step - 2),
          height: barHeight, class: "bar",
        }),
        i % 5 === 0
          ? s("text", { x: x + step / 2, y: height - 6, class: "axis", "text-anchor": "middle" },
            day.date.slice(5))
          : null,
      );
    }),
  );
  return h(
    "figure",
    { class: "chart" },
    h("figcaption", {}, title),
    svg,
    dataTable(title, ["Day", "Leads"], days.map((d) => [d.date, fmtNumber(d.leads)])),
  );
}

/** The last `count` days up to today (UTC, as the API counts them), with zero where none came. */
export function lastDays(perDay, count, today = new Date()) {
  const known = new Map(perDay.map((d) => [d.date, d.leads]));
  const days = [];
  for (let i = count - 1; i >= 0; i -= 1) {
    const date = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - i));
    const key = date.toISOString().slice(0, 10);
    days.push({ date: key, leads: known.get(key) || 0 });
  }
  return days;
}

function append(node, ...children) {
  node.append(...children);
  return node;
}

// The dashboard's router: every page is a URL under /dashboard/, drawn here from the JSON API.
// Links move between pages without reloading; Back and Forward work; focus goes to the new
// page's heading so that keyboard and screen-reader users land where the content is.

import * as board from "./pages/board.js";
import * as deliveries from "./pages/deliveries.js";
import * as delivery from "./pages/delivery.js";
import * as endpoints from "./pages/endpoints.js";
import * as lead from "./pages/lead.js";
import * as leads from "./pages/leads.js";
import * as live from "./pages/live.js";
import * as overview from "./pages/overview.js";
import { errorBox } from "./ui.js";

const BASE = "/dashboard/";
const ROUTES = [
  [/^$/, overview],
  [/^board$/, board],
  [/^leads$/, leads],
  [/^leads\/([^/]+)$/, lead],
  [/^deliveries$/, deliveries],
  [/^deliveries\/([^/]+)$/, delivery],
  [/^endpoints$/, endpoints],
  [/^live$/, live],
];

const session = JSON.parse(document.getElementById("session").textContent);
const main = document.getElementById("main");
let leave = null;
let drawn = 0;

function navigate(href, { replace = false } = {}) {
  if (replace) window.history.replaceState({}, "", href);
  else window.history.pushState({}, "", href);
  draw();
}

function markCurrent(path) {
  for (const link of document.querySelectorAll("header nav a")) {
    const target = new URL(link.href).pathname.slice(BASE.length);
    const current = target === "" ? path === "" : path === target || path.startsWith(`${target}/`);
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

async function draw() {
  const path = window.location.pathname.slice(BASE.length).replace(/\/$/, "");
  markCurrent(path);
  if (leave) leave();
  leave = null;
  const number = ++drawn;
  const found = ROUTES.map(([pattern, page]) => [path.match(pattern), page]).find(([m]) => m);
  main.setAttribute("aria-busy", "true");
  main.replaceChildren();
  try {
    if (!found) throw new Error("There is no such page.");
    const [match, page] = found;
    const ctx = {
      main,
      session,
      params: match.slice(1).map(decodeURIComponent),
      query: new URLSearchParams(window.location.search),
      navigate,
      can: (scope) => session.scopes.includes(scope),
      current: () => number === drawn,
    };
    leave = (await page.render(ctx)) || null;
  } catch (error) {
    main.replaceChildren(errorBox(error));
  } finally {
    main.removeAttribute("aria-busy");
    main.dataset.ready = String(number);
  }
  const heading = main.querySelector("h1");
  if (heading) {
    heading.tabIndex = -1;
    if (number > 1) heading.focus();
    document.title = `${heading.textContent} · Leadgate`;
  }
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[href]");
  if (!link || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const target = new URL(link.href);
  if (target.origin !== window.location.origin || !target.pathname.startsWith(BASE)) return;
  if (target.pathname.startsWith(`${BASE}static/`)) return;
  event.preventDefault();
  navigate(target.pathname + target.search);
});

window.addEventListener("popstate", draw);
draw();

// What pages share beyond plain elements: errors as the API states them, announcements for
// screen readers, and forms that become the page's query string.

import { h } from "./dom.js";

/** The API's error (message, and each field at fault), as an alert. */
export function errorBox(error) {
  const fields = error.fields
    ? h("ul", {}, Object.entries(error.fields).map(([name, why]) => h("li", {}, h("code", {}, name), `: ${why}`)))
    : null;
  return h(
    "div",
    { class: "error", role: "alert" },
    h("p", {}, error.message || String(error)),
    fields,
    error.requestId ? h("small", {}, `request ${error.requestId}`) : null,
  );
}

/** Say something to screen readers and show it in the status line. */
export function announce(message) {
  const status = document.getElementById("status");
  status.textContent = "";
  window.setTimeout(() => {
    status.textContent = message;
  }, 30);
}

/** A place on the page for the outcome of an action: an error, or a message. */
export function outcome() {
  const box = h("div", { class: "outcome", "aria-live": "polite" });
  return {
    box,
    error(error) {
      box.replaceChildren(errorBox(error));
    },
    say(...content) {
      box.replaceChildren(h("p", { class: "ok" }, ...content));
    },
    clear() {
      box.replaceChildren();
    },
  };
}

/** Run an action from a button: disabled while it runs, the outcome shown where asked. */
export async function act(button, place, action) {
  button.disabled = true;
  place.clear();
  try {
    return await action();
  } catch (error) {
    place.error(error);
    return undefined;
  } finally {
    button.disabled = false;
  }
}

/** A filter form whose fields become the page's query string on submit. */
export function filterForm(ctx, path, fields, { submit = "Apply" } = {}) {
  const form = h("form", { class: "filters", role: "search" }, fields, h("div", { class: "field actions" }, h("button", { type: "submit" }, submit)));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    for (const [name, value] of new FormData(form)) {
      if (String(value).trim() !== "") query.append(name, String(value).trim());
    }
    const text = query.toString();
    ctx.navigate(text ? `${path}?${text}` : path);
  });
  return form;
}

/** Local date input (YYYY-MM-DD) to the instant that day starts, here. */
export function dayStart(date, plusDays = 0) {
  if (!date) return undefined;
  const day = new Date(`${date}T00:00:00`);
  day.setDate(day.getDate() + plusDays);
  return day.toISOString();
}

export function pageHeader(title, ...extra) {
  return h("div", { class: "page-head" }, h("h1", {}, title), ...extra);
}

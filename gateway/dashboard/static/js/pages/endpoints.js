// Endpoints and their health (circuit, consecutive failures, failing since, why disabled);
// enable or disable, rotate the signing secret, send a test event — each an endpoints API call.

import { api } from "../api.js";
import { badge, facts, fmtDate, fmtNumber, h } from "../dom.js";
import { act, outcome, pageHeader } from "../ui.js";

export function circuit(health, now = Date.now()) {
  const until = health.circuit_open_until;
  return until && new Date(until).getTime() > now ? `open until ${fmtDate(until)}` : "closed";
}

function endpointCard(ctx, endpoint, reload) {
  const result = outcome();
  const path = `/v1/endpoints/${encodeURIComponent(endpoint.id)}`;
  const health = endpoint.health;
  const buttons = [];
  if (ctx.can("manage")) {
    const toggle = h("button", { type: "button", class: endpoint.enabled ? "secondary" : "" }, endpoint.enabled ? "Disable" : "Enable");
    toggle.addEventListener("click", () => act(toggle, result, async () => {
      await api("PATCH", path, { body: { enabled: !endpoint.enabled } });
      await reload();
    }));
    const rotate = h("button", { type: "button", class: "secondary" }, "Rotate secret");
    rotate.addEventListener("click", () => {
      if (!window.confirm("Make a new signing secret? The current one keeps signing for 24 hours.")) return;
      act(rotate, result, async () => {
        const done = await api("POST", `${path}/rotate-secret`, { body: {} });
        result.say("New secret (shown once): ", h("code", { class: "secret" }, done.secret),
          done.previous_secret_expires_at ? ` — the previous one signs until ${fmtDate(done.previous_secret_expires_at)}.` : "");
      });
    });
    const test = h("button", { type: "button", class: "secondary", disabled: !endpoint.enabled }, "Send test event");
    test.addEventListener("click", () => act(test, result, async () => {
      const done = await api("POST", `${path}/test`);
      result.say("Test event sent: ", h("a", { href: `/dashboard/deliveries/${encodeURIComponent(done.delivery_id)}` }, `delivery ${done.delivery_id}`));
    }));
    buttons.push(toggle, rotate, test);
  }
  const state = endpoint.enabled
    ? (health.consecutive_failures > 0 ? badge("failing") : badge("healthy", "succeeded"))
    : badge("disabled");
  const headingId = `ep-${endpoint.id}`;
  return h(
    "article",
    { class: "panel endpoint", "aria-labelledby": headingId, dataset: { id: endpoint.id } },
    h("h2", { id: headingId }, h("span", { class: "url" }, endpoint.url), " ", state),
    endpoint.description ? h("p", {}, endpoint.description) : null,
    facts([
      ["Id", h("code", {}, endpoint.id)],
      ["Events", endpoint.event_types.join(", ")],
      ["Circuit", circuit(health)],
      ["Consecutive failures", fmtNumber(health.consecutive_failures)],
      ["Failing since", health.failing_since ? fmtDate(health.failing_since) : "—"],
      ["Disabled because", endpoint.enabled ? null : endpoint.disabled_reason || "disabled by an operator"],
      ["Rate limit", endpoint.rate_limit ? `${endpoint.rate_limit} / s` : null],
      ["Signature", endpoint.signature.scheme],
    ]),
    h("div", { class: "actions-row" }, ...buttons,
      h("a", { href: `/dashboard/deliveries?endpoint_id=${encodeURIComponent(endpoint.id)}` }, "Deliveries"),
      h("a", { href: `/dashboard/deliveries?endpoint_id=${encodeURIComponent(endpoint.id)}&state=failed` }, "Failed deliveries and replay")),
    result.box,
  );
}

export async function render(ctx) {
  const list = h("div", { class: "endpoints" });
  ctx.main.replaceChildren(pageHeader("Endpoints"), list);
  async function draw() {
    const endpoints = (await api("GET", "/v1/endpoints")).data;
    list.replaceChildren(...(endpoints.length
      ? endpoints.map((e) => endpointCard(ctx, e, draw))
      : [h("p", { class: "empty" }, "No endpoints yet: register one with POST /v1/endpoints or `leadgate endpoints add`.")]));
  }
  await draw();
  return null;
}

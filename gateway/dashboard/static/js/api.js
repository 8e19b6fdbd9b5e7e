// The JSON API, called as the signed-in key: the session cookie goes along (same origin), and
// every request that changes something carries the session's CSRF token. Errors are the API's
// own body, shown as it says them.

const CSRF = document.querySelector('meta[name="csrf-token"]').content;

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `request failed with status ${status}`);
    this.status = status;
    this.code = error.code;
    this.fields = error.fields || null;
    this.requestId = error.request_id;
  }
}

function url(path, query) {
  const target = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    for (const one of Array.isArray(value) ? value : [value]) {
      if (one !== null && one !== undefined && one !== "") target.searchParams.append(name, one);
    }
  }
  return target;
}

export async function api(method, path, { query, body } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = CSRF;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url(path, query), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  if (response.status === 401) {
    // The session ended (signed out elsewhere, expired, or the key was revoked).
    window.location.assign("/dashboard/login");
  }
  const data = await response.json();
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

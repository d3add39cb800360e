// The REST API as the console calls it: the web-cookie session, the CSRF header on every change, one refresh
// on a 401, and errors carrying the envelope's message ({"error": {"code", "message", "details"}}).

export const CSRF_HEADER = "X-WellPulse-CSRF";

export class ApiError extends Error {
  constructor(status, code, message, details = []) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }

  // The message a person reads: the envelope's, with the fields it names.
  get readable() {
    const fields = this.details.filter((d) => d.field).map((d) => `${d.field}: ${d.message}`);
    return fields.length ? `${this.message} (${fields.join("; ")})` : this.message;
  }
}

let signedOut = () => {};
// Called once the session is gone for good (refresh failed): the app goes back to the sign-in view.
export function onSignedOut(handler) { signedOut = handler; }

async function send(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") headers[CSRF_HEADER] = "1";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  try {
    return await fetch(path, { method, headers, credentials: "same-origin", cache: "no-store",
                               body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (exc) {
    throw new ApiError(0, "NETWORK", "the server cannot be reached; check the connection and try again");
  }
}

let refreshing = null;
// Rotate the session's tokens (the refresh cookie is sent to /v1/auth only); true if the session lives on.
export function refreshSession() {
  if (!refreshing) {
    refreshing = send("POST", "/v1/auth/refresh").then((r) => r.ok, () => false)
      .finally(() => { refreshing = null; });
  }
  return refreshing;
}

export async function api(method, path, body) {
  const anonymous = path.startsWith("/v1/auth/login");
  let resp = await send(method, path, body);
  if (resp.status === 401 && !anonymous && await refreshSession()) resp = await send(method, path, body);
  if (resp.status === 204) return null;
  let payload = null;
  try { payload = await resp.json(); } catch { payload = null; }
  if (!resp.ok) {
    const err = (payload && payload.error) || {};
    const error = new ApiError(resp.status, err.code || "ERROR", err.message || `the server answered ${resp.status}`,
                               err.details || []);
    if (resp.status === 401 && !anonymous) signedOut(error);
    throw error;
  }
  return payload;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body);

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const text = q.toString();
  return text ? `?${text}` : "";
}

// Every page of a list endpoint (at most `maxPages` of 100).
export async function getAll(path, params = {}, maxPages = 20) {
  const out = [];
  for (let page = 1; page <= maxPages; page += 1) {
    const body = await get(path + query({ ...params, limit: 100, page }));
    out.push(...body.data);
    const total = body.meta && body.meta.pagination ? body.meta.pagination.total : body.data.length;
    if (out.length >= total || body.data.length === 0) break;
  }
  return out;
}

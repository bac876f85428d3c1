// Talking to /api/v1 with the session cookie. The CSRF token lives in this module's memory only
// (never in localStorage): a reload asks GET /session for it again.

const BASE = "/api/v1";

let csrfToken = null;
let onUnauthorized = () => {};

/** An error response: `{"error": {"code", "message", "details"}}`, or a network failure. */
export class ApiError extends Error {
  constructor(status, code, message, details = []) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details ?? [];
  }
}

/** Called when any request other than the session's own gets 401 (the session ended). */
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

/**
 * Send one request; resolve to the parsed JSON body (null for an empty one) or reject with an
 * ApiError. Non-GET requests carry X-CSRF-Token.
 */
export async function request(method, path, { body, query, signal } = {}) {
  const url = new URL(BASE + path, window.location.origin);
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.set(key, value);
  }
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  let response;
  try {
    response = await fetch(url, {
      method, headers, signal, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (exc) {
    if (exc.name === "AbortError") throw exc;
    throw new ApiError(0, "network", "The server cannot be reached.");
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const error = data?.error ?? {};
    const apiError = new ApiError(response.status, error.code ?? `http_${response.status}`,
      error.message ?? `${response.status} ${response.statusText}`, error.details);
    if (response.status === 401 && !path.startsWith("/session")) onUnauthorized(apiError);
    throw apiError;
  }
  return data;
}

export const get = (path, options) => request("GET", path, options);
export const post = (path, body, options) => request("POST", path, { ...options, body });

/** Exchange an API token for a session cookie; resolves to `{name, role, csrf_token}`. */
export async function login(token) {
  const session = await request("POST", "/session", { body: { token } });
  csrfToken = session.csrf_token;
  return session;
}

/** The current session, or null when there is none. */
export async function currentSession() {
  try {
    const session = await request("GET", "/session");
    csrfToken = session.csrf_token;
    return session;
  } catch (exc) {
    if (exc instanceof ApiError && exc.status === 401) return null;
    throw exc;
  }
}

export async function logout() {
  try {
    await request("DELETE", "/session");
  } finally {
    csrfToken = null;
  }
}

/** An absolute URL under /api/v1 with a query, for links (the audit export) and EventSource. */
export function apiUrl(path, query = {}) {
  const url = new URL(BASE + path, window.location.origin);
  for (const [key, value] of Object.entries(query)) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.set(key, value);
  }
  return url.pathname + url.search;
}

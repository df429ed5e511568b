// The session and the HTTP API. The session token lives in sessionStorage: this tab only, this
// origin only, gone when the tab closes. It is never put in a cookie or a URL (except the
// WebSocket's ?token=, which browsers cannot send as a header).

const KEY = "agentmonitor.session";

/** @returns {{token:string, username:string, role:string, expires_at:string}|null} */
export function session() {
  try {
    const s = JSON.parse(sessionStorage.getItem(KEY) || "null");
    if (s && s.token && new Date(s.expires_at) > new Date()) return s;
  } catch { /* a damaged entry is no session */ }
  return null;
}

export function setSession(s) { sessionStorage.setItem(KEY, JSON.stringify(s)); }
export function clearSession() { sessionStorage.removeItem(KEY); }

const RANK = { viewer: 1, operator: 2, admin: 3 };
/** can reports whether the signed-in user has at least role. */
export function can(role) {
  const s = session();
  return !!s && (RANK[s.role] || 0) >= RANK[role];
}

/** ApiError is a non-2xx answer: status, the API's message and its details (field names). */
export class ApiError extends Error {
  constructor(status, message, details) {
    super(message);
    this.status = status;
    this.details = details || [];
  }
}

let onUnauthorized = () => {};
export function whenUnauthorized(fn) { onUnauthorized = fn; }

/** api sends a request to the gateway's API and returns the decoded JSON answer (null for 204). */
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const s = session();
  if (s) headers.Authorization = "Bearer " + s.token;
  const init = { method, headers, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, "the gateway does not answer (" + e.message + ")");
  }
  if (res.status === 204) return null;
  let data = null;
  const text = await res.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = { error: text.trim() }; }
  }
  if (!res.ok) {
    if (res.status === 401 && s && path !== "/api/v1/auth/logout") {
      clearSession();
      onUnauthorized();
    }
    throw new ApiError(res.status, (data && data.error) || res.statusText, data && data.details);
  }
  return data;
}

export async function login(username, password) {
  const s = await api("POST", "/api/v1/auth/login", { username, password });
  setSession(s);
  return s;
}

export async function logout() {
  try { await api("POST", "/api/v1/auth/logout"); } catch { /* ended anyway */ }
  clearSession();
}

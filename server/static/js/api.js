// The API client: bearer token from sessionStorage (this tab only; never localStorage), JSON
// errors turned into ApiError with the server's code, message and field details, uploads with
// progress (XHR), and Server-Sent Events read through fetch so the token stays in a header.

const KEY = "pm.token";

export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || "http_error";
    this.details = e.details || {};
  }
  // [{field, message, allowed?}] from a 422, or one entry naming details.field
  get fieldErrors() {
    if (Array.isArray(this.details.errors)) return this.details.errors;
    if (this.details.field) return [{ field: this.details.field, message: this.message }];
    return [];
  }
}

export const session = {
  get token() { return sessionStorage.getItem(KEY); },
  set token(v) { if (v) sessionStorage.setItem(KEY, v); else sessionStorage.removeItem(KEY); },
  me: null,
  platform: null,
  can(role) {
    const order = ["viewer", "operator", "admin"];
    return !!this.me && order.indexOf(this.me.role) >= order.indexOf(role);
  },
};

function url(path, query) {
  const u = new URL(path.startsWith("/") ? path : `/api/v1/${path}`, location.origin);
  for (const [k, v] of Object.entries(query || {})) if (v !== undefined && v !== null && v !== "") u.searchParams.set(k, v);
  return u;
}

async function errorOf(res) {
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  const err = new ApiError(res.status, body);
  if (res.status === 401) window.dispatchEvent(new CustomEvent("pm:unauthorized", { detail: err }));
  return err;
}

export async function api(path, { method = "GET", body, query, signal, auth = true } = {}) {
  const headers = {};
  if (auth && session.token) headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(url(path, query), { method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, { error: { message: `network error: the API did not answer (${err.message})` } });
  }
  if (!res.ok && !(path === "/api/health" && res.status === 503)) throw await errorOf(res);
  if (res.status === 204) return null;
  return res.json();
}

export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url(path));
    xhr.setRequestHeader("Authorization", `Bearer ${session.token}`);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total, "upload"); };
    xhr.upload.onload = () => onProgress(1, "checking");
    xhr.onerror = () => reject(new ApiError(0, { error: { message: "network error: the API did not answer" } }));
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else {
        const err = new ApiError(xhr.status, body);
        if (xhr.status === 401) window.dispatchEvent(new CustomEvent("pm:unauthorized", { detail: err }));
        reject(err);
      }
    };
    xhr.send(form);
  });
}

// Reads a job's SSE stream: calls onEvent({id, event, data}) for each event; resolves when the
// server ends the stream (it does so after the job's terminal event). A dropped connection is
// resumed with Last-Event-ID after a growing pause; after MAX_RECONNECTS in a row it throws. An
// in-band `event: error` (the token was revoked mid-stream) signs the tab out.
const MAX_RECONNECTS = 10;

export async function events(path, onEvent, signal) {
  let lastId = null;
  let failures = 0;
  while (!signal.aborted) {
    const headers = { Authorization: `Bearer ${session.token}`, Accept: "text/event-stream" };
    if (lastId) headers["Last-Event-ID"] = lastId;
    try {
      const res = await fetch(url(path), { headers, signal });
      if (!res.ok) throw await errorOf(res);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return; // the server closed the stream: the job has ended
        failures = 0;
        buf += value;
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const ev = parseEvent(buf.slice(0, i));
          buf = buf.slice(i + 2);
          if (!ev) continue;
          if (ev.id) lastId = ev.id;
          if (ev.event === "error") {
            const err = new ApiError(401, { error: ev.data });
            if (ev.data && ev.data.code === "unauthorized") window.dispatchEvent(new CustomEvent("pm:unauthorized", { detail: err }));
            throw err;
          }
          onEvent(ev);
        }
      }
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof ApiError) throw err; // an answer, not a dropped connection
      failures += 1;
      if (failures > MAX_RECONNECTS) throw new Error(`lost the live connection to the API (${err.message}); reload the page`);
      await new Promise((r) => setTimeout(r, Math.min(10_000, 500 * 2 ** failures)));
    }
  }
}

function parseEvent(block) {
  const ev = { id: null, event: "message", data: "" };
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const j = line.indexOf(":");
    const k = j < 0 ? line : line.slice(0, j);
    const v = j < 0 ? "" : line.slice(j + 1).replace(/^ /, "");
    if (k === "id") ev.id = v; else if (k === "event") ev.event = v; else if (k === "data") ev.data += v;
  }
  if (!ev.data) return null;
  try { ev.data = JSON.parse(ev.data); } catch { /* keep the text */ }
  return ev;
}

// Downloads an API file with the bearer header (a plain link can't send it) and hands it to the
// browser as a file. Errors come back as ApiError like any other call (a 401 signs the tab out).
export async function download(path, filename) {
  let res;
  try {
    res = await fetch(url(path), { headers: { Authorization: `Bearer ${session.token}` } });
  } catch (err) {
    throw new ApiError(0, { error: { message: `network error: ${err.message}` } });
  }
  if (!res.ok) throw await errorOf(res);
  const blob = await res.blob();
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

// Error details as a list whatever was thrown (an ApiError, or a network TypeError).
export function fieldErrorsOf(err) {
  return err instanceof ApiError ? err.fieldErrors : [];
}

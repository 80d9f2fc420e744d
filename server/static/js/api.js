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
  const res = await fetch(url(path, query), { method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body) });
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

// Reads an SSE stream: calls onEvent({id, event, data}) for each; resolves when the server closes it.
// Reconnects with Last-Event-ID when the connection drops before the job's terminal event.
export async function events(path, onEvent, signal) {
  let lastId = null;
  for (let attempt = 0; attempt < 20 && !signal.aborted; attempt++) {
    const headers = { Authorization: `Bearer ${session.token}`, Accept: "text/event-stream" };
    if (lastId) headers["Last-Event-ID"] = lastId;
    let res;
    try {
      res = await fetch(url(path), { headers, signal });
    } catch (e) {
      if (signal.aborted) return;
      await new Promise((r) => setTimeout(r, 1000));
      continue;
    }
    if (!res.ok) throw await errorOf(res);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    let finished = false;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) { finished = true; break; }
        buf += value;
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i); buf = buf.slice(i + 2);
          const ev = { id: null, event: "message", data: "" };
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) continue;
            const j = line.indexOf(":");
            const k = j < 0 ? line : line.slice(0, j);
            const v = j < 0 ? "" : line.slice(j + 1).replace(/^ /, "");
            if (k === "id") ev.id = v; else if (k === "event") ev.event = v; else if (k === "data") ev.data += v;
          }
          if (!ev.data) continue;
          if (ev.id) lastId = ev.id;
          try { ev.data = JSON.parse(ev.data); } catch { /* keep text */ }
          onEvent(ev);
        }
      }
    } catch (e) {
      if (signal.aborted) return;
    }
    if (finished) return; // the server ends the stream after the terminal event
  }
}

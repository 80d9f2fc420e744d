// Small DOM helpers: h() builds elements (text is always inserted as text, never as HTML).

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) { while (el.firstChild) el.firstChild.remove(); return el; }

export function replace(el, ...children) { clear(el); return append(el, children); }

export const num = (v, digits = 3) => {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return v.toLocaleString("en-US");
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
  return v.toLocaleString("en-US", { maximumFractionDigits: digits });
};
export const pct = (v, digits = 1) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(digits)} %`);
export const bytes = (n) => {
  if (n === null || n === undefined) return "–";
  const u = ["B", "KB", "MB", "GB"]; let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
};
export const when = (iso) => {
  if (!iso) return "–";
  const d = new Date(iso.endsWith("Z") || iso.includes("+") ? iso : iso + "Z");
  return d.toLocaleString("en-GB", { dateStyle: "short", timeStyle: "medium" });
};
export const duration = (a, b) => {
  if (!a) return "–";
  const ms = (b ? Date.parse(b.endsWith("Z") || b.includes("+") ? b : b + "Z") : Date.now())
    - Date.parse(a.endsWith("Z") || a.includes("+") ? a : a + "Z");
  const s = Math.max(0, ms / 1000);
  return s < 60 ? `${s.toFixed(1)} s` : s < 3600 ? `${Math.floor(s / 60)} min ${Math.round(s % 60)} s` : `${(s / 3600).toFixed(1)} h`;
};

export function statusBadge(status) {
  return h("span", { class: `badge s-${status}` }, status);
}

export function progressBar(fraction, label) {
  const p = Math.round((fraction || 0) * 100);
  return h("div", { class: "progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
    "aria-valuenow": String(p), "aria-label": label || "progress" }, h("span", { style: { width: `${p}%` } }));
}

export function field(label, input, { hint, id, error } = {}) {
  const fid = id || input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = fid;
  const hintEl = hint ? h("p", { class: "hint", id: `${fid}-hint` }, hint) : null;
  const errEl = h("p", { class: "error", id: `${fid}-error`, role: "alert" }, error || "");
  input.setAttribute("aria-describedby", [hintEl ? `${fid}-hint` : "", `${fid}-error`].join(" ").trim());
  return h("div", { class: "field", dataset: { field: input.name || fid } }, h("label", { for: fid }, label), input, hintEl, errEl);
}

export function emptyState(title, text, ...actions) {
  return h("div", { class: "empty" }, h("h2", {}, title), h("p", {}, text), h("div", { class: "row", style: { justifyContent: "center" } }, actions));
}

// A table from header labels and rows of cells (strings or nodes); numeric-looking cells align right.
export function grid(headers, rows, { caption, rowClass } = {}) {
  return h("table", {},
    caption ? h("caption", { class: "visually-hidden" }, caption) : null,
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows.map((cells, i) => h("tr", { class: rowClass ? rowClass(i) : "" },
      cells.map((c) => h("td", { class: typeof c === "string" && /^[-+]?[\d.,]+( ?%)?$/.test(c) ? "num" : "" }, c))))));
}

// Previous/next buttons for a server-side page {total, limit, offset}; go(offset) loads another.
export function pager(page, go) {
  const { total, limit, offset } = page;
  if (total <= limit) return null;
  return h("nav", { class: "pager", "aria-label": "pages" },
    h("button", { type: "button", class: "secondary", disabled: offset === 0, onclick: () => go(Math.max(0, offset - limit)) }, "← Newer"),
    h("span", {}, `${offset + 1}–${Math.min(total, offset + limit)} of ${total.toLocaleString("en-US")}`),
    h("button", { type: "button", class: "secondary", disabled: offset + limit >= total, onclick: () => go(offset + limit) }, "Older →"));
}

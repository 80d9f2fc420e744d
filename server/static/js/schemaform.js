// Forms built from the API's OpenAPI document: each field's type, default, limits and help text
// come from the request model the server validates with, so what the form offers and says matches
// what the API accepts; the API does the validating. The server's 422 `details.errors[].field` ("body.cv_folds") is shown under that field.

import { api, fieldErrorsOf, session } from "./api.js";
import { navigate, showError } from "./app.js";
import { field, h } from "./dom.js";

let spec = null;
export async function openapi() {
  if (!spec) spec = await api("/openapi.json", { auth: false });
  return spec;
}

const label = (name, p) => (p.title || name).replace(/\bId\b/, "ID").replace(/\bCv\b/, "CV").replace(/\bRul\b/, "RUL")
  .replace(/\bGpu\b/, "GPU");

function variants(p) {
  if (p.anyOf) return { nullable: p.anyOf.some((v) => v.type === "null"), base: p.anyOf.find((v) => v.type !== "null") || {} };
  return { nullable: false, base: p };
}

function hint(p, base) {
  const limits = [];
  const lo = base.minimum ?? base.exclusiveMinimum;
  if (lo !== undefined) limits.push(`${base.exclusiveMinimum !== undefined ? ">" : "≥"} ${lo}`);
  if (base.maximum !== undefined) limits.push(`≤ ${base.maximum.toLocaleString("en-US")}`);
  if (base.type === "array") limits.push(`comma-separated${base.maxItems ? `, at most ${base.maxItems}` : ""}`);
  return [p.description, limits.join(", ")].filter(Boolean).join(" · ") || undefined;
}

// componentName: e.g. "TrainRequest"; opts.only: field names in order; opts.fixed: values sent as is;
// opts.inputs: name -> a prebuilt input element (e.g. a dataset <select>).
export async function schemaForm(componentName, { only, fixed = {}, inputs = {}, idPrefix = "" } = {}) {
  const comp = (await openapi()).components.schemas[componentName];
  const names = only || Object.keys(comp.properties).filter((n) => !(n in fixed));
  const fields = {};
  const el = h("div", { class: "form-grid" });
  for (const name of names) {
    const p = comp.properties[name];
    const { nullable, base } = variants(p);
    const required = (comp.required || []).includes(name);
    let input = inputs[name];
    let read;
    if (input) {
      read = () => input.value || null;
    } else if (p.enum || base.enum) {
      const options = p.enum || base.enum;
      input = h("select", {}, options.map((v) => h("option", { value: JSON.stringify(v), selected: JSON.stringify(v) === JSON.stringify(p.default) }, String(v))));
      read = () => JSON.parse(input.value);
    } else if (base.type === "boolean") {
      input = h("input", { type: "checkbox", checked: !!p.default });
      read = () => input.checked;
    } else if (base.type === "integer" || base.type === "number") {
      input = h("input", { type: "number", step: base.type === "integer" ? "1" : "any", value: p.default ?? "",
        min: base.minimum ?? base.exclusiveMinimum, max: base.maximum, required: required && !nullable });
      read = () => {
        // A typo ("12,5") reads as "" in a number input: refuse it rather than send the default.
        if (input.validity.badInput) throw new FieldError(name, "not a number");
        return input.value === "" ? (nullable ? null : undefined) : Number(input.value);
      };
    } else if (base.type === "array") {
      input = h("input", { type: "text", value: Array.isArray(p.default) ? p.default.join(", ") : "" });
      const itemType = base.items?.type;
      read = () => {
        const parts = input.value.split(",").map((s) => s.trim()).filter(Boolean);
        if (!parts.length) return nullable ? null : undefined;
        return itemType === "integer" || itemType === "number" ? parts.map(Number) : parts;
      };
    } else if (base.type === "object") {
      input = h("textarea", { rows: "2", placeholder: JSON.stringify(p.examples?.[0] || base.examples?.[0] || {}) });
      read = () => {
        if (!input.value.trim()) return nullable ? null : undefined;
        try { return JSON.parse(input.value); } catch { throw new FieldError(name, "not valid JSON"); }
      };
    } else {
      input = h("input", { type: "text", value: p.default ?? "", maxlength: base.maxLength });
      read = () => (input.value.trim() === "" ? (nullable ? null : undefined) : input.value.trim());
    }
    input.name = name;
    input.id = `${idPrefix}${name}`;
    const text = inputs[name] ? label(name, p).replace(/ ID$/, "") : label(name, p);
    const wrapper = field(text + (required ? " *" : ""), input, { hint: hint(p, base) });
    fields[name] = { input, read, wrapper };
    el.append(wrapper);
  }
  return {
    element: el,
    fields,
    values() {
      this.clearErrors();
      const out = { ...fixed };
      for (const [name, f] of Object.entries(fields)) {
        const v = f.read();
        if (v !== undefined) out[name] = v;
      }
      return out;
    },
    clearErrors() {
      for (const f of Object.values(fields)) { f.wrapper.classList.remove("invalid"); f.wrapper.querySelector(".error").textContent = ""; }
    },
    // Shows each field error under its field; returns the messages that name no field of this form.
    showErrors(err) {
      const rest = [];
      const list = err instanceof FieldError ? [{ field: `body.${err.field}`, message: err.message }] : fieldErrorsOf(err);
      for (const fe of list) {
        const name = (fe.field || "").replace(/^body\./, "").split(".")[0].replace(/\[.*$/, "");
        const f = fields[name];
        if (!f) { rest.push(fe.message); continue; }
        f.wrapper.classList.add("invalid");
        const allowed = fe.allowed ? ` (allowed: ${Object.entries(fe.allowed).map(([k, v]) => `${k} ${JSON.stringify(v)}`).join(", ")})` : "";
        f.wrapper.querySelector(".error").textContent = fe.message + allowed;
      }
      const first = Object.values(fields).find((f) => f.wrapper.classList.contains("invalid"));
      if (first) first.input.focus();
      return rest;
    },
  };
}

export class FieldError extends Error {
  constructor(fieldName, message) { super(message); this.field = fieldName; }
}

// A <form> that starts a job from a schemaForm: POSTs its values to `path` and opens the job's
// page; errors go under their fields (the rest below the form), a 403 also to the banner. The
// submit button is disabled, with the reason, for a token without the operator role.
export function jobForm(form, { path, id, submitId, errorId, label, context, intro }) {
  const error = h("p", { class: "error", id: errorId, role: "alert" });
  const allowed = session.can("operator");
  const submit = h("button", { type: "submit", id: submitId, disabled: !allowed,
    title: allowed ? undefined : `needs the 'operator' role (you are '${session.me.role}')` }, label);
  return h("form", { id, novalidate: true, onsubmit: async (e) => {
    e.preventDefault();
    error.textContent = "";
    let body;
    try { body = form.values(); } catch (err) { if (err instanceof FieldError) { form.showErrors(err); return; } throw err; }
    submit.disabled = true;
    try {
      const job = await api(path, { method: "POST", body });
      navigate(`#/jobs/${job.id}`);
    } catch (err) {
      const rest = form.showErrors(err);
      error.textContent = rest.length || !fieldErrorsOf(err).length
        ? `${err.message}${err.status ? ` (HTTP ${err.status})` : ""}` : "Fix the fields marked above.";
      if (err.status === 403) showError(err, context);
    } finally { submit.disabled = !allowed; }
  } }, intro ? h("p", { class: "hint" }, intro) : null, form.element, error, submit);
}

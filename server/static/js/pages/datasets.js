import { actionButton, importSample, navigate, showError, showInfo } from "../app.js";
import { api, download, fieldErrorsOf, session, upload } from "../api.js";
import { bars } from "../charts.js";
import { bytes, emptyState, field, grid, h, num, pager, pct, progressBar, replace, when } from "../dom.js";

const PAGE = 25;
const ROLES = [
  ["feature", "feature (numeric reading)"], ["categorical", "feature (categorical)"], ["target", "failure label (target)"],
  ["failure_mode", "failure mode label"], ["unit", "unit / asset id"], ["time", "time / cycle"], ["rul", "remaining useful life"],
  ["ignore", "ignore"],
];

export async function render(view, ctx) {
  if (ctx.args[0]) return renderDetail(view, ctx.args[0], ctx);
  return renderList(view, ctx);
}

function uploader() {
  const input = h("input", { type: "file", id: "upload-file", accept: ".csv,.tsv,.txt,.parquet", class: "visually-hidden", tabindex: "-1" });
  const name = h("input", { type: "text", id: "upload-name", name: "name", maxlength: "200", placeholder: "e.g. line-3 spindles 2026-Q4" });
  const status = h("div", { id: "upload-status", "aria-live": "polite" });
  const zone = h("div", { class: "dropzone", id: "dropzone" },
    h("p", {}, h("b", {}, "Drop a CSV or Parquet file here"), " or ",
      h("label", { for: "upload-file", class: "button secondary", tabindex: "0",
        onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } } }, "choose a file")),
    h("p", { class: "hint" }, `Up to ${bytes(session.platform?.limits?.dataset_max_bytes)}. Delimiters, encodings and decimal commas are detected; you correct the column roles after the upload.`),
    input);
  async function send(file) {
    input.value = ""; // the same file can be chosen again after an error
    if (!session.can("operator")) { showError(new Error(`uploading needs the 'operator' role (you are '${session.me.role}')`)); return; }
    const limit = session.platform?.limits?.dataset_max_bytes;
    if (limit && file.size > limit) {
      replace(status, h("p", { class: "error", id: "upload-error" },
        `${file.name} is ${bytes(file.size)}; this platform accepts uploads up to ${bytes(limit)} (DATASET_MAX_BYTES).`));
      return;
    }
    const form = new FormData();
    form.append("file", file);
    form.append("name", name.value.trim() || file.name.replace(/\.[^.]+$/, ""));
    replace(status, progressBar(0, "upload progress"), h("span", { class: "hint" }, `uploading ${file.name} (${bytes(file.size)})`));
    try {
      const ds = await upload("datasets", form, (f, phase) => replace(status, progressBar(f, "upload progress"),
        h("span", { class: "hint" }, phase === "upload" ? `uploading ${file.name}: ${Math.round(f * 100)} %` : "uploaded; reading, checking and profiling…")));
      if (zone.isConnected) navigate(`#/datasets/${ds.id}`); // not if the user has moved on meanwhile
    } catch (err) {
      replace(status, h("p", { class: "error", id: "upload-error" }, `${file.name}: ${err.message}`));
      showError(err, "upload");
    }
  }
  input.addEventListener("change", () => input.files[0] && send(input.files[0]));
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => { e.preventDefault(); zone.classList.remove("over"); if (e.dataTransfer.files[0]) send(e.dataTransfer.files[0]); });
  return h("section", { class: "panel", "aria-labelledby": "up-h" }, h("h2", { id: "up-h" }, "Upload"),
    field("Dataset name (optional)", name, { hint: "Defaults to the file name." }), zone, status);
}

async function renderList(view, { query, signal }) {
  const offset = Number(query.get("offset") || 0);
  const page = await api("datasets", { query: { limit: PAGE, offset }, signal });
  const list = page.total === 0
    ? emptyState("No datasets yet", "Upload a CSV from your historian above, or start with the bundled AI4I 2020 sample.",
      actionButton("Upload the bundled AI4I sample", "operator", (e) => importSample(e.currentTarget), { id: "import-sample" }))
    : h("div", {},
      grid(["name", "kind", "rows", "columns", "failure label", "size", "created"], page.items.map((d) => [
        h("a", { href: `#/datasets/${d.id}` }, d.name), d.kind, num(d.rows), String(d.columns.length), d.schema.target || "—",
        bytes(d.size_bytes), when(d.created_at)])),
      pager(page, (o) => navigate(`#/datasets?offset=${o}`)));
  replace(view, h("h1", {}, "Datasets"), session.can("operator") ? uploader() : null,
    h("section", { class: "panel" }, h("h2", {}, `All datasets (${page.total})`), list));
}

function roleOf(schema, c) {
  if (schema.target === c) return "target";
  if (schema.failure_modes.includes(c)) return "failure_mode";
  if (schema.unit === c) return "unit";
  if (schema.time === c) return "time";
  if (schema.rul === c) return "rul";
  if (schema.ignore.includes(c)) return "ignore";
  if (schema.categorical.includes(c)) return "categorical";
  return "feature";
}

function downloadAs(ds, format) {
  download(`datasets/${ds.id}/download?format=${format}`, `${ds.name}.${format}`).catch((err) => showError(err, "download"));
}

async function renderDetail(view, id, { signal }) {
  const ds = await api(`datasets/${encodeURIComponent(id)}`, { signal });
  const prof = ds.profile;
  const canEdit = session.can("operator");
  const schemaBox = h("div", { id: "schema-editor" });
  const histBox = h("div", { class: "grid", id: "histograms" });
  const balance = prof.class_balance;
  const modes = prof.failure_modes;
  replace(view,
    h("div", { class: "row" }, h("h1", {}, ds.name), h("span", { class: "spacer" }),
      h("button", { type: "button", class: "secondary", onclick: () => downloadAs(ds, "csv") }, "Download CSV"),
      h("button", { type: "button", class: "secondary", onclick: () => downloadAs(ds, "parquet") }, "Download Parquet"),
      actionButton("Delete", "operator", async () => {
        if (!confirm(`Delete dataset '${ds.name}'? This cannot be undone.`)) return;
        try { await api(`datasets/${ds.id}`, { method: "DELETE" }); navigate("#/datasets"); } catch (err) { showError(err, "delete"); }
      }, { class: "danger", id: "delete-dataset" })),
    h("div", { class: "kpis" },
      h("div", { class: "kpi" }, h("b", {}, num(ds.rows)), h("span", {}, "rows")),
      h("div", { class: "kpi" }, h("b", {}, String(ds.columns.length)), h("span", {}, "columns")),
      h("div", { class: "kpi" }, h("b", {}, bytes(ds.size_bytes)), h("span", {}, "stored (Parquet)")),
      balance ? h("div", { class: "kpi" }, h("b", {}, pct(balance.positive_rate, 2)), h("span", {}, `failures (${balance.positives} of ${num(ds.rows)})`)) : null,
      prof.units ? h("div", { class: "kpi" }, h("b", {}, String(prof.units.count)), h("span", {}, "units")) : null,
      h("div", { class: "kpi" }, h("b", {}, ds.kind), h("span", {}, "kind"))),
    ds.lineage ? h("p", { class: "hint" }, `Lineage: ${JSON.stringify(ds.lineage).slice(0, 300)}`) : null,
    h("div", { class: "row" },
      h("a", { class: "button", href: `#/train?dataset=${ds.id}` }, "Train a model on it"),
      h("span", { class: "hint" }, balance ? "" : "Set a failure label (target) below before training a failure model.")),
    h("section", { class: "panel" }, h("h2", {}, "Column roles"), schemaBox),
    balance || modes ? h("section", { class: "panel" }, h("h2", {}, "Class and failure-mode balance"),
      h("div", { class: "chart-box small" }, h("canvas", { id: "balance-chart" }))) : null,
    h("section", { class: "panel" }, h("h2", {}, "Profile"), histBox));

  renderSchemaEditor(schemaBox, ds, canEdit);
  if (balance || modes) {
    const labels = [...(balance ? ["no failure", "failure"] : []), ...Object.keys(modes || {})];
    const values = [...(balance ? [balance.negatives, balance.positives] : []), ...Object.values(modes || {})];
    bars(document.getElementById("balance-chart"), labels, [{ label: "rows", values }], { y: "rows", label: "rows per class and failure mode" });
  }
  for (const [c, p] of Object.entries(prof.columns)) {
    const card = h("div", { class: "panel" }, h("h3", {}, c),
      h("p", { class: "hint" }, `${p.kind}, ${p.dtype}; ${num(p.missing)} missing; ${num(p.distinct)} distinct` +
        (p.kind === "numeric" && p.min !== undefined ? `; min ${num(p.min)}, median ${num(p.median)}, max ${num(p.max)}` : "")));
    histBox.append(card);
    if (p.histogram) {
      const canvas = h("canvas", { class: "hist", "data-column": c });
      card.append(h("div", { class: "chart-box small" }, canvas));
      const e = p.histogram.edges;
      bars(canvas, p.histogram.counts.map((_, i) => num((e[i] + e[i + 1]) / 2, 2)), [{ label: c, values: p.histogram.counts }],
        { x: c, y: "rows", label: `histogram of ${c}` });
    } else if (p.top) {
      const canvas = h("canvas", { class: "hist", "data-column": c });
      card.append(h("div", { class: "chart-box small" }, canvas));
      bars(canvas, p.top.map((t) => t.value), [{ label: c, values: p.top.map((t) => t.count) }], { y: "rows", label: `counts of ${c}` });
    }
  }
}

function renderSchemaEditor(box, ds, canEdit) {
  const s = ds.schema;
  const prof = ds.profile.columns;
  const rows = ds.columns.map((c) => {
    const meta = s.columns[c] || {};
    const role = h("select", { name: `role:${c}`, "aria-label": `role of ${c}`, disabled: !canEdit },
      ROLES.map(([v, label]) => h("option", { value: v, selected: roleOf(s, c) === v }, label)));
    const unit = h("input", { type: "text", name: `unit:${c}`, value: meta.unit || "", size: "6", "aria-label": `unit of ${c}`, disabled: !canEdit });
    const numeric = prof[c]?.kind === "numeric";
    const lo = h("input", { type: "number", step: "any", name: `lo:${c}`, value: meta.normal_range ? meta.normal_range[0] : "", "aria-label": `normal range low of ${c}`, disabled: !canEdit || !numeric });
    const hi = h("input", { type: "number", step: "any", name: `hi:${c}`, value: meta.normal_range ? meta.normal_range[1] : "", "aria-label": `normal range high of ${c}`, disabled: !canEdit || !numeric });
    const err = h("span", { class: "error", id: `err-${c}` });
    return { c, role, unit, lo, hi, meta, cells: [h("b", {}, c), role, unit, h("span", { class: "row" }, lo, "–", hi), err], err };
  });
  const derivedBox = h("div", { id: "derived" });
  const addDerived = (name = "", expr = "") => {
    const n = h("input", { type: "text", name: "derived-name", value: name, placeholder: "power", "aria-label": "derived feature name", disabled: !canEdit });
    const e = h("input", { type: "text", name: "derived-expr", value: expr, size: "60", placeholder: "`Torque [Nm]` * `Rotational speed [rpm]` * 2 * pi / 60", "aria-label": "derived feature expression", disabled: !canEdit });
    const row = h("div", { class: "row derived-row" }, n, "=", e,
      canEdit ? h("button", { type: "button", class: "secondary", onclick: () => row.remove(), "aria-label": `remove derived feature ${name}` }, "Remove") : null);
    derivedBox.append(row);
  };
  for (const [n, e] of Object.entries(s.derived || {})) addDerived(n, e);
  const formError = h("p", { class: "error", id: "schema-error", role: "alert" });
  const save = actionButton("Save schema", "operator", async () => {
    for (const r of rows) r.err.textContent = "";
    formError.textContent = "";
    const schema = { target: null, failure_modes: [], unit: null, time: null, rul: null, categorical: [], ignore: [], derived: {}, columns: {} };
    for (const r of rows) {
      const v = r.role.value;
      if (["target", "unit", "time", "rul"].includes(v)) {
        if (schema[v]) { r.err.textContent = `only one column can be ${v}; '${schema[v]}' already is`; return; }
        schema[v] = r.c;
      } else if (v === "failure_mode") schema.failure_modes.push(r.c);
      else if (v === "categorical") schema.categorical.push(r.c);
      else if (v === "ignore") schema.ignore.push(r.c);
      const meta = { ...r.meta, unit: r.unit.value.trim() || null };
      if (r.lo.validity.badInput || r.hi.validity.badInput) { r.err.textContent = "the normal range must be numbers"; return; }
      if (r.lo.value !== "" || r.hi.value !== "") {
        if (r.lo.value === "" || r.hi.value === "") { r.err.textContent = "give both ends of the normal range, or neither"; return; }
        meta.normal_range = [Number(r.lo.value), Number(r.hi.value)];
      } else meta.normal_range = null;
      if (meta.unit || meta.normal_range || meta.description) schema.columns[r.c] = meta;
    }
    for (const row of derivedBox.querySelectorAll(".derived-row")) {
      const [n, e] = row.querySelectorAll("input");
      if (n.value.trim() || e.value.trim()) schema.derived[n.value.trim()] = e.value.trim();
    }
    for (const name of Object.keys(schema.derived)) { // keep what was said about derived features
      if (s.columns[name]) schema.columns[name] = s.columns[name];
    }
    save.disabled = true;
    try {
      const updated = await api(`datasets/${ds.id}`, { method: "PATCH", body: { schema } });
      Object.assign(ds, updated);
      navigate(`#/datasets/${ds.id}`); // re-render (this clears the banner), then say what happened
      showInfo("Schema saved; the dataset was re-checked and re-profiled.");
    } catch (err) {
      formError.textContent = err.message;
      for (const fe of fieldErrorsOf(err)) {
        const m = /columns\.([^.]+)/.exec(fe.field || "") || [];
        const target = rows.find((r) => r.c === m[1] || (fe.field || "").endsWith(`.${r.c}`) || (err.details.column === r.c));
        if (target) target.err.textContent = fe.message;
      }
    } finally { save.disabled = false; }
  }, { id: "save-schema" });
  replace(box,
    h("p", { class: "hint" }, "Inferred from the data: check it. Failure-mode columns are labels, never features. The normal range is what explanations compare readings with; the inferred one is the 1st–99th percentile of rows without a failure — replace it with your machine's documented range."),
    grid(["column", "role", "unit", "normal range", ""], rows.map((r) => r.cells)),
    h("h3", {}, "Derived features"),
    h("p", { class: "hint" }, "Column names in backticks; arithmetic and abs, sqrt, log, log1p, exp, min, max, clip."),
    derivedBox,
    canEdit ? h("button", { type: "button", class: "secondary", onclick: () => addDerived() }, "Add derived feature") : null,
    formError,
    h("div", { class: "row" }, save));
}

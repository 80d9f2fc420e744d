import { actionButton, navigate, showError } from "../app.js";
import { api, events, fieldErrorsOf, session, upload } from "../api.js";
import { bars } from "../charts.js";
import { emptyState, field, grid, h, num, pct, progressBar, replace } from "../dom.js";

export async function render(view, { query, signal }) {
  if (query.get("explanation")) {
    const e = await api(`llm/explanations/${encodeURIComponent(query.get("explanation"))}`, { signal });
    const box = h("div", {});
    replace(view, h("h1", {}, "Explanation"), h("p", {}, h("a", { href: `#/predict?model=${e.model_id}` }, "Score another reading with this model")), box);
    showExplanation(box, e, null);
    return;
  }
  const [failure, rul] = await Promise.all([api("models", { query: { kind: "failure", limit: 200 }, signal }),
    api("models", { query: { kind: "rul", limit: 200 }, signal })]);
  const models = [...failure.items, ...rul.items];
  const wanted = query.get("model");
  if (wanted && !models.some((m) => m.id === wanted || `${m.name}:${m.version}` === wanted)) {
    models.unshift(await api(`models/${encodeURIComponent(wanted)}`, { signal })); // older than the lists; 404 says so
  }
  if (!models.length) {
    replace(view, h("h1", {}, "Predict & explain"), emptyState("No models to score with",
      "Train a failure or RUL model first; then enter a reading here, or score a whole file.", h("a", { class: "button", href: "#/train" }, "Train a model")));
    return;
  }
  const chosen = models.find((m) => m.id === wanted || `${m.name}:${m.version}` === wanted) || models[0];
  const select = h("select", { id: "predict-model", onchange: (e) => navigate(`#/predict?model=${e.target.value}`) },
    models.map((m) => h("option", { value: m.id, selected: m.id === chosen.id }, `${m.name} v${m.version} (${m.kind})${m.aliases.length ? ` @${m.aliases.join(",")}` : ""}`)));
  const spec = await api(`models/${chosen.id}/inputs`, { signal });
  const single = h("div", { id: "single" });
  const batch = h("div", { id: "batch" });
  replace(view, h("h1", {}, "Predict & explain"),
    h("div", { class: "panel row" }, h("label", { for: "predict-model" }, "Model"), select,
      h("a", { href: `#/models/${chosen.id}` }, "evaluation")),
    h("div", { class: "grid2" },
      h("section", { class: "panel" }, h("h2", {}, "One reading"), single),
      h("section", { class: "panel" }, h("h2", {}, "A whole file (batch job)"), batch)));
  singleForm(single, chosen, spec, signal);
  await batchForm(batch, chosen, signal);
}

function singleForm(box, model, spec, signal) {
  const inputs = {};
  const fields = spec.inputs.map((c) => {
    let input;
    if (c.kind === "categorical") {
      input = h("select", { name: c.name }, (c.levels || []).map((v) => h("option", { value: v, selected: v === c.typical }, v)));
    } else {
      input = h("input", { type: c.kind === "unit" ? "text" : "number", step: "any", name: c.name, value: c.kind === "unit" ? "1" : c.kind === "time" ? "1" : (c.typical ?? ""), required: true });
    }
    inputs[c.name] = { input, spec: c };
    const range = c.normal_range ? `normal ${num(c.normal_range[0])}–${num(c.normal_range[1])}${c.unit ? ` ${c.unit}` : ""}` : (c.unit ? `in ${c.unit}` : "");
    const hint = [c.kind === "unit" ? "unit / asset id" : c.kind === "time" ? "time or cycle of this reading" : "", range, c.typical !== null && c.typical !== undefined && c.kind === "numeric" ? `typical ${num(c.typical)}` : ""].filter(Boolean).join(" · ");
    return field(c.name, input, { hint });
  });
  const err = h("p", { class: "error", id: "predict-error", role: "alert" });
  const out = h("div", { id: "prediction" });
  const submit = h("button", { type: "submit", id: "predict-submit", disabled: !session.can("operator"),
    title: session.can("operator") ? undefined : `scoring stores the prediction and needs the 'operator' role (you are '${session.me.role}')` }, "Predict");
  const form = h("form", { novalidate: true, onsubmit: async (e) => {
    e.preventDefault();
    err.textContent = "";
    for (const f of fields) { f.classList.remove("invalid"); f.querySelector(".error").textContent = ""; }
    const row = {};
    for (const [name, { input, spec: c }] of Object.entries(inputs)) {
      if (c.kind === "numeric" || c.kind === "time") {
        if (input.value === "" || Number.isNaN(Number(input.value))) {
          const f = input.closest(".field"); f.classList.add("invalid"); f.querySelector(".error").textContent = "enter a number"; input.focus(); return;
        }
        row[name] = Number(input.value);
      } else row[name] = input.value;
    }
    submit.disabled = true;
    try {
      const res = await api(`models/${model.id}/predict`, { method: "POST", body: { rows: [row] } });
      showPrediction(out, model, spec, row, res, signal);
    } catch (x) {
      err.textContent = x.message;
      for (const fe of fieldErrorsOf(x)) {
        const name = (fe.field || "").replace(/^body\.rows\[\d+\]\./, "");
        if (inputs[name]) { const f = inputs[name].input.closest(".field"); f.classList.add("invalid"); f.querySelector(".error").textContent = fe.message; }
      }
      if (x.status === 403) showError(x, "predict");
    } finally { submit.disabled = !session.can("operator"); }
  } }, h("div", { class: "form-grid" }, fields), err, submit);
  replace(box, form, out);
}

function statusOf(c, v) {
  if (!c.normal_range || typeof v !== "number") return "unknown";
  return v < c.normal_range[0] ? "below" : v > c.normal_range[1] ? "above" : "within";
}

function showPrediction(box, model, spec, row, res, signal) {
  const p = res.predictions[0];
  const readings = spec.inputs.filter((c) => c.kind === "numeric").map((c) => ({ c, v: row[c.name], s: statusOf(c, row[c.name]) }));
  const outside = readings.filter((r) => r.s === "below" || r.s === "above");
  const readingTable = grid(["reading", "value", "normal range", ""], readings.map((r) => [r.c.name, `${num(r.v)}${r.c.unit ? ` ${r.c.unit}` : ""}`,
    r.c.normal_range ? `${num(r.c.normal_range[0])}–${num(r.c.normal_range[1])}` : "—", r.s === "within" ? "within" : r.s === "unknown" ? "—" : h("b", { class: "bad" }, r.s)]),
  { rowClass: (i) => (readings[i].s === "below" || readings[i].s === "above" ? "out-of-range" : "") });
  if (model.kind === "rul") {
    replace(box, h("div", { class: "kpis" }, h("div", { class: "kpi", id: "rul-value" }, h("b", {}, num(p.rul, 1)), h("span", {}, `remaining useful life (unit ${p.unit}${res.model.rul_cap ? `, capped at ${num(res.model.rul_cap)}` : ", no cap"})`))),
      h("p", { class: "hint" }, `From ${p.rows} reading(s) of this unit. The model looks back over each unit's recent history, so `
        + "one reading is scored as a unit whose history starts here: score a unit's whole history as a file (batch job) for its real RUL."),
      outside.length ? h("p", { class: "bad" }, `${outside.length} reading(s) outside the normal range.`) : null, readingTable);
    return;
  }
  const modes = Object.entries(p.mode_probabilities || {}).sort((a, b) => b[1] - a[1]);
  const modeCanvas = h("canvas", { id: "mode-chart" });
  const explainBox = h("div", { id: "explain" });
  const provider = session.platform?.llm?.openai_configured
    ? h("select", { id: "explain-provider", "aria-label": "explanation provider" },
      h("option", { value: "openai", selected: session.platform.llm.default_provider === "openai" }, `LLM (${session.platform.llm.model})`),
      h("option", { value: "template", selected: session.platform.llm.default_provider === "template" }, "offline template"))
    : null;
  replace(box,
    h("div", { class: "kpis" },
      h("div", { class: "kpi", id: "failure-probability" }, h("b", { class: p.failure ? "bad" : "ok" }, pct(p.failure_probability, 1)), h("span", {}, "failure probability")),
      h("div", { class: "kpi" }, h("b", { class: p.failure ? "bad" : "ok" }, p.failure ? "ALARM" : "no alarm"), h("span", {}, `threshold ${num(res.model.threshold, 4)}`)),
      modes.length ? h("div", { class: "kpi", id: "likely-mode" }, h("b", {}, modes[0][0]), h("span", {}, `most likely mode (${pct(modes[0][1], 1)})`)) : null),
    outside.length ? h("p", { class: "bad", id: "out-of-range-note" }, `${outside.length} reading(s) outside the normal range: ${outside.map((r) => r.c.name).join(", ")}.`) : null,
    readingTable,
    modes.length ? h("div", { class: "chart-box small" }, modeCanvas) : null,
    h("div", { class: "row" }, actionButton("Explain", "operator", async (e) => {
      const button = e.currentTarget;
      button.disabled = true;
      try { await explain(explainBox, p.prediction_id, provider ? provider.value : undefined, signal); } finally { button.disabled = false; }
    }, { id: "explain-button" }), provider, h("span", { class: "hint" }, `prediction ${p.prediction_id.slice(0, 8)}`)),
    explainBox);
  if (modes.length) bars(modeCanvas, modes.map(([k]) => k), [{ label: "probability", values: modes.map(([, v]) => v) }], { y: "probability", label: "failure-mode probabilities" });
}

// Pulls the "summary" value out of a JSON answer that is still being written, for display while streaming.
function partialSummary(text) {
  const m = /"summary"\s*:\s*"((?:[^"\\]|\\.)*)/.exec(text);
  if (!m) return text.trim().startsWith("{") ? "" : text;
  try { return JSON.parse(`"${m[1].replace(/\\$/, "")}"`); } catch { return m[1]; }
}

async function explain(box, predictionId, provider, pageSignal) {
  const stream = h("p", { class: "explanation", id: "explanation-stream", "aria-live": "polite" });
  const status = h("div", { id: "explain-status" }, progressBar(0, "explanation progress"), h("span", { class: "hint" }, "queued on the llm queue…"));
  replace(box, h("h3", {}, "Explanation"), status, stream);
  let job;
  try {
    job = await api("llm/explanations", { method: "POST", body: { prediction_id: predictionId, ...(provider ? { provider } : {}) } });
  } catch (err) { replace(status, h("p", { class: "error" }, err.message)); showError(err, "explain"); return; }
  let text = "";
  let tokens = 0;
  const ctl = new AbortController();
  const stop = () => ctl.abort();
  pageSignal.addEventListener("abort", stop); // leaving the page closes the stream
  try {
    await events(`jobs/${job.id}/events`, (ev) => {
    const d = ev.data || {};
    if (ev.event === "token") {
      text += d.text || "";
      tokens += 1;
      stream.textContent = partialSummary(text);
      stream.dataset.tokens = String(tokens);
      replace(status, progressBar(0.5, "explanation progress"), h("span", { class: "hint" }, "the model is writing…"));
    } else if (ev.event === "token_reset") {
      text = "";
      stream.textContent = "";
    } else if (ev.event === "progress") {
      replace(status, progressBar(d.fraction, "explanation progress"), h("span", { class: "hint" }, d.message || ""));
    } else if (ev.event === "status" && ["succeeded", "failed", "cancelled"].includes(d.status)) {
      ctl.abort();
    }
    }, ctl.signal);
    if (pageSignal.aborted) return;
    const done = await api(`jobs/${job.id}`, { signal: pageSignal });
    if (done.status !== "succeeded") {
      replace(status, h("p", { class: "error", id: "explain-error" }, `Explanation job ${done.status}: ${done.error ? done.error.message : ""}`),
        h("a", { href: `#/jobs/${job.id}` }, "open the job"));
      return;
    }
    const e = await api(`llm/explanations/${done.result.explanation_id}`, { signal: pageSignal });
    status.remove();
    stream.remove();
    showExplanation(box, e, tokens);
  } catch (err) {
    if (pageSignal.aborted) return;
    replace(status, h("p", { class: "error", id: "explain-error" }, err.message), h("a", { href: `#/jobs/${job.id}` }, "open the job"));
  } finally {
    pageSignal.removeEventListener("abort", stop);
  }
}

function showExplanation(box, e, streamedTokens) {
  const ev = e.evidence || [];
  const f = e.faithfulness || {};
  box.append(
    h("div", { class: "panel", id: "explanation" },
      h("div", { class: "row" }, h("span", { class: `badge ${["high", "critical"].includes(e.urgency) ? "bad" : e.urgency === "medium" ? "warn" : "ok"}` }, `urgency: ${e.urgency}`),
        e.likely_failure_mode ? h("span", { class: "badge" }, `likely mode: ${e.likely_failure_mode}`) : null,
        h("span", { class: "hint" }, `worded by ${e.provider} (${e.model})${e.cached ? ", from cache" : ""}${streamedTokens ? `, streamed in ${streamedTokens} parts` : ""}`)),
      h("p", { class: "explanation", id: "explanation-summary" }, e.summary),
      e.fallback ? h("p", { class: "warn" }, `The LLM's answer was not used: ${e.fallback.reason}.`) : null,
      h("h3", {}, "Evidence"),
      grid(["reading", "value", "normal range", "status", "contribution to the score"], ev.map((r) => [
        r.feature, `${num(r.value)}${r.unit ? ` ${r.unit}` : ""}`, r.normal_range ? `${num(r.normal_range[0])}–${num(r.normal_range[1])}` : "—",
        r.status === "below" || r.status === "above" ? h("b", { class: "bad" }, `${r.status} normal`) : r.status, num(r.contribution, 4)]),
      { rowClass: (i) => (ev[i].status === "below" || ev[i].status === "above" ? "out-of-range" : "") }),
      h("h3", {}, "Recommended actions"),
      h("ol", { id: "recommended-actions" }, (e.recommended_actions || []).map((a) => h("li", {}, a))),
      h("p", { class: "hint", id: "faithfulness" }, `Faithfulness ${num(f.score)}: every reading named is among the top attributions and every number quoted matches a fact` +
        (f.unsupported && f.unsupported.length ? `; unsupported: ${f.unsupported.map((u) => u.claim).join("; ")}` : "."))));
}

async function batchForm(box, model, signal) {
  const list = await api("datasets", { query: { limit: 200 }, signal });
  const dsSelect = h("select", { id: "batch-dataset" }, list.items.map((d) => h("option", { value: d.id }, `${d.name} (${num(d.rows)} rows)`)));
  const file = h("input", { type: "file", id: "batch-file", accept: ".csv,.tsv,.txt,.parquet" });
  const status = h("div", { id: "batch-status" });
  const start = async (datasetId) => {
    try {
      const job = await api(`models/${model.id}/batch-predictions`, { method: "POST", body: { dataset_id: datasetId } });
      navigate(`#/jobs/${job.id}`);
    } catch (err) { replace(status, h("p", { class: "error" }, err.message)); showError(err, "batch scoring"); }
  };
  replace(box,
    h("p", { class: "hint" }, "Scores every row in chunks on the ml queue and writes the rows with predicted_* columns as a new dataset."),
    list.items.length ? h("div", { class: "row" }, field("Stored dataset", dsSelect),
      actionButton("Score dataset", "operator", () => start(dsSelect.value), { id: "batch-start" })) : null,
    field("…or upload a file to score", file, { hint: "It is stored as a dataset first (same checks as on Datasets)." }),
    actionButton("Upload and score", "operator", async () => {
      if (!file.files[0]) { replace(status, h("p", { class: "error" }, "choose a file first")); return; }
      const form = new FormData();
      form.append("file", file.files[0]);
      form.append("name", file.files[0].name.replace(/\.[^.]+$/, ""));
      try {
        const ds = await upload("datasets", form, (f) => replace(status, progressBar(f, "upload progress")));
        await start(ds.id);
      } catch (err) { replace(status, h("p", { class: "error" }, err.message)); }
    }, { id: "batch-upload" }),
    status);
}

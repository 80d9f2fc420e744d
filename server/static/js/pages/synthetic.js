import { api } from "../api.js";
import { bars } from "../charts.js";
import { emptyState, grid, h, num, pct, replace, when } from "../dom.js";
import { jobForm, schemaForm } from "../schemaform.js";

export async function render(view, { args, signal }) {
  if (args[0]) return renderReport(view, args[0], signal);
  const page = await api("models", { query: { kind: "tvae", limit: 200 }, signal });
  replace(view, h("h1", {}, "Synthetic data"),
    page.total === 0
      ? emptyState("No generators yet", "Train a TVAE generator on a dataset; its report tells whether the synthetic data is good enough to share.",
        h("a", { class: "button", href: "#/train?kind=tvae" }, "Train a TVAE generator"))
      : h("section", { class: "panel" }, grid(["generator", "quality", "failure rate real → synthetic", "TSTR F1 ratio", "exact copies", "created"],
        page.items.map((m) => {
          const x = m.metrics || {};
          return [h("a", { href: `#/synthetic/${m.id}` }, `${m.name} v${m.version}`), num(x.quality?.overall),
            `${pct(x.failure_rate?.real?.overall, 2)} → ${pct(x.failure_rate?.synthetic?.overall, 2)}`, num(x.tstr?.ratio),
            num(x.privacy?.exact_copies), when(m.created_at)];
        }))));
}

function share(counts) {
  const total = counts.reduce((a, b) => a + b, 0) || 1;
  return counts.map((c) => c / total);
}

async function renderReport(view, ref, signal) {
  const r = await api(`models/${encodeURIComponent(ref)}/report`, { signal });
  const q = r.quality || {};
  const fr = r.failure_rate || {};
  const t = r.tstr;
  const p = r.privacy || {};
  const ev = r.evaluated_on || {};
  const modeNames = Object.keys(fr.real?.modes || {});
  const rateCanvas = h("canvas", { id: "failure-rate-chart" });
  const colCanvas = h("canvas", { id: "column-quality-chart" });
  const hists = h("div", { class: "grid", id: "overlay-histograms" });
  const sampleBox = h("div", { id: "sample-form" });
  replace(view,
    h("div", { class: "row" }, h("h1", {}, `Synthetic data: ${r.name} v${r.version}`), h("span", { class: "spacer" }),
      h("a", { class: "button secondary", href: `#/models/${r.model_id}` }, "Registry entry")),
    h("p", { class: "hint" }, `Evaluated on ${num(ev.synthetic_rows)} synthetic rows against ${num(ev.training_rows)} real training rows and a real holdout of ${num(ev.holdout_rows)} rows the generator never saw.`),
    h("div", { class: "kpis" },
      h("div", { class: "kpi" }, h("b", {}, num(q.overall)), h("span", {}, "SDMetrics quality")),
      h("div", { class: "kpi" }, h("b", {}, num(q.column_shapes)), h("span", {}, "column shapes")),
      h("div", { class: "kpi" }, h("b", {}, num(q.column_pair_trends)), h("span", {}, "column pair trends")),
      h("div", { class: "kpi" }, h("b", {}, num(q.diagnostic?.overall)), h("span", {}, "diagnostic")),
      h("div", { class: "kpi" }, h("b", {}, `${pct(fr.real?.overall, 2)} → ${pct(fr.synthetic?.overall, 2)}`), h("span", {}, "failure rate real → synthetic")),
      t ? h("div", { class: "kpi" }, h("b", {}, num(t.ratio)), h("span", {}, "TSTR F1 ratio")) : null,
      h("div", { class: "kpi" }, h("b", {}, num(p.exact_copies)), h("span", {}, "exact copies of real rows"))),
    h("div", { class: "grid2" },
      h("section", { class: "panel" }, h("h2", {}, "Failure rate and modes"), h("div", { class: "chart-box" }, rateCanvas),
        grid(["label", "real rate", "synthetic rate", `real count (of ${num(ev.training_rows)})`, `synthetic count (of ${num(ev.synthetic_rows)})`],
          [["failure", fr.real?.overall, fr.synthetic?.overall], ...modeNames.map((m) => [m, fr.real.modes[m], fr.synthetic?.modes?.[m]])]
            .map(([k, a, b]) => [k, pct(a, 2), pct(b, 2), num(Math.round((a || 0) * (ev.training_rows || 0))), num(Math.round((b || 0) * (ev.synthetic_rows || 0)))]),
          { caption: "failure and mode counts" })),
      h("section", { class: "panel" }, h("h2", {}, "Quality per column"), h("div", { class: "chart-box" }, colCanvas))),
    h("div", { class: "grid2" },
      t ? h("section", { class: "panel", id: "tstr" }, h("h2", {}, "Train on synthetic, test on real"),
        grid(["", "trained on real", "trained on synthetic", "ratio"], [
          ["F1 at the cost-based threshold", num(t.f1_real), num(t.f1_synthetic), num(t.ratio)],
          ["F1 at the F1-optimal threshold", num(t.f1_at_f1_threshold_real), num(t.f1_at_f1_threshold_synthetic), num(t.ratio_at_f1_threshold)],
          ["PR-AUC", num(t.pr_auc_real), num(t.pr_auc_synthetic), num(t.pr_auc_ratio)]]),
        h("p", { class: "hint" }, t.protocol)) : null,
      h("section", { class: "panel", id: "privacy" }, h("h2", {}, "Privacy"),
        grid(["distance to the closest real training row", "median", "5th percentile"], [
          ["synthetic rows", num(p.dcr_synthetic_median), num(p.dcr_synthetic_p05)],
          ["real holdout rows (reference)", num(p.dcr_holdout_median), num(p.dcr_holdout_p05)]]),
        h("p", {}, `Exact copies of real training rows: ${num(p.exact_copies)}.`),
        h("p", { class: "hint" }, p.protocol || ""))),
    h("section", { class: "panel" }, h("h2", {}, "Sample more rows"), sampleBox),
    h("section", { class: "panel" }, h("h2", {}, "Real vs synthetic, per column"), h("p", { class: "hint" }, "Share of rows per bin, real and synthetic drawn over each other."), hists));

  const rateLabels = ["failure", ...modeNames];
  bars(rateCanvas, rateLabels, [
    { label: "real", values: [fr.real?.overall, ...modeNames.map((m) => fr.real.modes[m])] },
    { label: "synthetic", values: [fr.synthetic?.overall, ...modeNames.map((m) => fr.synthetic?.modes?.[m])] }],
  { y: "rate", label: "failure and mode rates, real vs synthetic" });
  const cols = Object.entries(q.columns || {});
  bars(colCanvas, cols.map(([c]) => c), [{ label: "column shape score", values: cols.map(([, v]) => v) }], { horizontal: true, label: "quality per column" });
  for (const [c, hg] of Object.entries(r.histograms || {})) {
    const canvas = h("canvas", { class: "overlay", "data-column": c });
    hists.append(h("div", { class: "panel" }, h("h3", {}, c), h("div", { class: "chart-box small" }, canvas)));
    const labels = hg.kind === "numeric" ? hg.real.map((_, i) => num((hg.edges[i] + hg.edges[i + 1]) / 2, 2)) : hg.levels;
    bars(canvas, labels, [{ label: "real", values: share(hg.real) }, { label: "synthetic", values: share(hg.synthetic) }],
      { y: "share of rows", label: `real vs synthetic histogram of ${c}`, overlay: true });
  }
  await sampleForm(sampleBox, r);
}

async function sampleForm(box, r) {
  const form = await schemaForm("SampleRequest", { idPrefix: "sample-" });
  form.fields.rows.input.value = "1000";
  replace(box, jobForm(form, { path: `gan/models/${r.model_id}/samples`, id: "sample-form-el", submitId: "sample-submit",
    errorId: "sample-error", label: "Generate", context: "sample",
    intro: "Failure rate empty = the real rate; failure-mode counts as JSON, e.g. {\"HDF\": 50}." }));
}

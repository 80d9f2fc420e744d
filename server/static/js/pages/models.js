import { actionButton, navigate, showError, showInfo } from "../app.js";
import { api } from "../api.js";
import { bars, lines, xy } from "../charts.js";
import { emptyState, grid, h, num, pager, pct, replace, when } from "../dom.js";

const PAGE = 50;

export async function render(view, ctx) {
  if (ctx.args[0]) return renderModel(view, ctx.args[0], ctx);
  return renderList(view, ctx);
}

export function headline(m) {
  const x = m.metrics || {};
  if (m.kind === "failure") return `PR-AUC ${num(x.pr_auc)}, F1 ${num(x.f1)}`;
  if (m.kind === "rul") return `RMSE ${num(x.rmse)}, MAE ${num(x.mae)}`;
  if (m.kind === "tvae") return `quality ${num(x.quality?.overall ?? x.quality?.score)}`;
  return "";
}

async function renderList(view, { query, signal }) {
  const kind = query.get("kind") || "";
  const offset = Number(query.get("offset") || 0);
  const page = await api("models", { query: { kind, limit: PAGE, offset }, signal });
  const go = (k, o) => navigate(`#/models?${new URLSearchParams({ ...(k ? { kind: k } : {}), ...(o ? { offset: o } : {}) })}`);
  replace(view, h("h1", {}, "Models"),
    h("div", { class: "row panel" }, h("label", { for: "filter-kind" }, "Kind"),
      h("select", { id: "filter-kind", onchange: (e) => go(e.target.value, 0) },
        ["", "failure", "rul", "tvae"].map((k) => h("option", { value: k, selected: k === kind }, k || "any kind")))),
    page.total === 0
      ? emptyState("No models yet", "Train a failure, RUL or TVAE model from a dataset; it is registered here with its evaluation.",
        h("a", { class: "button", href: "#/train" }, "Train a model"))
      : h("section", { class: "panel" },
        grid(["name", "version", "kind", "aliases", "out-of-fold result", "trained on", "created"], page.items.map((m) => [
          h("a", { href: `#/models/${m.id}` }, m.name), `v${m.version}`, m.kind, m.aliases.join(", ") || "—", headline(m),
          m.dataset_id ? h("a", { href: `#/datasets/${m.dataset_id}` }, m.dataset_id.slice(0, 8)) : "—", when(m.created_at)])),
        pager(page, (o) => go(kind, o))));
}

function kpi(value, label) { return h("div", { class: "kpi" }, h("b", {}, value), h("span", {}, label)); }

async function renderModel(view, ref, { signal }) {
  const m = await api(`models/${encodeURIComponent(ref)}`, { signal });
  const versions = await api("models", { query: { name: m.name, limit: 50 }, signal });
  const aliasInput = h("input", { type: "text", id: "alias-name", value: "production", size: "12", pattern: "[a-z][a-z0-9_-]{0,63}", "aria-label": "alias" });
  const body = h("div", { id: "model-body" });
  replace(view,
    h("div", { class: "row" }, h("h1", {}, `${m.name} v${m.version}`), h("span", { class: "badge" }, m.kind),
      m.aliases.map((a) => h("span", { class: "badge ok" }, a))),
    h("p", { class: "hint" }, `Trained ${when(m.created_at)} on `, m.dataset_id ? h("a", { href: `#/datasets/${m.dataset_id}` }, `dataset ${m.dataset_id.slice(0, 8)}`) : "—",
      ` · ${m.params.algorithm || ""} · artifact sha256 ${m.sha256.slice(0, 12)}… · `, m.job_id ? h("a", { href: `#/jobs/${m.job_id}` }, "training job") : ""),
    h("section", { class: "panel" }, h("h2", {}, "Versions and aliases"),
      grid(["version", "aliases", "result", "created"], versions.items.map((v) => [
        v.id === m.id ? h("b", {}, `v${v.version} (this)`) : h("a", { href: `#/models/${v.id}` }, `v${v.version}`),
        v.aliases.join(", ") || "—", headline(v), when(v.created_at)])),
      h("div", { class: "row" }, h("label", { for: "alias-name" }, "Point alias"), aliasInput, h("span", {}, "at this version"),
        actionButton("Set alias", "operator", async () => {
          try {
            await api(`models/${m.id}/aliases`, { method: "POST", body: { alias: aliasInput.value.trim() } });
            const alias = aliasInput.value.trim();
            navigate(`#/models/${m.id}`); // re-render (this clears the banner), then say what happened
            showInfo(`'${m.name}@${alias}' now points at v${m.version}.`);
          } catch (err) { showError(err, "set alias"); }
        }, { id: "set-alias" })),
      m.kind !== "tvae" ? h("p", {}, h("a", { class: "button secondary", href: `#/predict?model=${m.id}` }, "Score readings with this model")) :
        h("p", {}, h("a", { class: "button secondary", href: `#/synthetic/${m.id}` }, "Open the synthetic-data report"))),
    body);
  if (m.kind === "failure") failureBody(body, m);
  else if (m.kind === "rul") rulBody(body, m);
  else replace(body, h("p", {}, "A generator: its report is on the ", h("a", { href: `#/synthetic/${m.id}` }, "Synthetic data"), " page."));
}

function failureBody(body, m) {
  const x = m.metrics;
  const c = x.curves || {};
  const cm = x.confusion_matrix || {};
  const canvases = { pr: h("canvas", { id: "pr-chart" }), roc: h("canvas", { id: "roc-chart" }), cal: h("canvas", { id: "calibration-chart" }),
    imp: h("canvas", { id: "importance-chart" }) };
  const fi = x.feature_importance;
  replace(body,
    h("div", { class: "kpis" }, kpi(num(x.pr_auc), "PR-AUC"), kpi(num(x.roc_auc), "ROC-AUC"), kpi(num(x.f1), "F1"),
      kpi(num(x.precision), "precision"), kpi(num(x.recall), "recall"), kpi(num(x.brier), "Brier score"),
      kpi(num(x.threshold, 4), "alarm threshold"), kpi(num(x.expected_cost), "expected cost (out-of-fold)")),
    h("p", { class: "hint", id: "protocol" }, x.protocol || ""),
    h("section", { class: "panel", id: "threshold" }, h("h2", {}, "Cost-based threshold"),
      h("p", {}, `An alarm is raised when the failure score is at least ${num(x.threshold, 4)}. That threshold minimises `,
        h("b", {}, `${num(m.params.cost_false_alarm)} × false alarms + ${num(m.params.cost_missed_failure)} × missed failures`),
        ` on out-of-fold predictions over ${num(x.rows)} rows (${num(x.positives)} failures): expected cost ${num(x.expected_cost)}. Change the costs and retrain to move it.`),
      x.score ? h("p", { class: "hint" }, `Score: ${x.score}.`) : null),
    h("div", { class: "grid2" },
      h("section", { class: "panel" }, h("h2", {}, "Precision–recall curve"), h("div", { class: "chart-box" }, canvases.pr)),
      h("section", { class: "panel" }, h("h2", {}, "ROC curve"), h("div", { class: "chart-box" }, canvases.roc)),
      h("section", { class: "panel" }, h("h2", {}, "Calibration"), h("p", { class: "hint" }, "Observed failure rate per predicted-probability decile; the dashed line is perfect calibration."),
        h("div", { class: "chart-box" }, canvases.cal)),
      h("section", { class: "panel" }, h("h2", {}, `Confusion matrix at threshold ${num(x.threshold, 4)}`),
        h("table", { id: "confusion-matrix" },
          h("thead", {}, h("tr", {}, h("th", {}), h("th", { scope: "col" }, "predicted: no failure"), h("th", { scope: "col" }, "predicted: failure"))),
          h("tbody", {},
            h("tr", {}, h("th", { scope: "row" }, "actual: no failure"), h("td", { class: "num" }, num(cm.tn)), h("td", { class: "num" }, `${num(cm.fp)} false alarms`)),
            h("tr", {}, h("th", { scope: "row" }, "actual: failure"), h("td", { class: "num" }, `${num(cm.fn)} missed`), h("td", { class: "num" }, num(cm.tp))))))),
    x.per_mode ? h("section", { class: "panel" }, h("h2", {}, "Per failure mode"),
      grid(["mode", "failures", "caught at the threshold", "mode model PR-AUC"], Object.entries(x.per_mode).map(([k, v]) => [
        k, num(v.support), pct(v.detected_recall), num(v.mode_pr_auc)]), { caption: "per-mode metrics" })) : null,
    h("section", { class: "panel" }, h("h2", {}, "Feature importance"),
      fi ? h("div", {}, h("p", { class: "hint" }, fi.method), h("div", { class: "chart-box tall" }, canvases.imp))
        : h("p", { class: "muted" }, "Not recorded for this model (trained before the platform stored importance): retrain to see it.")));
  if (c.pr) lines(canvases.pr, [{ label: "PR", points: xy(c.pr.recall, c.pr.precision) }], { x: "recall", y: "precision", xMin: 0, xMax: 1, yMin: 0, yMax: 1, label: "precision-recall curve" });
  if (c.roc) {
    lines(canvases.roc, [{ label: "ROC", points: xy(c.roc.fpr, c.roc.tpr) }, { label: "chance", points: [{ x: 0, y: 0 }, { x: 1, y: 1 }], dashed: true, color: "#8a949f" }],
      { x: "false positive rate", y: "true positive rate", xMin: 0, xMax: 1, yMin: 0, yMax: 1, label: "ROC curve" });
  }
  if (c.calibration) {
    lines(canvases.cal, [{ label: "model", points: xy(c.calibration.predicted, c.calibration.observed) },
      { label: "perfect", points: [{ x: 0, y: 0 }, { x: 1, y: 1 }], dashed: true, color: "#8a949f" }],
    { x: "predicted probability", y: "observed failure rate", xMin: 0, xMax: 1, yMin: 0, yMax: 1, label: "calibration curve" });
  }
  if (fi) {
    const top = fi.by_column.slice(0, 15);
    bars(canvases.imp, top.map((f) => f.feature), [{ label: "share of importance", values: top.map((f) => f.importance) }],
      { horizontal: true, x: "share", label: "feature importance by column" });
  }
}

function rulBody(body, m) {
  const x = m.metrics;
  const c = x.curves || {};
  const pvt = h("canvas", { id: "pred-vs-true-chart" });
  const ebr = h("canvas", { id: "error-by-rul-chart" });
  replace(body,
    h("div", { class: "kpis" }, kpi(num(x.rmse), "RMSE"), kpi(num(x.mae), "MAE"), kpi(num(x.bias), "bias (+ = late)"),
      kpi(num(x.nasa_score), "NASA score (mean)"), kpi(num(x.units), "units"), kpi(num(x.rows), "rows")),
    h("p", { class: "hint", id: "protocol" }, x.protocol || ""),
    h("div", { class: "grid2" },
      h("section", { class: "panel" }, h("h2", {}, "Predicted vs true remaining life"), h("div", { class: "chart-box tall" }, pvt)),
      h("section", { class: "panel" }, h("h2", {}, "Error by remaining life"), h("p", { class: "hint" }, "RMSE and bias per band of true RUL: near the end of life is what matters most."),
        h("div", { class: "chart-box tall" }, ebr))));
  if (c.predicted_vs_true) {
    const t = c.predicted_vs_true.true;
    const hi = Math.max(...t, ...c.predicted_vs_true.predicted);
    lines(pvt, [{ label: "out-of-fold predictions", points: xy(t, c.predicted_vs_true.predicted), scatter: true },
      { label: "perfect", points: [{ x: 0, y: 0 }, { x: hi, y: hi }], dashed: true, color: "#8a949f" }],
    { x: "true RUL", y: "predicted RUL", label: "predicted vs true RUL" });
  }
  if (c.error_by_rul) {
    bars(ebr, c.error_by_rul.map((b) => `${b.rul_from}–${b.rul_to}`), [
      { label: "RMSE", values: c.error_by_rul.map((b) => b.rmse) }, { label: "bias", values: c.error_by_rul.map((b) => b.bias) }],
    { x: "true RUL band", y: "cycles", label: "error by remaining life" });
  }
}

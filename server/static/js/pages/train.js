import { actionButton, importSample } from "../app.js";
import { api } from "../api.js";
import { emptyState, h, num, replace } from "../dom.js";
import { jobForm, schemaForm } from "../schemaform.js";

const KINDS = {
  failure: { label: "Failure model", path: "ml/models", component: "TrainRequest", fixed: { task: "failure" },
    only: ["dataset_id", "algorithm", "cv_folds", "cost_false_alarm", "cost_missed_failure", "seed", "name"],
    text: "Will it fail, and how? Cross-validated with every step fitted inside the folds; the alarm threshold minimises the expected cost you set." },
  rul: { label: "RUL model", path: "ml/models", component: "TrainRequest", fixed: { task: "rul" },
    only: ["dataset_id", "algorithm", "cv_folds", "rul_cap", "windows", "settings", "seed", "name"],
    text: "Remaining useful life from run-to-failure histories: the dataset needs a unit and a time column." },
  tvae: { label: "TVAE generator", path: "gan/models", component: "TvaeRequest", fixed: {},
    only: null, text: "Synthetic sensor data that keeps the rare failures; the report compares it with a real holdout." },
};

function datasetSelect(items, selected) {
  return h("select", { required: true },
    items.map((d) => h("option", { value: d.id, selected: d.id === selected },
      `${d.name} — ${num(d.rows)} rows${d.schema.target ? `, label '${d.schema.target}'` : ", no failure label"}${d.schema.unit ? `, unit '${d.schema.unit}'` : ""}`)));
}

export async function render(view, { query, signal }) {
  const datasets = await api("datasets", { query: { limit: 200 }, signal });
  if (!datasets.total) {
    replace(view, h("h1", {}, "Train"), emptyState("No datasets yet", "A model learns from a dataset: upload one first, or use the bundled AI4I sample.",
      actionButton("Upload the bundled AI4I sample", "operator", (e) => importSample(e.currentTarget), { id: "import-sample" }),
      h("a", { class: "button secondary", href: "#/datasets" }, "Go to Datasets")));
    return;
  }
  const wanted = query.get("dataset");
  if (wanted && !datasets.items.some((d) => d.id === wanted)) {
    datasets.items.unshift(await api(`datasets/${encodeURIComponent(wanted)}`, { signal })); // older than the list; 404 says so
  }
  const kind = KINDS[query.get("kind")] ? query.get("kind") : "failure";
  const spec = KINDS[kind];
  const form = await schemaForm(spec.component, {
    only: spec.only ? spec.only : undefined, fixed: spec.fixed, idPrefix: `${kind}-`,
    inputs: { dataset_id: datasetSelect(datasets.items, query.get("dataset")) },
  });
  const el = jobForm(form, { path: spec.path, id: `train-${kind}`, submitId: "train-submit", errorId: "train-error",
    label: `Start ${spec.label.toLowerCase()} training`, context: "start training" });
  replace(view, h("h1", {}, "Train"),
    h("nav", { class: "tabs", "aria-label": "what to train" }, Object.entries(KINDS).map(([k, sp]) => h("a", {
      class: "tab", id: `tab-${k}`, "aria-current": k === kind ? "page" : undefined,
      href: `#/train?kind=${k}${wanted ? `&dataset=${encodeURIComponent(wanted)}` : ""}` }, sp.label))),
    h("section", { class: "panel", "aria-labelledby": `tab-${kind}` }, h("p", { class: "hint" }, spec.text), el));
}

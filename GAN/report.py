"""What a TVAE generator is worth: quality, failure rates, train-on-synthetic-test-on-real, privacy.

Computed against real rows the generator never saw (a stratified holdout taken before training),
so none of the figures can be inflated by memorisation:

- `quality`: SDMetrics' quality report (column shapes, column pair trends, per-column scores) and
  diagnostic (data validity, structure) on a synthetic sample the size of the training data;
- `failure_rate`: real vs synthetic, overall and per mode;
- `tstr`: the platform's own failure model trained on synthetic rows vs on the real training rows,
  both evaluated on the real holdout at their own cost-chosen thresholds (F1, PR-AUC, ratio);
- `privacy`: distance from each synthetic row to its closest real training row, against the same
  distance for the real holdout (what "new data from the same machines" looks like), and the
  number of synthetic rows that copy a real row exactly;
- `histograms`: real vs synthetic binned counts per column, for plotting.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from ml.schema import DatasetSchema

HIST_BINS = 20


def _sdmetrics(real: pd.DataFrame, synth: pd.DataFrame, metadata: dict[str, Any]) -> dict[str, Any]:
    from sdmetrics.reports import DiagnosticReport, QualityReport

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = QualityReport()
        q.generate({"table": real}, {"table": synth}, metadata, verbose=False)
        d = DiagnosticReport()
        d.generate({"table": real}, {"table": synth}, metadata, verbose=False)
    props = {r["Property"]: float(r["Score"]) for _, r in q.get_properties().iterrows()}
    shapes = q.get_details("Column Shapes")
    per_column = {str(r["Column"]): float(r["Score"]) for _, r in shapes.iterrows()}
    diag = {r["Property"]: float(r["Score"]) for _, r in d.get_properties().iterrows()
            if pd.notna(r["Score"])}  # properties that don't apply (no constraints) score NaN
    return {"overall": float(q.get_score()), "column_shapes": props.get("Column Shapes"),
            "column_pair_trends": props.get("Column Pair Trends"), "columns": per_column,
            "diagnostic": {"overall": float(d.get_score()), **{k.lower().replace(" ", "_"): v for k, v in diag.items()}}}


def _rates(df: pd.DataFrame, schema: DatasetSchema) -> dict[str, Any]:
    def rate(c: str) -> float:
        return float(pd.to_numeric(df[c], errors="coerce").fillna(0).mean())

    return {"overall": rate(schema.target) if schema.target in df else None,
            "modes": {m: rate(m) for m in schema.failure_modes if m in df}}


def _tstr(synth: pd.DataFrame, real_train: pd.DataFrame, holdout: pd.DataFrame, schema: DatasetSchema,
          seed: int) -> dict[str, Any] | None:
    from sklearn.metrics import average_precision_score, f1_score

    from ml.training import train_failure_model

    if not schema.target:
        return None
    y = pd.to_numeric(holdout[schema.target], errors="coerce").fillna(0).astype(int).to_numpy()
    out: dict[str, Any] = {}
    for name, data in (("real", real_train), ("synthetic", synth)):
        positives = int(pd.to_numeric(data[schema.target], errors="coerce").fillna(0).sum())
        if positives < 3:
            out[f"f1_{name}"], out[f"pr_auc_{name}"], out[f"f1_at_f1_threshold_{name}"] = 0.0, None, 0.0
            continue
        oof: dict[str, np.ndarray] = {}
        model = train_failure_model(data, schema, cv_folds=3, seed=seed, oof_out=oof)
        p = model.predict_proba(holdout)
        out[f"f1_{name}"] = float(f1_score(y, p >= model.threshold, zero_division=0))
        out[f"pr_auc_{name}"] = float(average_precision_score(y, p))
        out[f"f1_at_f1_threshold_{name}"] = float(f1_score(y, p >= _f1_threshold(oof["y"], oof["p"]), zero_division=0))
    out["ratio"] = out["f1_synthetic"] / out["f1_real"] if out["f1_real"] else None
    out["pr_auc_ratio"] = (out["pr_auc_synthetic"] / out["pr_auc_real"]
                           if out["pr_auc_real"] and out["pr_auc_synthetic"] is not None else None)
    out["ratio_at_f1_threshold"] = (out["f1_at_f1_threshold_synthetic"] / out["f1_at_f1_threshold_real"]
                                    if out["f1_at_f1_threshold_real"] else None)
    out["protocol"] = ("platform failure model (LightGBM, 3-fold CV) trained on synthetic rows and on the real "
                       "training rows; both scored on the real holdout the generator never saw. `f1_*` and `ratio` "
                       "use each model's cost-based threshold (1:10, what the platform deploys); "
                       "`f1_at_f1_threshold_*` use the threshold that maximises F1 on that model's own "
                       "out-of-fold predictions (chosen without the holdout)")
    return out


def _f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(y, p)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1[:-1]))]) if len(thresholds) else 0.5


def _encode(frames: list[pd.DataFrame], columns: list[str]) -> list[np.ndarray]:
    """Numeric columns scaled by the first frame's spread; categoricals one-hot (distance 1 per mismatch)."""
    ref = frames[0]
    parts: list[list[np.ndarray]] = [[] for _ in frames]
    for c in columns:
        if pd.api.types.is_numeric_dtype(ref[c]) and ref[c].nunique() > 2:
            mu, sd = float(ref[c].mean()), float(ref[c].std()) or 1.0
            for i, f in enumerate(frames):
                parts[i].append(((pd.to_numeric(f[c], errors="coerce").fillna(mu) - mu) / sd).to_numpy()[:, None])
        else:
            levels = sorted(map(str, ref[c].dropna().unique()))
            for i, f in enumerate(frames):
                v = f[c].astype(str).to_numpy()
                parts[i].append(np.column_stack([(v == lvl) for lvl in levels]).astype(float) / np.sqrt(2))
    return [np.hstack(p) for p in parts]


def _privacy(synth: pd.DataFrame, real_train: pd.DataFrame, holdout: pd.DataFrame, columns: list[str],
             seed: int, max_rows: int = 2000) -> dict[str, Any]:
    from sklearn.neighbors import NearestNeighbors

    s = synth.sample(n=min(len(synth), max_rows), random_state=seed)
    h = holdout.sample(n=min(len(holdout), max_rows), random_state=seed)
    train_x, s_x, h_x = _encode([real_train[columns], s[columns], h[columns]], columns)
    nn = NearestNeighbors(n_neighbors=1).fit(train_x)
    ds, dh = nn.kneighbors(s_x)[0][:, 0], nn.kneighbors(h_x)[0][:, 0]
    keys = set(map(tuple, real_train[columns].astype(str).to_numpy()))
    copies = int(sum(tuple(r) in keys for r in synth[columns].astype(str).to_numpy()))
    return {"dcr_synthetic_median": float(np.median(ds)), "dcr_synthetic_p05": float(np.quantile(ds, 0.05)),
            "dcr_holdout_median": float(np.median(dh)), "dcr_holdout_p05": float(np.quantile(dh, 0.05)),
            "exact_copies": copies, "synthetic_rows": int(len(synth)),
            "protocol": "distance to the closest real training row (numeric columns in standard deviations, a "
                        "categorical mismatch counts 1), synthetic vs real holdout rows; exact copies over all "
                        "synthetic rows"}


def histograms(real: pd.DataFrame, synth: pd.DataFrame, columns: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c in columns:
        r = real[c].dropna()
        if pd.api.types.is_numeric_dtype(r) and r.nunique() > 10:
            lo, hi = float(r.min()), float(r.max())
            edges = np.linspace(lo, hi if hi > lo else lo + 1, HIST_BINS + 1)
            s = pd.to_numeric(synth[c], errors="coerce").dropna().clip(lo, hi)
            out[c] = {"kind": "numeric", "edges": [float(e) for e in edges],
                      "real": [int(v) for v in np.histogram(r, edges)[0]],
                      "synthetic": [int(v) for v in np.histogram(s, edges)[0]]}
        else:
            levels = list(r.astype(str).value_counts().index[:20])
            rs, ss = r.astype(str).value_counts(), synth[c].dropna().astype(str).value_counts()
            out[c] = {"kind": "categorical", "levels": levels, "real": [int(rs.get(v, 0)) for v in levels],
                      "synthetic": [int(ss.get(v, 0)) for v in levels]}
    return out


def evaluate(generator: Any, real_train: pd.DataFrame, holdout: pd.DataFrame, schema: DatasetSchema, *,
             seed: int = 0, should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """The report for a trained generator (see the module docstring); `should_stop` is asked before
    every generated batch of its synthetic sample (GanStopped)."""
    from GAN.tvae import synthetic_schema

    columns = generator.columns
    schema = synthetic_schema(schema, columns)
    real_train, holdout = real_train[columns], holdout[columns]
    synth = generator.sample(len(real_train), seed=seed, should_stop=should_stop)
    metadata = generator.synthesizer.get_metadata().to_dict()
    return {
        "quality": _sdmetrics(real_train.reset_index(drop=True), synth[columns], metadata),
        "failure_rate": {"real": _rates(real_train, schema), "synthetic": _rates(synth, schema)},
        "tstr": _tstr(synth, real_train, holdout, schema, seed),
        "privacy": _privacy(synth, real_train, holdout, columns, seed),
        "histograms": histograms(real_train, synth, columns),
        "evaluated_on": {"training_rows": int(len(real_train)), "holdout_rows": int(len(holdout)),
                         "synthetic_rows": int(len(synth))},
    }

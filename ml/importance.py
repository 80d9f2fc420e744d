"""Global feature importance of a refitted failure model, for plotting.

Each algorithm's native measure: LightGBM's total split gain, the random forest's mean decrease in
impurity (`feature_importances_`), and the logistic regression's |coefficient| on the standardised
scale (so columns measured in different units compare). Shares sum to 1. Models learn from derived
features (interactions, one-hot levels, declared expressions); each derived feature's share is split
equally over the distinct original columns it is computed from (`FeatureBuilder.sources_`, the same
rule `llm/facts.py` uses for attributions), so the ranking names columns a technician can read.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ml.features import FeatureBuilder

TOP_FEATURES = 15

METHODS = {
    "lightgbm": "LightGBM total split gain per feature",
    "random_forest": "random forest mean decrease in impurity (feature_importances_)",
    "logistic_regression": "logistic regression |coefficient| on standardised features",
}
SCOPE = "of the failure model (the per-mode models, which can also raise the score, have their own)"


def _raw_importance(algorithm: str, estimator: Any) -> np.ndarray:
    if algorithm == "lightgbm":
        return np.asarray(estimator.booster_.feature_importance(importance_type="gain"), dtype=float)
    if algorithm == "random_forest":
        return np.asarray(estimator.feature_importances_, dtype=float)
    if algorithm == "logistic_regression":
        return np.abs(np.asarray(estimator.steps[-1][1].coef_[0], dtype=float))  # after the StandardScaler
    raise ValueError(f"no feature importance for algorithm {algorithm!r}")


def feature_importance(algorithm: str, estimator: Any, builder: FeatureBuilder) -> dict[str, Any]:
    """`{"method", "by_column": [{"feature", "importance"}…], "top_features": […]}`: shares of the
    model's total importance, by original column (every column the model reads, sorted
    descending) and for the `TOP_FEATURES` most important model features (user-readable names)."""
    raw = _raw_importance(algorithm, estimator)
    if raw.shape != (len(builder.feature_names_),):
        raise ValueError(f"the model has {raw.size} features but the feature builder {len(builder.feature_names_)}")
    raw = np.where(np.isfinite(raw), np.abs(raw), 0.0)
    total = raw.sum()
    shares = raw / total if total > 0 else np.zeros_like(raw)  # all zero (e.g. no split): no share
    by_column: dict[str, float] = {}
    for share, cols in zip(shares, builder.sources_, strict=True):
        distinct = list(dict.fromkeys(cols))
        for c in distinct:
            by_column[c] = by_column.get(c, 0.0) + float(share) / len(distinct)
    ranked = [[c, round(v, 6)] for c, v in sorted(by_column.items(), key=lambda kv: -kv[1])]
    if total > 0 and ranked:  # rounding residue goes to the largest share, so the shares still sum to 1
        ranked[0][1] = round(ranked[0][1] + 1.0 - sum(v for _, v in ranked), 6)
    order = sorted(range(len(shares)), key=lambda i: -shares[i])[:TOP_FEATURES]
    return {
        "method": (f"{METHODS[algorithm]} {SCOPE}, as a share of the total; each derived feature's share is "
                   "split equally over the original columns it is computed from"),
        "by_column": [{"feature": c, "importance": v} for c, v in ranked],
        "top_features": [{"feature": builder.feature_names_[i], "importance": round(float(shares[i]), 6)}
                         for i in order],
    }

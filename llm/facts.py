"""The facts an explanation may state, computed by the platform from the model and the reading.

`build_facts(model, row, schema)` returns everything an explanation is allowed to say: the failure
score against the model's threshold, each mode's probability, the likely mode, an urgency level,
and every reading with its unit, normal range and attribution. Attributions are exact for the
model that produced the score:

* LightGBM: TreeSHAP as LightGBM computes it (`pred_contrib=True`, the tree-path-dependent
  algorithm of `shap.TreeExplainer`; a unit test checks they agree), in log-odds;
* random forest: `shap.TreeExplainer`, in probability;
* logistic regression: coefficient × standardised value (exact for a linear model: the training
  mean of a standardised feature is 0), in log-odds.

Models learn from derived features (declared expressions, one-hot levels, pairwise interactions);
each derived feature's contribution is split equally over the original columns it is computed from
(`FeatureBuilder.sources_`), so contributions are credited to the columns a technician can read and
still add up to the model's output minus its base value.

When the failure score came from the per-mode models (`combine_modes`: the probability that any
mode occurs beat the failure model's own), the attributions are those of the most likely mode's
model, since that is the model whose output decided the score.
"""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ml.schema import DatasetSchema
from ml.training import FailureModel, positive_proba

URGENCY = ("low", "medium", "high", "critical")


@dataclass
class Reading:
    feature: str
    value: Any
    unit: str | None
    normal_range: tuple[float, float] | None
    status: str  # below | within | above | unknown (no range or not numeric)
    contribution: float  # towards failure, in the explained model's output space

    @property
    def out_of_range(self) -> bool:
        return self.status in ("below", "above")


@dataclass
class Facts:
    probability: float
    threshold: float
    predicted_failure: bool
    urgency: str
    likely_failure_mode: str | None
    mode_probabilities: dict[str, float]
    explained_model: str  # "failure" or the mode whose model decided the score
    contribution_space: str  # log-odds | probability
    base_value: float
    readings: list[Reading] = field(default_factory=list)  # by |contribution|, largest first
    top_k: int = 5

    @property
    def top(self) -> list[Reading]:
        """The readings that mattered: the `top_k` largest |contributions| (never a zero one)."""
        return [r for r in self.readings[: self.top_k] if r.contribution != 0.0]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["top_features"] = [r.feature for r in self.top]
        return out


def urgency_for(p: float, threshold: float, out_of_range: int) -> str:
    """low below half the threshold; medium up to the threshold (or when a reading that raises the
    score is outside its normal range); high from the threshold; critical from halfway between the
    threshold and 1."""
    if p >= threshold + (1.0 - threshold) / 2:
        level = "critical"
    elif p >= threshold:
        level = "high"
    elif p >= threshold / 2:
        level = "medium"
    else:
        level = "low"
    if out_of_range and level == "low":
        level = "medium"
    return level


def _status(value: Any, rng: tuple[float, float] | None) -> str:
    if rng is None or not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return "unknown"
    if value < rng[0]:
        return "below"
    if value > rng[1]:
        return "above"
    return "within"


def _raw_contributions(est: Any, algorithm: str, X: pd.DataFrame) -> tuple[np.ndarray, float, str]:
    """Per-feature contributions for one row, the base value, and their space."""
    if algorithm == "lightgbm":
        contrib = est.booster_.predict(X.to_numpy(dtype="float64"), pred_contrib=True, num_threads=1)[0]
        return np.asarray(contrib[:-1], dtype=float), float(contrib[-1]), "log-odds"
    if algorithm == "random_forest":
        explainer = _tree_explainer(est)
        values = np.asarray(explainer.shap_values(X.to_numpy(dtype="float64"), check_additivity=False))
        # shap ≥ 0.45 returns (rows, features, classes) for classifiers
        row = values[0, :, 1] if values.ndim == 3 else values[1][0]
        base = np.atleast_1d(explainer.expected_value)
        return np.asarray(row, dtype=float), float(base[-1]), "probability"
    if algorithm == "logistic_regression":
        imputer, scaler, lr = (est.steps[i][1] for i in range(3))
        z = scaler.transform(imputer.transform(X))
        return np.asarray(lr.coef_[0] * z[0], dtype=float), float(lr.intercept_[0]), "log-odds"
    raise ValueError(f"no attribution method for algorithm {algorithm!r}")


_EXPLAINERS: dict[int, tuple[Any, Any]] = {}
_EXPLAINERS_LOCK = threading.Lock()


def _tree_explainer(est: Any) -> Any:
    """One `shap.TreeExplainer` per estimator (building it walks every tree), for the last few
    estimators only, safe under a threads pool."""
    import shap

    with _EXPLAINERS_LOCK:
        hit = _EXPLAINERS.get(id(est))
        if hit is not None and hit[0] is est:
            return hit[1]
        explainer = shap.TreeExplainer(est)
        if len(_EXPLAINERS) >= 4:
            _EXPLAINERS.pop(next(iter(_EXPLAINERS)))
        _EXPLAINERS[id(est)] = (est, explainer)
        return explainer


def credit_to_columns(contributions: np.ndarray, sources: list[list[str]]) -> dict[str, float]:
    """Each model feature's contribution split equally over the distinct original columns it uses."""
    out: dict[str, float] = {}
    for value, cols in zip(contributions, sources, strict=True):
        distinct = list(dict.fromkeys(cols))
        for c in distinct:
            out[c] = out.get(c, 0.0) + float(value) / len(distinct)
    return out


def _clean(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def build_facts(model: FailureModel, row: dict[str, Any], schema: DatasetSchema | dict[str, Any],
                top_k: int = 5) -> Facts:
    if isinstance(schema, dict):
        schema = DatasetSchema.model_validate(schema)
    frame = pd.DataFrame([row])
    X = model._matrix(frame)
    Xm = X.to_numpy(dtype="float64") if model.algorithm == "lightgbm" else X
    p_failure = float(positive_proba(model.estimator, Xm)[0])
    modes = {m: float(positive_proba(est, Xm)[0]) for m, est in model.mode_estimators.items()}
    any_mode = 1.0 - float(np.prod([1.0 - p for p in modes.values()])) if modes else 0.0
    combined = bool(model.params.get("combine_modes")) and modes and any_mode > p_failure
    probability = any_mode if combined else p_failure
    top_mode = max(modes, key=modes.get) if modes else None
    # The model whose output decided the score: the most probable mode's when the any-mode
    # probability won, else the failure model's.
    explained = top_mode if combined and top_mode else "failure"
    likely = top_mode if top_mode is not None and modes[top_mode] >= 0.5 * probability else None
    est = model.mode_estimators[explained] if explained != "failure" else model.estimator
    contrib, base, space = _raw_contributions(est, model.algorithm, X)
    credited = credit_to_columns(contrib, model.builder.sources_)
    readings = []
    for col in dict.fromkeys([*model.builder.numeric_, *model.builder.categorical_, *credited]):
        if col not in row:
            continue
        meta = schema.columns.get(col)
        rng = tuple(meta.normal_range) if meta and meta.normal_range else None
        value = _clean(row[col])
        if col in model.builder.numeric_ and isinstance(value, str):  # "302.5" sent as text
            number = pd.to_numeric(value, errors="coerce")
            value = value if pd.isna(number) else _clean(float(number))
        readings.append(Reading(feature=col, value=value, unit=meta.unit if meta else None, normal_range=rng,
                                status=_status(value, rng), contribution=round(credited.get(col, 0.0), 6)))
    readings.sort(key=lambda r: -abs(r.contribution))
    threshold = float(model.threshold)
    # Only readings outside their range that also push the score up raise the urgency.
    urgency = urgency_for(probability, threshold, sum(r.out_of_range and r.contribution > 0 for r in readings))
    return Facts(probability=round(probability, 6), threshold=round(threshold, 6),
                 predicted_failure=probability >= threshold, urgency=urgency,
                 likely_failure_mode=likely if probability >= threshold / 2 else None,
                 mode_probabilities={m: round(p, 6) for m, p in modes.items()}, explained_model=explained,
                 contribution_space=space, base_value=round(base, 6), readings=readings, top_k=top_k)

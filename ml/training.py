"""Failure-prediction training: stratified (or unit-grouped) k-fold CV with every fitted step inside
the folds, a cost-based threshold from out-of-fold predictions, per-mode models, then a refit on
all rows. Usable from a notebook: `train_failure_model(df, schema)`; the job passes progress and
a stop check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from ml.evaluation import binary_metrics, cost_threshold, curve_points
from ml.features import FeatureBuilder
from ml.fitting import FitStopped, fit_cancellable
from ml.importance import feature_importance
from ml.schema import DatasetSchema, validate_schema

ALGORITHMS = ("lightgbm", "random_forest", "logistic_regression")
Progress = Callable[[float, str], None]


class TrainingStopped(FitStopped):
    pass


def make_estimator(algorithm: str, seed: int, positive_rate: float) -> Any:
    if algorithm == "lightgbm":
        from lightgbm import LGBMClassifier

        return LGBMClassifier(n_estimators=400, learning_rate=0.05, num_leaves=15, min_child_samples=10,
                              subsample=0.9, subsample_freq=1, colsample_bytree=0.8, reg_lambda=1.0,
                              scale_pos_weight=min(10.0, max(1.0, (1 - positive_rate) / max(positive_rate, 1e-6)) ** 0.5),
                              random_state=seed, n_jobs=2, verbose=-1, deterministic=True, force_col_wise=True)
    if algorithm == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_estimators=300, min_samples_leaf=2, class_weight="balanced_subsample",
                                      random_state=seed, n_jobs=2)
    if algorithm == "logistic_regression":
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        # keep_empty_features: an all-missing feature stays a (constant) column instead of being
        # dropped, so coefficients line up with the feature builder's names (importance, attributions).
        return make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(),
                             LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000))
    raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}; got {algorithm!r}")


def _fit_predict(algorithm: str, seed: int, X_tr: pd.DataFrame, y_tr: np.ndarray, X_va: pd.DataFrame,
                 stop: Callable[[], bool] | None = None) -> tuple[Any, np.ndarray]:
    est = make_estimator(algorithm, seed, float(y_tr.mean()))
    if algorithm == "random_forest":  # no NaN support in older sklearn trees; impute with train medians
        med = X_tr.median()
        X_tr, X_va = X_tr.fillna(med).fillna(0), X_va.fillna(med).fillna(0)
    fit_cancellable(est, X_tr, y_tr, stop)  # stops between boosting rounds / batches of trees
    return est, est.predict_proba(X_va)[:, 1]


def positive_proba(est: Any, X: pd.DataFrame | np.ndarray) -> np.ndarray:
    """P(class 1). LightGBM models are called through their booster on a float matrix, one thread
    for small inputs: the sklearn wrapper's per-call overhead and thread start-up dominate when
    scoring one reading online (measured: ~6 ms → <1 ms for six models)."""
    booster = getattr(est, "booster_", None)
    if booster is not None:
        matrix = X.to_numpy(dtype="float64") if isinstance(X, pd.DataFrame) else X
        return booster.predict(matrix, num_threads=1 if len(matrix) < 5000 else 0)
    return est.predict_proba(X)[:, 1]


def combine_with_modes(p_failure: np.ndarray, p_modes: list[np.ndarray]) -> np.ndarray:
    """The failure score when per-mode labels exist: the larger of the failure model's probability
    and the probability that at least one mode occurs (modes taken as independent). Each mode has
    its own physics (AI4I: heat dissipation, power, overstrain), which its own model learns more
    sharply than one model of their union; on AI4I this raised out-of-fold PR-AUC and lowered the
    expected cost at the chosen threshold (docs/decisions.md §15)."""
    any_mode = 1.0 - np.prod([1.0 - pm for pm in p_modes], axis=0)
    return np.maximum(p_failure, any_mode)


@dataclass
class FailureModel:
    """The refitted model, its feature builder and everything measured before the refit."""

    algorithm: str
    builder: FeatureBuilder
    estimator: Any
    mode_estimators: dict[str, Any]
    threshold: float
    metrics: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)

    def _matrix(self, df: pd.DataFrame) -> pd.DataFrame:
        X = self.builder.transform(df)
        if self.algorithm == "random_forest":
            X = X.fillna(self.params.get("_medians", {})).fillna(0)
        return X

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        return self.predict_with_modes(df)[0]

    def predict_with_modes(self, df: pd.DataFrame) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Failure probability per row (the score the threshold applies to), and each mode's probability."""
        X = self._matrix(df)
        if self.algorithm == "lightgbm":
            X = X.to_numpy(dtype="float64")  # converted once for all estimators
        p = positive_proba(self.estimator, X)
        modes = {m: positive_proba(est, X) for m, est in self.mode_estimators.items()}
        if self.params.get("combine_modes") and modes:
            p = combine_with_modes(p, list(modes.values()))
        return p, modes


def train_failure_model(df: pd.DataFrame, schema: DatasetSchema, *, algorithm: str = "lightgbm", cv_folds: int = 5,
                        cost_false_alarm: float = 1.0, cost_missed_failure: float = 10.0, seed: int = 0,
                        interactions: bool = True, progress: Progress | None = None,
                        should_stop: Callable[[], bool] | None = None,
                        oof_out: dict[str, np.ndarray] | None = None) -> FailureModel:
    """Train with k-fold CV, then refit on all rows. `oof_out`, if given, receives the labels
    (`y`) and out-of-fold probabilities (`p`) the metrics were computed from."""
    validate_schema(df, schema)
    if schema.target is None:
        raise ValueError("the schema has no `target` column: set it to the binary failure label")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}; got {algorithm!r}")
    say = progress or (lambda f, m: None)
    stop = should_stop or (lambda: False)
    df = df.reset_index(drop=True)
    y = df[schema.target].fillna(0).astype(int).to_numpy()
    if y.sum() < cv_folds:
        raise ValueError(f"only {int(y.sum())} failures: need at least {cv_folds} for {cv_folds}-fold CV")
    modes = {m: df[m].fillna(0).astype(int).to_numpy() for m in schema.failure_modes}
    if schema.unit:
        splitter = StratifiedGroupKFold(n_splits=cv_folds, shuffle=True, random_state=seed)
        splits = list(splitter.split(df, y, groups=df[schema.unit]))
        protocol = f"{cv_folds}-fold stratified group k-fold by '{schema.unit}'"
    else:
        splits = list(StratifiedKFold(n_splits=cv_folds, shuffle=True, random_state=seed).split(df, y))
        protocol = f"{cv_folds}-fold stratified k-fold"
    oof = np.zeros(len(df))
    oof_modes = {m: np.zeros(len(df)) for m in modes}
    steps = cv_folds * (1 + len(modes)) + 1 + len(modes)
    done = 0
    for k, (tr, va) in enumerate(splits):
        if stop():
            raise TrainingStopped()
        builder = FeatureBuilder(schema, interactions=interactions).fit(df.iloc[tr])  # fitted inside the fold
        X_tr, X_va = builder.transform(df.iloc[tr]), builder.transform(df.iloc[va])
        _, oof[va] = _fit_predict(algorithm, seed, X_tr, y[tr], X_va, stop)
        done += 1
        say(done / steps, f"fold {k + 1}/{cv_folds}: failure model")
        for m, ym in modes.items():
            if stop():
                raise TrainingStopped()
            if ym[tr].sum() >= 2:
                _, oof_modes[m][va] = _fit_predict(algorithm, seed, X_tr, ym[tr], X_va, stop)
            done += 1
            say(done / steps, f"fold {k + 1}/{cv_folds}: mode {m}")
    failure_only = oof
    if modes:  # the deployed score: see combine_with_modes
        oof = combine_with_modes(oof, list(oof_modes.values()))
    if oof_out is not None:
        oof_out.update(y=y.copy(), p=oof.copy())
    threshold, cost = cost_threshold(y, oof, cost_false_alarm, cost_missed_failure)
    metrics = binary_metrics(y, oof, threshold)
    if modes:
        metrics["score"] = ("max(failure model, 1 − Π(1 − per-mode model)): a failure is flagged when the failure "
                            "model or any failure mode's own model says so")
        t_only, _ = cost_threshold(y, failure_only, cost_false_alarm, cost_missed_failure)
        only = binary_metrics(y, failure_only, t_only)
        metrics["failure_model_only"] = {k: only[k] for k in ("f1", "precision", "recall", "pr_auc", "threshold")}
    metrics.update(protocol=f"{protocol}, seed {seed}; features and models fitted inside each fold; threshold "
                            f"chosen on out-of-fold predictions to minimise {cost_false_alarm:g}×false alarms + "
                            f"{cost_missed_failure:g}×missed failures; metrics are out-of-fold",
                   expected_cost=cost, curves=curve_points(y, oof), rows=int(len(y)), positives=int(y.sum()))
    flagged = oof >= threshold
    if modes:
        from sklearn.metrics import average_precision_score

        metrics["per_mode"] = {
            m: {"support": int(ym.sum()),
                "detected_recall": float(flagged[ym == 1].mean()) if ym.sum() else None,
                "mode_pr_auc": float(average_precision_score(ym, oof_modes[m])) if 0 < ym.sum() < len(ym) else None}
            for m, ym in modes.items()
        }
    if stop():
        raise TrainingStopped()
    builder = FeatureBuilder(schema, interactions=interactions).fit(df)
    X = builder.transform(df)
    params: dict[str, Any] = {"algorithm": algorithm, "cv_folds": cv_folds, "cost_false_alarm": cost_false_alarm,
                              "cost_missed_failure": cost_missed_failure, "seed": seed, "interactions": interactions,
                              "combine_modes": bool(modes)}
    if algorithm == "random_forest":
        params["_medians"] = X.median().to_dict()
    estimator, _ = _fit_predict(algorithm, seed, X, y, X.iloc[:1], stop)
    done += 1
    say(done / steps, "refit on all rows")
    mode_estimators = {}
    for m, ym in modes.items():
        if ym.sum() >= 2:
            mode_estimators[m], _ = _fit_predict(algorithm, seed, X, ym, X.iloc[:1], stop)
        done += 1
        say(done / steps, f"refit mode {m}")
    metrics["feature_importance"] = feature_importance(algorithm, estimator, builder)  # of the refitted model
    return FailureModel(algorithm=algorithm, builder=builder, estimator=estimator, mode_estimators=mode_estimators,
                        threshold=threshold, metrics=metrics, params=params)

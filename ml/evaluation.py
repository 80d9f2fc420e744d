"""Metrics a reviewer can trust: computed on out-of-fold predictions only, with the decision
threshold chosen by expected cost on those same out-of-fold predictions."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)


def cost_threshold(y: np.ndarray, p: np.ndarray, cost_false_alarm: float, cost_missed: float) -> tuple[float, float]:
    """The threshold minimising cost_false_alarm × FP + cost_missed × FN; returns (threshold, cost)."""
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order].astype(int)
    tp = np.cumsum(ys)  # predicting positive for the top k
    fp = np.cumsum(1 - ys)
    fn = ys.sum() - tp
    costs = cost_false_alarm * fp + cost_missed * fn
    # Only cut where the score changes, so ties are never split.
    valid = np.r_[ps[1:] != ps[:-1], True]
    k = int(np.argmin(np.where(valid, costs, np.inf)))
    none_cost = cost_missed * ys.sum()  # flag nothing
    if none_cost <= costs[k]:
        return float(min(1.0, ps[0] + 1e-12)), float(none_cost)
    threshold = float((ps[k] + ps[k + 1]) / 2) if k + 1 < len(ps) else float(ps[k])
    return threshold, float(costs[k])


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    pred = (p >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    return {
        "f1": float(f1_score(y, pred, zero_division=0)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "pr_auc": float(average_precision_score(y, p)),
        "roc_auc": float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None,
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "brier": float(brier_score_loss(y, p)),
        "confusion_matrix": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
        "threshold": float(threshold),
    }


def curve_points(y: np.ndarray, p: np.ndarray, max_points: int = 200) -> dict[str, Any]:
    """PR and ROC curves (downsampled) and a 10-bin calibration table, for plotting."""
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import precision_recall_curve, roc_curve

    prec, rec, _ = precision_recall_curve(y, p)
    fpr, tpr, _ = roc_curve(y, p)

    def thin(a: np.ndarray) -> list[float]:
        idx = np.unique(np.linspace(0, len(a) - 1, min(len(a), max_points)).astype(int))
        return [float(v) for v in a[idx]]

    frac_pos, mean_pred = calibration_curve(y, p, n_bins=10, strategy="quantile")
    return {"pr": {"precision": thin(prec), "recall": thin(rec)}, "roc": {"fpr": thin(fpr), "tpr": thin(tpr)},
            "calibration": {"predicted": [float(v) for v in mean_pred], "observed": [float(v) for v in frac_pos]}}


def nasa_scores(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """The asymmetric NASA (PHM08) score per prediction: late predictions (pred > true) cost more,
    exp(d/10) − 1, than early ones, exp(−d/13) − 1, with d = pred − true."""
    d = np.asarray(pred, dtype="float64") - np.asarray(true, dtype="float64")
    return np.where(d < 0, np.expm1(-d / 13.0), np.expm1(d / 10.0))


def regression_metrics(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    err = np.asarray(pred, dtype="float64") - np.asarray(true, dtype="float64")
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err))),
            "bias": float(np.mean(err)), "nasa_score": float(np.mean(nasa_scores(true, pred)))}


def rul_curves(true: np.ndarray, pred: np.ndarray, *, seed: int = 0, max_points: int = 600,
               bin_width: int = 10) -> dict[str, Any]:
    """Predicted vs true (a seeded sample of points) and error by remaining life, for plotting."""
    true, pred = np.asarray(true, dtype="float64"), np.asarray(pred, dtype="float64")
    idx = np.random.default_rng(seed).choice(len(true), size=min(len(true), max_points), replace=False)
    idx.sort()
    bins = (true // bin_width).astype(int)
    by_rul = []
    for b in np.unique(bins):
        sel = bins == b
        err = pred[sel] - true[sel]
        by_rul.append({"rul_from": int(b * bin_width), "rul_to": int((b + 1) * bin_width), "count": int(sel.sum()),
                       "rmse": float(np.sqrt(np.mean(err**2))), "bias": float(np.mean(err))})
    return {"predicted_vs_true": {"true": [float(v) for v in true[idx]], "predicted": [round(float(v), 3) for v in pred[idx]]},
            "error_by_rul": by_rul}

"""Fitting that a job can stop mid-model: between boosting rounds or between batches of trees."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

FOREST_STEP = 25


class FitStopped(Exception):
    """The caller's stop check said stop while a model was being fitted."""


def fit_cancellable(est: Any, X: pd.DataFrame, y: np.ndarray, stop: Callable[[], bool] | None) -> Any:
    """`est.fit(X, y)`, checking `stop` after every LightGBM boosting round or every 25 forest trees.
    Growing a forest in steps with warm start gives the same trees as one fit (sklearn draws each
    tree's seed from the same sequence)."""
    if stop is None:
        return est.fit(X, y)
    if type(est).__module__.startswith("lightgbm"):
        def check(_env: Any) -> None:
            if stop():
                raise FitStopped()

        return est.fit(X, y, callbacks=[check])
    from sklearn.ensemble._forest import BaseForest

    if isinstance(est, BaseForest):
        total = est.n_estimators
        est.set_params(warm_start=True)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*not recommended for warm_start.*")
            for n in range(min(FOREST_STEP, total), total + FOREST_STEP, FOREST_STEP):
                est.set_params(n_estimators=min(n, total))
                est.fit(X, y)
                if stop():
                    raise FitStopped()
                if n >= total:
                    break
        return est.set_params(warm_start=False)
    if stop():
        raise FitStopped()
    return est.fit(X, y)

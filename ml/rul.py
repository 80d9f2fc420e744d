"""Remaining-useful-life models for run-to-failure histories (`unit` + `time` in the schema).

Target: time to the unit's last record (or the schema's `rul` column), optionally capped
(piecewise-linear RUL: early life is "healthy", so the target is flat at `rul_cap` there).

Features never look ahead: for each row, only that unit's rows up to and including it are used.
Sensors are normalised per operating condition (conditions are found by clustering the setting
columns, fitted on training units only), constant sensors are dropped, and each remaining sensor
gets its current value plus the mean, standard deviation and least-squares slope over the last `w`
rows for every window `w`. Because every feature of a row depends only on the past, the
prediction for a unit with a partial history is the prediction at its last row, and evaluating
every out-of-fold row is evaluating every possible truncation point.

Evaluation: group k-fold by unit (a unit is never in both training and validation), every fitted
step inside the folds, then a refit on all units.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold

from ml.evaluation import regression_metrics, rul_curves
from ml.fitting import FitStopped, fit_cancellable
from ml.schema import DatasetSchema, validate_schema

SETTING_NAME = re.compile(r"(setting|op[\s_-]?cond|operating|regime)", re.IGNORECASE)
RUL_ALGORITHMS = ("lightgbm", "random_forest")
Progress = Callable[[float, str], None]


class RulStopped(FitStopped):
    pass


def time_values(s: pd.Series) -> np.ndarray:
    """A time column as float64: numbers as they are (cycles, hours), timestamps as hours."""
    if pd.api.types.is_numeric_dtype(s):
        return s.to_numpy(dtype="float64")
    ts = pd.to_datetime(s, errors="coerce", utc=True)
    if ts.isna().any() and s.notna().any():
        bad = s[ts.isna() & s.notna()].iloc[0]
        raise ValueError(f"time column {s.name!r} must hold numbers (cycles) or timestamps; found {bad!r}")
    return ts.astype("int64").to_numpy(dtype="float64") / 3.6e12


def rul_target(df: pd.DataFrame, schema: DatasetSchema, cap: float | None) -> np.ndarray:
    if schema.rul:
        y = pd.to_numeric(df[schema.rul], errors="coerce").to_numpy(dtype="float64")
    else:
        t = pd.Series(time_values(df[schema.time]), index=df.index)
        y = (t.groupby(df[schema.unit]).transform("max") - t).to_numpy(dtype="float64")
    return np.minimum(y, cap) if cap else y


def _ordered(df: pd.DataFrame, unit: str, time: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row order by (unit, time), stable; the start index of each row's unit run; units in that order."""
    codes, _ = pd.factorize(df[unit], sort=False)
    order = np.lexsort((time_values(df[time]), codes))
    sorted_codes = codes[order]
    idx = np.arange(len(order))
    starts = np.maximum.accumulate(np.where(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]], idx, 0))
    return order, starts, sorted_codes


def _window_stats(z: np.ndarray, starts: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, std and slope of each column over the last `w` rows of the same unit (rows sorted)."""
    n = len(z)
    idx = np.arange(n)
    lo = np.maximum(idx - w + 1, starts)
    cnt = (idx - lo + 1).astype("float64")[:, None]
    j = (idx - starts).astype("float64")[:, None]  # position within the unit

    bounds = np.r_[np.flatnonzero(np.r_[True, starts[1:] != starts[:-1]]), n]

    def window_sum(a: np.ndarray) -> np.ndarray:
        # Cumulative sums restart at every unit, so a row's value depends only on its own unit's
        # earlier rows (a global running sum would let rounding from other units leak in).
        c = np.empty((n + 1, a.shape[1]))
        c[0] = 0.0
        for b0, b1 in zip(bounds[:-1], bounds[1:], strict=True):
            c[b0 + 1:b1 + 1] = np.cumsum(a[b0:b1], axis=0)
        lo_c = np.where(lo == starts, 0.0, 1.0)[:, None] * c[lo]  # window reaching the unit start sums from 0
        return c[idx + 1] - lo_c

    s1, s2 = window_sum(z), window_sum(z * z)
    sj, sj2, sjz = window_sum(j), window_sum(j * j), window_sum(j * z)
    mean = s1 / cnt
    std = np.sqrt(np.maximum(s2 / cnt - mean * mean, 0.0))
    denom = cnt * sj2 - sj * sj
    with np.errstate(all="ignore"):
        slope = np.where(denom > 0, (cnt * sjz - sj * s1) / np.where(denom > 0, denom, 1.0), 0.0)
    return mean, std, slope


class RulFeatureBuilder:
    """Per-unit rolling-window features that only look back; fitted on training units only."""

    def __init__(self, schema: DatasetSchema, windows: Sequence[int] = (5, 10, 20),
                 settings: Sequence[str] | None = None, max_conditions: int = 8) -> None:
        if not schema.unit or not schema.time:
            raise ValueError("RUL models need run-to-failure histories: set schema.unit and schema.time")
        self.schema, self.windows = schema, sorted({int(w) for w in windows})
        self.settings, self.max_conditions = settings, max_conditions

    def fit(self, df: pd.DataFrame) -> RulFeatureBuilder:
        cols = [c for c in self.schema.feature_columns(list(df.columns)) if c not in self.schema.categorical]
        numeric = [c for c in cols if pd.api.types.is_numeric_dtype(df[c])]
        if self.settings is None:
            self.settings_ = [c for c in numeric if SETTING_NAME.search(str(c))]
        else:
            self.settings_ = list(self.settings)
        sensors = [c for c in numeric if c not in self.settings_]
        self._fit_conditions(df)
        cond = self._conditions(df)
        values = df[sensors].to_numpy(dtype="float64")
        k = self.n_conditions_
        self.means_ = np.zeros((k, len(sensors)))
        self.stds_ = np.ones((k, len(sensors)))
        pooled_mean, pooled_std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
        for c in range(k):
            sel = values[cond == c]
            # A condition with too few training rows falls back to the pooled statistics.
            self.means_[c] = np.nanmean(sel, axis=0) if len(sel) >= 10 else pooled_mean
            self.stds_[c] = np.nanstd(sel, axis=0) if len(sel) >= 10 else pooled_std
        scale = pooled_std
        # Constant sensors (or ones that only follow the operating condition) carry nothing: drop them.
        keep = np.nanmax(self.stds_, axis=0) > 1e-9 * np.maximum(1.0, scale)
        self.dropped_ = [c for c, k_ in zip(sensors, keep, strict=True) if not k_]
        self.sensors_ = [c for c, k_ in zip(sensors, keep, strict=True) if k_]
        self.means_, self.stds_ = self.means_[:, keep], np.maximum(self.stds_[:, keep], 1e-9)
        self.numeric_time_ = pd.api.types.is_numeric_dtype(df[self.schema.time])
        names = ([str(self.schema.time)] if self.numeric_time_ else []) + list(self.settings_)
        names += ["operating condition"] if self.n_conditions_ > 1 else []
        names += list(self.sensors_)
        for w in self.windows:
            for stat in ("mean", "std", "slope"):
                names += [f"{s} {stat} (last {w})" for s in self.sensors_]
        self.feature_names_ = names
        self.safe_names_ = [f"f{i}" for i in range(len(names))]
        self.sources_ = ([[self.schema.time]] if self.numeric_time_ else []) + [[c] for c in self.settings_]
        self.sources_ += [list(self.settings_)] if self.n_conditions_ > 1 else []
        self.sources_ += [[s] for s in self.sensors_] * (1 + 3 * len(self.windows))
        return self

    @property
    def required_columns(self) -> list[str]:
        return list(dict.fromkeys([self.schema.unit, self.schema.time, *self.settings_, *self.sensors_]))

    def _fit_conditions(self, df: pd.DataFrame) -> None:
        self.n_conditions_, self.centers_ = 1, None
        if not self.settings_:
            return
        s = df[self.settings_].to_numpy(dtype="float64")
        s = s[~np.isnan(s).any(axis=1)]
        self.s_mean_, self.s_std_ = s.mean(axis=0), s.std(axis=0)
        self.s_std_[self.s_std_ == 0] = 1.0
        z = (s - self.s_mean_) / self.s_std_
        from sklearn.cluster import KMeans

        sample = z[np.random.default_rng(0).choice(len(z), size=min(len(z), 5_000), replace=False)]
        base = float(((sample - sample.mean(axis=0)) ** 2).sum())
        if base <= 0:
            return
        # Real operating conditions are tight clusters: take the smallest k leaving < 1% of the spread,
        # then keep adding clusters while each still removes > 90% of what is left (close conditions
        # that a smaller k merged).
        fits = {k: KMeans(n_clusters=k, n_init=2, random_state=0).fit(sample) for k in range(2, self.max_conditions + 1)}
        chosen = next((k for k, km in fits.items() if km.inertia_ < 0.01 * base), None)
        if chosen is None:
            return
        while chosen + 1 in fits and fits[chosen + 1].inertia_ < 0.1 * fits[chosen].inertia_:
            chosen += 1
        self.n_conditions_, self.centers_ = chosen, fits[chosen].cluster_centers_

    def _conditions(self, df: pd.DataFrame) -> np.ndarray:
        if self.centers_ is None:
            return np.zeros(len(df), dtype=int)
        z = (df[self.settings_].to_numpy(dtype="float64") - self.s_mean_) / self.s_std_
        d = ((np.nan_to_num(z)[:, None, :] - self.centers_[None, :, :]) ** 2).sum(axis=2)
        return d.argmin(axis=1)

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        """Features for every row (in `df`'s order), each from its unit's rows up to that row."""
        order, starts, _ = _ordered(df, self.schema.unit, self.schema.time)
        cond = self._conditions(df)
        raw = df[self.sensors_].to_numpy(dtype="float64")
        z = (raw - self.means_[cond]) / self.stds_[cond]
        z = np.nan_to_num(z[order])  # a missing reading counts as "at its condition's mean"
        parts = []
        if self.numeric_time_:
            parts.append(time_values(df[self.schema.time])[order][:, None])
        if self.settings_:
            parts.append(df[self.settings_].to_numpy(dtype="float64")[order])
        if self.n_conditions_ > 1:
            parts.append(cond[order][:, None].astype("float64"))
        parts.append(z)
        for w in self.windows:
            parts.extend(_window_stats(z, starts, w))
        matrix = np.empty((len(df), len(self.safe_names_)))
        matrix[order] = np.hstack(parts)
        return pd.DataFrame(matrix, columns=self.safe_names_, index=df.index)


def make_regressor(algorithm: str, seed: int) -> Any:
    if algorithm == "lightgbm":
        from lightgbm import LGBMRegressor

        return LGBMRegressor(n_estimators=300, learning_rate=0.05, num_leaves=31, min_child_samples=40,
                             subsample=0.8, subsample_freq=1, colsample_bytree=0.5, reg_lambda=1.0,
                             random_state=seed, n_jobs=2, verbose=-1, deterministic=True, force_col_wise=True)
    if algorithm == "random_forest":
        from sklearn.ensemble import RandomForestRegressor

        return RandomForestRegressor(n_estimators=200, min_samples_leaf=5, max_features=0.3, random_state=seed,
                                     n_jobs=2)
    raise ValueError(f"algorithm must be one of {', '.join(RUL_ALGORITHMS)}; got {algorithm!r}")


def _fit(algorithm: str, seed: int, X: pd.DataFrame, y: np.ndarray, stop: Callable[[], bool]) -> Any:
    return fit_cancellable(make_regressor(algorithm, seed), X, y, stop)


@dataclass
class RulModel:
    builder: RulFeatureBuilder
    estimator: Any
    cap: float | None
    metrics: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)

    def predict_rows(self, df: pd.DataFrame) -> np.ndarray:
        """RUL at every row, from its unit's rows up to that row."""
        p = self.estimator.predict(self.builder.transform(df))
        return np.clip(p, 0.0, self.cap if self.cap else None)

    def predict_units(self, df: pd.DataFrame) -> pd.DataFrame:
        """One RUL per unit: at the unit's last row (its history so far)."""
        unit, time = self.builder.schema.unit, self.builder.schema.time
        pred = self.predict_rows(df)
        t = time_values(df[time])
        frame = pd.DataFrame({"unit": df[unit].to_numpy(), "t": t, "rul": pred})
        last = frame.sort_values(["unit", "t"], kind="stable").groupby("unit", sort=False).tail(1)
        counts = frame.groupby("unit", sort=False).size()
        last = last.assign(rows=last["unit"].map(counts).to_numpy())
        first_seen = pd.unique(df[unit])
        return last.set_index("unit").loc[first_seen].reset_index().rename(columns={"t": "last_time"})


def train_rul_model(df: pd.DataFrame, schema: DatasetSchema, *, rul_cap: float | None = 125,
                    windows: Sequence[int] = (5, 10, 20), settings: Sequence[str] | None = None,
                    algorithm: str = "lightgbm", cv_folds: int = 5, seed: int = 0,
                    progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
                    oof_out: dict[str, np.ndarray] | None = None) -> RulModel:
    validate_schema(df, schema)
    if not schema.unit or not schema.time:
        raise ValueError("RUL training needs run-to-failure histories: set schema.unit and schema.time")
    if algorithm not in RUL_ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(RUL_ALGORITHMS)}; got {algorithm!r}")
    say = progress or (lambda f, m: None)
    stop = should_stop or (lambda: False)
    df = df.reset_index(drop=True)
    y = rul_target(df, schema, rul_cap)
    keep = ~np.isnan(y)
    df, y = df[keep].reset_index(drop=True), y[keep]
    groups = df[schema.unit].to_numpy()
    n_units = len(pd.unique(groups))
    if n_units < cv_folds:
        raise ValueError(f"only {n_units} units: need at least {cv_folds} for {cv_folds}-fold group CV")
    splits = list(GroupKFold(n_splits=cv_folds, shuffle=True, random_state=seed).split(df, y, groups))
    oof = np.zeros(len(df))
    steps = cv_folds + 1
    for k, (tr, va) in enumerate(splits):
        if stop():
            raise RulStopped()
        builder = RulFeatureBuilder(schema, windows, settings).fit(df.iloc[tr])  # fitted inside the fold
        est = _fit(algorithm, seed, builder.transform(df.iloc[tr]), y[tr], stop)
        oof[va] = np.clip(est.predict(builder.transform(df.iloc[va])), 0.0, rul_cap if rul_cap else None)
        say((k + 1) / steps, f"fold {k + 1}/{cv_folds}")
    if oof_out is not None:
        oof_out.update(y=y.copy(), p=oof.copy(), unit=groups.copy())
    metrics: dict[str, Any] = regression_metrics(y, oof)
    metrics.update(
        protocol=f"{cv_folds}-fold group k-fold by '{schema.unit}' ({n_units} units), seed {seed}; normalisation, "
                 "operating conditions, sensor selection and model fitted inside each fold; metrics over every "
                 "out-of-fold row (each row is a truncation point: features only use that unit's earlier rows); "
                 f"target {'capped at ' + format(rul_cap, 'g') if rul_cap else 'uncapped'}; nasa_score is the "
                 "mean per prediction",
        rows=int(len(y)), units=int(n_units), curves=rul_curves(y, oof, seed=seed))
    if stop():
        raise RulStopped()
    builder = RulFeatureBuilder(schema, windows, settings).fit(df)
    estimator = _fit(algorithm, seed, builder.transform(df), y, stop)
    metrics.update(dropped_sensors=builder.dropped_, operating_conditions=int(builder.n_conditions_))
    say(1.0, "refit on all units")
    params = {"task": "rul", "algorithm": algorithm, "rul_cap": rul_cap, "windows": list(builder.windows),
              "settings": list(builder.settings_), "cv_folds": cv_folds, "seed": seed}
    return RulModel(builder=builder, estimator=estimator, cap=rul_cap, metrics=metrics, params=params)

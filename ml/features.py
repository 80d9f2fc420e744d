"""Model inputs from a dataset: numeric columns, one-hot categoricals, declared derived features,
and automatic pairwise interactions, so physics like power = torque × speed is found even when
nobody declared it. Fitted on training rows only (inside each CV fold).

Columns are exposed to learners under safe internal names (`f0`, `f1`, …): some libraries reject
names with brackets, quotes or colons (`Air temperature [K]` breaks LightGBM). `feature_names_`
maps them back to what users read.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

from ml.expressions import Expression
from ml.schema import DatasetSchema

EPS = 1e-9


class FeatureBuilder:
    def __init__(self, schema: DatasetSchema, interactions: bool = True, max_interaction_columns: int = 12) -> None:
        self.schema = schema
        self.interactions = interactions
        self.max_interaction_columns = max_interaction_columns

    def fit(self, df: pd.DataFrame) -> FeatureBuilder:
        raw = self.schema.feature_columns(list(df.columns))
        self.categorical_ = [c for c in raw if c in self.schema.categorical or df[c].dtype == object]
        self.numeric_ = [c for c in raw if c not in self.categorical_]
        self.levels_ = {c: sorted(map(str, pd.unique(df[c].dropna()))) for c in self.categorical_}
        self.derived_ = {name: Expression(src, list(df.columns)) for name, src in self.schema.derived.items()}
        base = [*self.numeric_, *self.derived_]
        stds = {c: float(np.nanstd(self._column(df, c))) for c in base}
        usable = [c for c in base if stds[c] > 0][: self.max_interaction_columns]  # constants carry nothing
        self.pairs_ = list(combinations(usable, 2)) if self.interactions else []
        self.feature_names_ = [
            *self.numeric_, *self.derived_,
            *[f"{c}={lvl}" for c in self.categorical_ for lvl in self.levels_[c]],
            *[f"{a} × {b}" for a, b in self.pairs_],
            *[f"{a} − {b}" for a, b in self.pairs_],
            *[f"{a} ÷ {b}" for a, b in self.pairs_],
        ]
        self.safe_names_ = [f"f{i}" for i in range(len(self.feature_names_))]
        # Which original columns each feature comes from (explanations credit them).
        self.sources_ = [
            *[[c] for c in self.numeric_], *[e.columns for e in self.derived_.values()],
            *[[c] for c in self.categorical_ for _ in self.levels_[c]],
            *[self._sources(a) + self._sources(b) for a, b in self.pairs_] * 3,
        ]
        return self

    def _sources(self, name: str) -> list[str]:
        return self.derived_[name].columns if name in self.derived_ else [name]

    def _column(self, df: pd.DataFrame, name: str) -> np.ndarray:
        if name in self.derived_:
            return self.derived_[name].evaluate(df).to_numpy(dtype="float64")
        s = df[name]
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            return s.to_numpy(dtype="float64", na_value=np.nan)
        return pd.to_numeric(s, errors="coerce").to_numpy(dtype="float64")

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        base = {c: self._column(df, c) for c in [*self.numeric_, *self.derived_]}
        cols: list[np.ndarray] = list(base.values())
        for c in self.categorical_:
            values = df[c].astype(str).to_numpy()
            cols += [(values == lvl).astype("float64") for lvl in self.levels_[c]]
        cols += [base[a] * base[b] for a, b in self.pairs_]
        cols += [base[a] - base[b] for a, b in self.pairs_]
        with np.errstate(all="ignore"):
            cols += [np.where(np.abs(base[b]) > EPS, base[a] / base[b], np.nan) for a, b in self.pairs_]
        matrix = np.column_stack(cols) if cols else np.empty((len(df), 0))
        return pd.DataFrame(matrix, columns=self.safe_names_, index=df.index)

    def fit_transform(self, df: pd.DataFrame) -> pd.DataFrame:
        return self.fit(df).transform(df)

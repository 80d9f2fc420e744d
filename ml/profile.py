"""A dataset's profile: size, per-column statistics and histograms, missing values, class balance
and per-failure-mode counts. Everything a user checks before training, and what the dashboard plots."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml.schema import DatasetSchema

HIST_BINS = 20
TOP_CATEGORIES = 20


def _num(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and not np.isfinite(x)) else float(x)


def column_profile(s: pd.Series) -> dict[str, Any]:
    out: dict[str, Any] = {"dtype": str(s.dtype), "missing": int(s.isna().sum()), "distinct": int(s.nunique())}
    values = s.dropna()
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        v = values.astype("float64")
        if len(v):
            q = np.quantile(v, [0.01, 0.25, 0.5, 0.75, 0.99])
            out.update(kind="numeric", min=_num(v.min()), max=_num(v.max()), mean=_num(v.mean()),
                       std=_num(v.std(ddof=1)) if len(v) > 1 else None,
                       p01=_num(q[0]), p25=_num(q[1]), median=_num(q[2]), p75=_num(q[3]), p99=_num(q[4]))
            counts, edges = np.histogram(v, bins=HIST_BINS if v.min() < v.max() else 1)
            out["histogram"] = {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}
        else:
            out["kind"] = "numeric"
    else:
        top = values.astype(str).value_counts().head(TOP_CATEGORIES)
        out.update(kind="categorical", top=[{"value": k, "count": int(c)} for k, c in top.items()])
    return out


def profile(df: pd.DataFrame, schema: DatasetSchema) -> dict[str, Any]:
    return _profile(lambda c: df[c], list(df.columns), len(df), schema)


def profile_parquet(path: Path, schema: DatasetSchema) -> dict[str, Any]:
    """The same profile, read one column at a time: memory stays bounded by one column."""
    import pyarrow.parquet as pq

    f = pq.ParquetFile(path)
    return _profile(lambda c: f.read(columns=[c]).column(0).to_pandas(), list(f.schema_arrow.names),
                    f.metadata.num_rows, schema)


def _profile(column: Callable[[str], pd.Series], columns: list[str], rows: int,
             schema: DatasetSchema) -> dict[str, Any]:
    out: dict[str, Any] = {"rows": int(rows), "columns": {c: column_profile(column(c).rename(c)) for c in columns}}
    if schema.target:
        y = column(schema.target).fillna(0).astype(int)
        out["class_balance"] = {"positives": int(y.sum()), "negatives": int((1 - y).sum()),
                                "positive_rate": float(y.mean())}
    if schema.failure_modes:
        out["failure_modes"] = {m: int(column(m).fillna(0).astype(int).sum()) for m in schema.failure_modes}
    if schema.unit:
        per_unit = column(schema.unit).value_counts()
        out["units"] = {"count": int(per_unit.size), "rows_min": int(per_unit.min()), "rows_max": int(per_unit.max())}
    return out

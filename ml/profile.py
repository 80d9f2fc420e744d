"""A dataset's profile: size, per-column statistics and histograms, missing values, class balance
and per-failure-mode counts. Everything a user checks before training, and what the dashboard plots.

Computed in one streaming pass (`TableSummary`) over record batches, so memory is bounded by the
batch size and the budgets below, not by the dataset:
- exact: rows, missing, min, max, mean, std (merged per batch), histograms (edges from the exact
  min/max of a first pass), class balance, failure-mode counts, unit counts, and `distinct` and the
  category counts while a column has at most its share of DISTINCT_BUDGET / CATEGORY_BUDGET
  distinct values (past that `distinct` is a lower bound and `distinct_exact` is false);
- from a uniform sample of rows (bottom-k of random keys, seed 0) of up to `sample_rows`:
  the percentiles p01, p25, median, p75, p99 and the inferred `normal_range`s. When the dataset has
  no more rows than that (AI4I: 10,000) the sample is every row and these are exact too; otherwise
  the profile says so in `sample`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml.schema import DatasetSchema

HIST_BINS = 20
TOP_CATEGORIES = 20
DISTINCT_BUDGET = 2_000_000  # distinct numeric values kept over all columns (8 bytes each)
CATEGORY_BUDGET = 1_000_000  # distinct text values counted over all columns
SAMPLE_CELLS = 2_000_000  # numeric cells in the row sample (16 MB)
PROFILE_BATCH_CELLS = 1_000_000

Batches = Callable[[list[str] | None], Iterator[pd.DataFrame]]


def release_memory() -> None:
    """Hand memory freed so far back to the OS. Both allocators keep freed blocks for reuse
    (Arrow's mimalloc/jemalloc pool, glibc's arenas): over a long pass of many batches their
    high-water mark, not the live data, would set the process's peak, and a long-lived API process
    would keep it after the upload."""
    import ctypes
    import ctypes.util

    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):  # not glibc (macOS, musl, Windows): nothing to trim
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


def _num(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and not np.isfinite(x)) else float(x)


def _is_numeric(dtype: Any) -> bool:
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


@dataclass
class ColumnSummary:
    name: str
    dtype: str
    numeric: bool
    missing: int = 0
    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float | None = None
    max: float | None = None
    edges: np.ndarray | None = None
    hist: np.ndarray | None = None
    uniques: np.ndarray | None = field(default_factory=lambda: np.empty(0))  # numeric/bool values; None past the cap
    counts: pd.Series | None = None  # value -> rows, for bool and text columns; None past the cap
    distinct_seen: int = 0
    ones: int = 0

    @property
    def distinct_exact(self) -> bool:
        return (self.uniques is not None) if self.numeric else (self.counts is not None)

    @property
    def distinct(self) -> int:
        if self.numeric:
            return len(self.uniques) if self.uniques is not None else self.distinct_seen
        return len(self.counts) if self.counts is not None else self.distinct_seen

    def values(self) -> set[Any] | None:
        """The distinct non-missing values, when known exactly."""
        if self.numeric:
            return None if self.uniques is None else set(self.uniques.tolist())
        return None if self.counts is None else set(self.counts.index)


class _RowSample:
    """A uniform sample without replacement of up to `cap` rows (bottom-k of random keys, seed 0),
    in buffers allocated once: re-allocating a growing array per batch leaves the heap fragmented
    (glibc cannot trim below a live block), which cost more than the sample itself."""

    def __init__(self, cap: int, width: int) -> None:
        self.cap, self.filled = cap, 0
        self.keys = np.empty(cap)
        self.buf = np.empty((cap, width))
        self.rng = np.random.default_rng(0)

    def add(self, block: np.ndarray) -> None:
        kb = self.rng.random(len(block))
        free = min(self.cap - self.filled, len(block))
        if free:
            self.keys[self.filled:self.filled + free] = kb[:free]
            self.buf[self.filled:self.filled + free] = block[:free]
            self.filled += free
            kb, block = kb[free:], block[free:]
        if not len(kb):
            return
        # the batch rows whose keys are among the cap smallest of (sample + batch) replace the largest
        combined = np.concatenate([self.keys, kb])
        keep = np.argpartition(combined, self.cap - 1)[: self.cap]
        incoming = keep[keep >= self.cap] - self.cap
        if not len(incoming):
            return
        kept = np.zeros(self.cap, dtype=bool)
        kept[keep[keep < self.cap]] = True
        slots = np.flatnonzero(~kept)
        self.keys[slots] = kb[incoming]
        self.buf[slots] = block[incoming]

    def rows(self) -> np.ndarray:
        return self.buf[: self.filled]


class TableSummary:
    """Exact per-column statistics plus a uniform row sample of the numeric columns; `batches`
    re-reads chosen columns for the few questions that need two columns at once."""

    def __init__(self, columns: list[str], batches: Batches, *, sample_rows: int | None = None) -> None:
        self.columns = list(columns)
        self._batches = batches
        self.rows = 0
        self.col: dict[str, ColumnSummary] = {}
        self._sample_cap = sample_rows
        self.sample = pd.DataFrame()
        self.sampled = False

    # ------------------------------------------------------------------ building
    def _scan(self) -> None:
        ranges: dict[str, list[float]] = {}
        dtypes: dict[str, Any] = {}
        for i, b in enumerate(self._batches(None)):  # pass 1: dtypes and exact ranges, for the histogram edges
            if i % 8 == 7:
                release_memory()
            for c in self.columns:
                s = b[c]
                dtypes.setdefault(c, s.dtype)
                if _is_numeric(s.dtype):
                    v = s.to_numpy(dtype="float64", na_value=np.nan)
                    v = v[~np.isnan(v)]
                    if v.size:
                        lo, hi = float(v.min()), float(v.max())
                        r = ranges.setdefault(c, [lo, hi])
                        r[0], r[1] = min(r[0], lo), max(r[1], hi)
        numeric = [c for c in self.columns if _is_numeric(dtypes.get(c, np.dtype("float64")))]
        ncols = max(len(self.columns), 1)
        num_cap = max(10_000, min(500_000, DISTINCT_BUDGET // ncols))
        cat_cap = max(1_000, min(100_000, CATEGORY_BUDGET // ncols))
        sample_cap = self._sample_cap or max(10_000, min(1_000_000, SAMPLE_CELLS // max(len(numeric), 1)))
        for c in self.columns:
            cs = ColumnSummary(c, str(dtypes.get(c, "float64")), c in numeric)
            if c in ranges:
                lo, hi = ranges[c]
                cs.min, cs.max = lo, hi
                cs.edges = np.histogram_bin_edges(np.array([lo, hi]), bins=HIST_BINS if lo < hi else 1)
                cs.hist = np.zeros(len(cs.edges) - 1, dtype=np.int64)
            if not cs.numeric:
                cs.uniques, cs.counts = None, pd.Series(dtype="int64")
            self.col[c] = cs
        sampler = _RowSample(sample_cap, len(numeric))
        for i, b in enumerate(self._batches(None)):  # pass 2: everything else
            if i % 8 == 7:
                release_memory()
            self.rows += len(b)
            for c in self.columns:
                self._add(self.col[c], b[c], num_cap, cat_cap)
            if numeric:
                sampler.add(np.column_stack([b[c].to_numpy(dtype="float64", na_value=np.nan) for c in numeric]))
        self.sampled = self.rows > sampler.filled if numeric else False
        self.sample = pd.DataFrame(sampler.rows(), columns=numeric)

    @staticmethod
    def _add(cs: ColumnSummary, s: pd.Series, num_cap: int, cat_cap: int) -> None:
        missing = int(s.isna().sum())
        cs.missing += missing
        if cs.numeric:
            v = s.to_numpy(dtype="float64", na_value=np.nan)
            v = v[~np.isnan(v)]
            if not v.size:
                return
            n, mean = v.size, float(v.sum() / v.size)
            m2 = float(((v - mean) ** 2).sum())
            if cs.count == 0:
                cs.count, cs.mean, cs.m2 = n, mean, m2
            else:  # Chan et al.: merge two (count, mean, M2)
                total = cs.count + n
                delta = mean - cs.mean
                cs.mean += delta * n / total
                cs.m2 += m2 + delta * delta * cs.count * n / total
                cs.count = total
            cs.ones += int((v == 1).sum())
            if cs.edges is not None and cs.hist is not None:
                cs.hist += np.histogram(v, bins=cs.edges)[0]
            if cs.uniques is not None:
                cs.uniques = np.union1d(cs.uniques, v)
                if len(cs.uniques) > num_cap:
                    cs.distinct_seen, cs.uniques = len(cs.uniques), None
            return
        values = s.dropna()
        cs.count += len(values)
        if cs.counts is None or not len(values):
            return
        vc = values.value_counts(sort=False)
        # concat + groupby(sort=False) keeps first-seen order, so ties rank as one whole-column count would
        cs.counts = vc if not len(cs.counts) else pd.concat([cs.counts, vc]).groupby(level=0, sort=False).sum()
        if len(cs.counts) > cat_cap:
            cs.distinct_seen, cs.counts = len(cs.counts), None

    # ------------------------------------------------------------------ questions the schema asks
    def is_binary(self, c: str) -> bool:
        values = self.col[c].values()
        return bool(values) and values is not None and values <= {0, 1}

    def preview(self, c: str, n: int = 10) -> list[str]:
        cs = self.col[c]
        if cs.numeric:
            vals = cs.uniques[:n].tolist() if cs.uniques is not None else [cs.min, cs.max]
            return sorted(str(int(v)) if float(v).is_integer() else str(v) for v in vals)[:n]
        if cs.counts is None:
            return []
        return sorted(map(str, cs.counts.index))[:n]

    def ones(self, c: str) -> int:
        cs = self.col[c]
        if cs.numeric:
            return cs.ones
        if cs.counts is None:
            return 0
        return int(sum(int(k) for v, k in cs.counts.items() if v == 1))

    def joint_ones(self, a: str, others: list[str]) -> dict[str, int]:
        """Rows where `a` and each of `others` are both 1 (binary columns), in one pass over those columns."""
        out = dict.fromkeys(others, 0)
        if not others:
            return out
        for b in self._batches([a, *others]):
            ya = b[a].fillna(0).astype(bool).to_numpy()
            for c in others:
                out[c] += int((ya & b[c].fillna(0).astype(bool).to_numpy()).sum())
        return out

    def value_counts(self, c: str) -> pd.Series:
        """Exact rows per value of one column (the unit ids), however many there are."""
        cs = self.col[c]
        if cs.counts is not None:
            return cs.counts
        total: pd.Series | None = None
        for b in self._batches([c]):
            vc = b[c].value_counts()
            total = vc if total is None else total.add(vc, fill_value=0)
        return (total if total is not None else pd.Series(dtype="int64")).astype("int64")

    def quantiles(self, c: str, qs: list[float], rows: np.ndarray | None = None) -> np.ndarray | None:
        if c not in self.sample:
            return None
        v = self.sample[c].to_numpy()
        if rows is not None:
            v = v[rows]
        v = v[~np.isnan(v)]
        return np.quantile(v, qs) if v.size else None


def summarize_frame(df: pd.DataFrame) -> TableSummary:
    """The summary of an in-memory frame: one batch, and every row in the sample (exact)."""
    cols = [str(c) for c in df.columns]
    frame = df.copy(deep=False)
    frame.columns = cols

    def batches(names: list[str] | None) -> Iterator[pd.DataFrame]:
        yield frame if names is None else frame[names]

    t = TableSummary(cols, batches, sample_rows=max(len(df), 1))
    t._scan()
    return t


def summarize_batches(columns: list[str], batches: Batches) -> TableSummary:
    t = TableSummary(columns, batches)
    t._scan()
    return t


def parquet_batches(path: Path) -> tuple[list[str], Batches]:
    """Column names and a batch reader of a Parquet file, converting each batch as a whole-file read
    would (integer columns with a null anywhere as float64, so every batch has the same dtypes)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    f = pq.ParquetFile(path)
    names = [str(n) for n in f.schema_arrow.names]
    nullable_ints = {n for i, n in enumerate(names)
                     if pa.types.is_integer(f.schema_arrow.field(i).type) and _has_nulls(f, i)}
    bools = {n for i, n in enumerate(names)
             if pa.types.is_boolean(f.schema_arrow.field(i).type) and _has_nulls(f, i)}
    rows = max(1_000, PROFILE_BATCH_CELLS // max(len(names), 1))

    def batches(cols: list[str] | None) -> Iterator[pd.DataFrame]:
        for b in f.iter_batches(batch_size=rows, columns=cols or names, use_pandas_metadata=False):
            df = b.to_pandas()
            for c in df.columns:
                if isinstance(df[c].dtype, pd.CategoricalDtype):  # dictionary-encoded text: plain values
                    df[c] = df[c].astype(object)
                if c in nullable_ints and df[c].dtype != "float64":
                    df[c] = df[c].astype("float64")
                elif c in bools and df[c].dtype != object:
                    df[c] = df[c].astype(object)
            yield df

    return names, batches


def _has_nulls(f: Any, i: int) -> bool:
    md = f.metadata
    for g in range(md.num_row_groups):
        st = md.row_group(g).column(i).statistics
        if st is None or not st.has_null_count or st.null_count:
            return True  # unknown counts as possibly null: float64 holds every int64 the reader gives
    return False


def summarize_parquet(path: Path) -> TableSummary:
    names, batches = parquet_batches(path)
    return summarize_batches(names, batches)


# ----------------------------------------------------------------------------------- the profile
def _column_profile(t: TableSummary, cs: ColumnSummary) -> dict[str, Any]:
    out: dict[str, Any] = {"dtype": cs.dtype, "missing": cs.missing, "distinct": cs.distinct}
    if not cs.distinct_exact:
        out["distinct_exact"] = False
    if cs.numeric:
        out["kind"] = "numeric"
        if cs.count:
            q = t.quantiles(cs.name, [0.01, 0.25, 0.5, 0.75, 0.99])
            q = [None] * 5 if q is None else [_num(x) for x in q]
            out.update(min=_num(cs.min), max=_num(cs.max), mean=_num(cs.mean),
                       std=_num(float(np.sqrt(cs.m2 / (cs.count - 1)))) if cs.count > 1 else None,
                       p01=q[0], p25=q[1], median=q[2], p75=q[3], p99=q[4])
            if cs.edges is not None and cs.hist is not None:
                out["histogram"] = {"edges": [float(e) for e in cs.edges], "counts": [int(c) for c in cs.hist]}
    else:
        top: list[dict[str, Any]] = []
        if cs.counts is not None and len(cs.counts):
            by_text = cs.counts.groupby(cs.counts.index.map(str), sort=False).sum()
            ranked = by_text.sort_values(ascending=False, kind="stable").head(TOP_CATEGORIES)
            top = [{"value": k, "count": int(c)} for k, c in ranked.items()]
        out.update(kind="categorical", top=top)
    return out


def profile_summary(t: TableSummary, schema: DatasetSchema) -> dict[str, Any]:
    out: dict[str, Any] = {"rows": int(t.rows), "columns": {c: _column_profile(t, t.col[c]) for c in t.columns}}
    if t.sampled:
        out["sample"] = {"rows": int(len(t.sample)),
                         "note": "percentiles (p01..p99) and inferred normal ranges are from a uniform sample of "
                                 "this many rows; every other figure is over all rows"}
    if schema.target:
        pos = t.ones(schema.target)
        out["class_balance"] = {"positives": pos, "negatives": int(t.rows - pos),
                                "positive_rate": float(pos / t.rows) if t.rows else 0.0}
    if schema.failure_modes:
        out["failure_modes"] = {m: t.ones(m) for m in schema.failure_modes}
    if schema.unit:
        per_unit = t.value_counts(schema.unit)
        if len(per_unit):
            out["units"] = {"count": int(per_unit.size), "rows_min": int(per_unit.min()),
                            "rows_max": int(per_unit.max())}
    return out


def profile(df: pd.DataFrame, schema: DatasetSchema) -> dict[str, Any]:
    return profile_summary(summarize_frame(df), schema)


def profile_parquet(path: Path, schema: DatasetSchema) -> dict[str, Any]:
    """The same profile, streamed over the file's record batches: memory stays bounded by a batch."""
    return profile_summary(summarize_parquet(path), schema)

"""Batch scoring: a stored dataset streamed through a model in chunks, written as a new Parquet file.

Memory is bounded by the chunk size: the source is read one record batch at a time and every
scored chunk is appended to the output file before the next is read. RUL models need each unit's
earlier rows for their rolling windows, so the last rows of every unit seen so far are carried
into the next chunk; for that a unit's rows must come in time order across the file (rows inside
one chunk may be in any order). Every output row keeps all source columns and gains the model's
outputs, `predicted_*` columns.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ml.rul import RulModel, time_values
from ml.training import FailureModel

Progress = Callable[[float, str], None]


class BatchStopped(Exception):
    pass


class BatchInputError(ValueError):
    """The dataset can't be scored by this model; the message says what to change."""


def required_columns(model: FailureModel | RulModel) -> list[str]:
    if isinstance(model, RulModel):
        return model.builder.required_columns
    b = model.builder
    return list(dict.fromkeys([*b.numeric_, *b.categorical_, *[c for e in b.derived_.values() for c in e.columns]]))


def numeric_columns(model: FailureModel | RulModel) -> list[str]:
    """Input columns the model reads as numbers."""
    if isinstance(model, RulModel):
        return [*model.builder.settings_, *model.builder.sensors_]
    return [c for c in required_columns(model) if c not in model.builder.categorical_]


def output_columns(model: FailureModel | RulModel) -> list[str]:
    if isinstance(model, RulModel):
        return ["predicted_rul"]
    return ["predicted_failure_probability", "predicted_failure",
            *[f"predicted_{m}_probability" for m in model.mode_estimators]]


def score_frame(model: FailureModel | RulModel, df: pd.DataFrame) -> dict[str, np.ndarray]:
    """The model's outputs for every row of `df` (for RUL: each row from its unit's rows so far)."""
    if isinstance(model, RulModel):
        return {"predicted_rul": model.predict_rows(df)}
    p, modes = model.predict_with_modes(df)
    out = {"predicted_failure_probability": p, "predicted_failure": p >= model.threshold}
    out.update({f"predicted_{m}_probability": v for m, v in modes.items()})
    return out


@dataclass
class BatchResult:
    rows: int
    chunks: int
    seconds: float
    rows_per_second: float
    peak_rss_mb: float
    coerced_values: dict[str, int] = field(default_factory=dict)


class _RulCarry:
    """The last rows of every unit seen so far, prepended to the next chunk."""

    def __init__(self, model: RulModel) -> None:
        self.unit, self.time = model.builder.schema.unit, model.builder.schema.time
        self.keep = max(model.builder.windows) - 1
        self.tail: pd.DataFrame | None = None

    def extend(self, chunk: pd.DataFrame) -> tuple[pd.DataFrame, int]:
        if self.tail is None or self.tail.empty:
            return chunk, 0
        last = pd.Series(time_values(self.tail[self.time]), index=self.tail.index).groupby(
            self.tail[self.unit].to_numpy()).max()
        first = pd.Series(time_values(chunk[self.time]), index=chunk.index).groupby(chunk[self.unit].to_numpy()).min()
        both = first.index.intersection(last.index)
        late = both[(first[both] < last[both]).to_numpy()]
        if len(late):
            raise BatchInputError(f"rows of unit {late[0]!r} are not in time order across the dataset; RUL batch "
                                  f"scoring streams the file, so sort it by '{self.unit}' then '{self.time}'")
        tail = self.tail[self.tail[self.unit].isin(both)]
        return pd.concat([tail, chunk], ignore_index=True), len(tail)

    def remember(self, frame: pd.DataFrame) -> None:
        t = time_values(frame[self.time])
        ordered = frame.assign(_t=t).sort_values([self.unit, "_t"], kind="stable")
        tail = ordered.groupby(self.unit, sort=False).tail(self.keep).drop(columns="_t")
        if self.tail is not None and not self.tail.empty:
            tail = pd.concat([self.tail[~self.tail[self.unit].isin(tail[self.unit])], tail], ignore_index=True)
        self.tail = tail.reset_index(drop=True)


def score_parquet(model: FailureModel | RulModel, src: Path, dst: Path, *, chunk_rows: int = 100_000,
                  progress: Progress | None = None, should_stop: Callable[[], bool] | None = None) -> BatchResult:
    import psutil

    say = progress or (lambda f, m: None)
    stop = should_stop or (lambda: False)
    proc = psutil.Process()
    peak = proc.memory_info().rss
    sampling = threading.Event()

    def sample() -> None:  # resident memory every 50 ms: the peak inside a chunk, not only between chunks
        nonlocal peak
        while not sampling.wait(0.05):
            peak = max(peak, proc.memory_info().rss)

    sampler = threading.Thread(target=sample, name="batch-rss", daemon=True)
    sampler.start()
    try:
        return _score(model, src, dst, chunk_rows, say, stop, lambda: max(peak, proc.memory_info().rss))
    finally:
        sampling.set()
        sampler.join()


def _score(model: FailureModel | RulModel, src: Path, dst: Path, chunk_rows: int, say: Progress,
           stop: Callable[[], bool], peak_rss: Callable[[], int]) -> BatchResult:
    source = pq.ParquetFile(src)
    total = source.metadata.num_rows
    needed = required_columns(model)
    missing = [c for c in needed if c not in source.schema_arrow.names]
    if missing:
        raise BatchInputError(f"the dataset lacks column(s) the model needs: {', '.join(map(str, missing))}")
    numeric = numeric_columns(model)
    outputs = output_columns(model)
    clash = [c for c in outputs if c in source.schema_arrow.names]
    if clash:
        raise BatchInputError(f"the dataset already has column(s) {', '.join(clash)}; rename them before scoring")
    out_schema = source.schema_arrow
    for c in outputs:
        out_schema = out_schema.append(pa.field(c, pa.bool_() if c == "predicted_failure" else pa.float64()))
    carry = _RulCarry(model) if isinstance(model, RulModel) else None
    coerced: dict[str, int] = {}
    started, done, chunks = time.perf_counter(), 0, 0
    with pq.ParquetWriter(dst, out_schema, compression="zstd") as writer:
        for batch in source.iter_batches(batch_size=chunk_rows):
            if stop():
                raise BatchStopped()
            chunk = batch.to_pandas()
            frame = chunk
            for c in numeric:  # mistyped values score as missing, and are counted
                if not pd.api.types.is_numeric_dtype(frame[c]):
                    values = pd.to_numeric(frame[c], errors="coerce")
                    bad = int((values.isna() & frame[c].notna()).sum())
                    if bad:
                        coerced[c] = coerced.get(c, 0) + bad
                    frame = frame.assign(**{c: values})
            offset = 0
            if carry is not None:
                frame, offset = carry.extend(frame)
                carry.remember(frame)
            scores = score_frame(model, frame)
            table = pa.Table.from_pandas(chunk.assign(**{k: v[offset:] for k, v in scores.items()}),
                                         schema=out_schema, preserve_index=False)
            writer.write_table(table)
            done += len(chunk)
            chunks += 1
            say(done / max(total, 1), f"scored {done:,} of {total:,} rows")
    seconds = time.perf_counter() - started
    return BatchResult(rows=done, chunks=chunks, seconds=seconds, rows_per_second=done / seconds if seconds else 0.0,
                       peak_rss_mb=peak_rss() / 2**20, coerced_values=coerced)

"""TVAE generators of synthetic sensor data that keep the rare failures (domain code: no Celery, no web).

`train_tvae(df, schema, ...)` fits SDV's `TVAESynthesizer` (SDV 2.0 API: data as `{"table": df}`)
and reports every epoch's mean loss as ctgan's training loop records it, so progress is real and
a stop request ends training within one epoch. `TvaeGenerator.sample(rows, failure_rate=...)`
keeps the real failure rate by default (or any rate asked for) by rejection: rows are generated in
batches and kept until each class has its quota, within a budget; a generator that produces too
few failures for the budget is reported as such, never padded with copies.

What TVAE learns: the joint distribution of single rows. It knows nothing of sequences, so the
schema's `unit` and `time` columns are left out (a synthetic row is not part of any unit's
history), as are `ignore` columns (ids such as UDI): synthetic rows get no made-up ids.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from ctgan.synthesizers.tvae import TVAE
from sdv.single_table import TVAESynthesizer
from sdv.single_table.ctgan import _validate_no_category_dtype, detect_discrete_columns

from ml.expressions import Expression
from ml.schema import DatasetSchema

TABLE = "table"
NORMAL, NO_MODE = "normal", "no mode"
Progress = Callable[[float, str, dict[str, Any]], None]


class GanStopped(Exception):
    """A stop request ended training (checked after every epoch)."""


class SamplingBudgetExceeded(ValueError):
    """The generator did not produce enough rows of a class within the sampling budget."""


class ReportingTVAE(TVAE):
    """ctgan's TVAE; each epoch's losses are handed to `on_epoch` the moment the loop records them."""

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        hook = self.__dict__.get("on_epoch")
        if name == "loss_values" and hook is not None and len(value):
            epoch = int(value["Epoch"].iloc[-1])
            hook(epoch, float(value.loc[value["Epoch"] == epoch, "Loss"].astype(float).mean()))


class ReportingTVAESynthesizer(TVAESynthesizer):
    """SDV 2.0's TVAESynthesizer, training the reporting TVAE above (its `_fit`, otherwise unchanged)."""

    on_epoch: Callable[[int, float], None] | None = None

    def _fit(self, processed_data: pd.DataFrame) -> None:
        _validate_no_category_dtype(processed_data)
        transformers = self._data_processor._hyper_transformer.field_transformers
        discrete = detect_discrete_columns(self.metadata, processed_data, transformers)
        self._model = ReportingTVAE(**self._model_kwargs)
        object.__setattr__(self._model, "on_epoch", self.on_epoch)
        try:
            self._model.fit(processed_data, discrete_columns=discrete)
        finally:
            object.__setattr__(self._model, "on_epoch", None)  # never pickled with the model


def modelled_columns(df: pd.DataFrame, schema: DatasetSchema) -> list[str]:
    left_out = set(schema.ignore) | {c for c in (schema.unit, schema.time, schema.rul) if c}
    return [c for c in df.columns if c not in left_out]


def synthetic_schema(schema: DatasetSchema, columns: list[str]) -> DatasetSchema:
    """The source schema restricted to the generated columns (what a synthetic dataset carries)."""
    keep = set(columns)
    derived = {k: v for k, v in schema.derived.items()
               if all(c in keep for c in Expression(v).columns)}
    return schema.model_copy(update={
        "ignore": [c for c in schema.ignore if c in keep], "unit": None, "time": None,
        "rul": schema.rul if schema.rul in keep else None,
        "categorical": [c for c in schema.categorical if c in keep],
        "failure_modes": [c for c in schema.failure_modes if c in keep],
        "target": schema.target if schema.target in keep else None,
        "derived": derived, "columns": {k: v for k, v in schema.columns.items() if k in keep}})


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class TvaeGenerator:
    synthesizer: Any
    columns: list[str]
    schema: dict[str, Any]
    real_failure_rate: float | None
    real_mode_rates: dict[str, float]
    params: dict[str, Any]
    failure_strata: dict[str, int] = field(default_factory=dict)  # real failures per stratum
    loss_curve: list[float] = field(default_factory=list)
    training_seconds: float = 0.0
    device: str = "cpu"

    @property
    def target(self) -> str | None:
        return self.schema.get("target")

    def strata(self, frame: pd.DataFrame) -> pd.Series:
        """Each row's stratum: `normal`, or for a failure its first flagged mode (schema order) or `no mode`."""
        target = self.target
        failed = pd.to_numeric(frame[target], errors="coerce").fillna(0).round().astype(int) == 1
        out = pd.Series(np.where(failed, NO_MODE, NORMAL), index=frame.index, dtype=object)
        for m in reversed(list(self.real_mode_rates)):  # the first mode in schema order wins
            flagged = pd.to_numeric(frame[m], errors="coerce").fillna(0).round().astype(int) == 1
            out[failed & flagged] = m
        return out

    def quotas(self, rows: int, failure_rate: float | None = None,
               mode_counts: dict[str, int] | None = None) -> dict[str, int]:
        """Rows wanted per stratum. Default: the real failure rate, split over modes as the real
        failures were. `failure_rate` changes the failure total (same split); `mode_counts` fixes
        the count of the named modes, the rest of the failures keep the real split."""
        rate = self.real_failure_rate if failure_rate is None else failure_rate
        if not 0.0 <= rate <= 1.0:
            raise ValueError("failure_rate must be within [0, 1]")
        unknown = sorted(set(mode_counts or {}) - set(self.failure_strata))
        if unknown:
            raise ValueError(f"unknown failure mode(s) {unknown}; the generator knows {sorted(self.failure_strata)}")
        failures = int(round(rows * rate))
        fixed = {m: int(c) for m, c in (mode_counts or {}).items()}
        if sum(fixed.values()) > failures:
            failures = sum(fixed.values()) if failure_rate is None else failures
        if sum(fixed.values()) > failures or failures > rows:
            raise ValueError(f"mode_counts ask for {sum(fixed.values())} failure rows, more than the "
                             f"{min(failures, rows)} the request allows")
        free = {k: v for k, v in self.failure_strata.items() if k not in fixed}
        total = sum(free.values())
        left = failures - sum(fixed.values())
        raw = {k: left * v / total for k, v in free.items()} if total else {NO_MODE: float(left)}
        split = {k: int(x) for k, x in raw.items()}
        for k in sorted(raw, key=lambda k: raw[k] - split[k], reverse=True)[: left - sum(split.values())]:
            split[k] += 1  # largest remainders, so the counts add up exactly
        return {NORMAL: rows - failures, **fixed, **split}

    def sample(self, rows: int, *, failure_rate: float | None = None, mode_counts: dict[str, int] | None = None,
               seed: int = 0, budget_factor: int = 200, batch_rows: int = 10_000) -> pd.DataFrame:
        """`rows` synthetic rows. With a target column, failures make up `failure_rate` of them
        (default: the real rate) with the real split over modes (or `mode_counts`), kept by
        rejection from at most `budget_factor` × rows generated rows."""
        if rows <= 0:
            raise ValueError("rows must be positive")
        _seed_everything(seed)
        self.synthesizer.reset_sampling()
        if self.target is None:
            return self._generate(rows).reset_index(drop=True)
        want = self.quotas(rows, failure_rate, mode_counts)
        kept: list[pd.DataFrame] = []
        have = dict.fromkeys(want, 0)
        drawn = 0
        while any(have[k] < want[k] for k in want):
            if drawn >= budget_factor * rows:
                short = {k: f"{have[k]:,} of {want[k]:,}" for k in want if have[k] < want[k]}
                kinds = "normal" if list(short) == [NORMAL] else "failure"
                raise SamplingBudgetExceeded(
                    f"after {drawn:,} generated rows some strata are short ({short}): the generator rarely produces "
                    f"those {kinds} rows; train with more epochs or ask for counts nearer the generator's own")
            batch = self._generate(batch_rows)
            drawn += len(batch)
            labels = self.strata(batch)
            for k in want:
                need = want[k] - have[k]
                if need > 0:
                    part = batch[labels == k].head(need)
                    kept.append(part)
                    have[k] += len(part)
        out = pd.concat(kept, ignore_index=True)
        return out.sample(frac=1.0, random_state=seed).reset_index(drop=True)

    def _generate(self, n: int) -> pd.DataFrame:
        out = self.synthesizer.sample(num_rows=n)
        return out[TABLE] if isinstance(out, dict) else out


def _rebalanced(data: pd.DataFrame, target: str, share: float, seed: int) -> pd.DataFrame:
    """Training rows with the failure rows repeated until they are about `share` of the rows (at
    most 20 copies each). Plain TVAE under-generates a 3 % class (AI4I: 2 % at 300 epochs, 0.3 % at
    30); learning from a rebalanced table, then sampling back to the real rate by rejection, keeps
    failures without inventing them. The privacy report measures what the repetition costs."""
    y = pd.to_numeric(data[target], errors="coerce").fillna(0).astype(int)
    failures, normal = data[y == 1], data[y != 1]
    if failures.empty or normal.empty or len(failures) / len(data) >= share:
        return data
    copies = int(min(20, max(1, round(share * len(normal) / ((1 - share) * len(failures))))))
    out = pd.concat([normal, *[failures] * copies], ignore_index=True)
    return out.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def train_tvae(df: pd.DataFrame, schema: DatasetSchema, *, epochs: int = 300, batch_size: int = 500,
               embedding_dim: int = 128, compress_dims: tuple[int, ...] = (128, 128),
               decompress_dims: tuple[int, ...] = (128, 128), seed: int = 0, enable_gpu: str | bool = "auto",
               failure_share: float = 0.25,
               progress: Progress | None = None, should_stop: Callable[[], bool] | None = None) -> TvaeGenerator:
    import torch
    from sdv.metadata import Metadata

    columns = modelled_columns(df, schema)
    data = df[columns].reset_index(drop=True)
    target = schema.target if schema.target in columns else None
    train = _rebalanced(data, target, failure_share, seed) if target else data
    gpu = torch.cuda.is_available() if enable_gpu == "auto" else bool(enable_gpu)
    metadata = Metadata.detect_from_dataframes({TABLE: train})
    for c in [*schema.label_columns(), *schema.categorical]:
        if c in columns and c != schema.rul:
            metadata.update_column(column_name=c, sdtype="categorical", table_name=TABLE)
    synth = ReportingTVAESynthesizer(metadata, epochs=epochs, batch_size=batch_size, embedding_dim=embedding_dim,
                compress_dims=tuple(compress_dims), decompress_dims=tuple(decompress_dims), enable_gpu=gpu)
    curve: list[float] = []
    say = progress or (lambda f, m, x: None)
    stop = should_stop or (lambda: False)

    def on_epoch(epoch: int, loss: float) -> None:
        curve.append(loss)
        say((epoch + 1) / epochs, f"epoch {epoch + 1}/{epochs}: loss {loss:.4f}", {"epoch": epoch + 1, "loss": loss})
        if stop():
            raise GanStopped()

    synth.on_epoch = on_epoch
    _seed_everything(seed)
    started = time.perf_counter()
    try:
        synth.fit({TABLE: train})
    finally:
        synth.on_epoch = None
    seconds = time.perf_counter() - started
    if gpu:  # a model trained on a GPU must load and sample on a CPU-only machine
        synth._model.decoder.to("cpu")
        synth._model._device = torch.device("cpu")
    rate = float(pd.to_numeric(data[target], errors="coerce").fillna(0).mean()) if target else None
    modes = {m: float(pd.to_numeric(data[m], errors="coerce").fillna(0).mean())
             for m in schema.failure_modes if m in columns}
    gen = TvaeGenerator(synthesizer=synth, columns=columns, schema=schema.model_dump(mode="json"),
                        real_failure_rate=rate, real_mode_rates=modes, params={})
    strata = gen.strata(data).value_counts() if target else pd.Series(dtype=int)
    gen.failure_strata = {str(k): int(v) for k, v in strata.items() if k != NORMAL}
    params = {"epochs": epochs, "batch_size": batch_size, "embedding_dim": embedding_dim,
              "compress_dims": list(compress_dims), "decompress_dims": list(decompress_dims), "seed": seed,
              "enable_gpu": enable_gpu, "failure_share_in_training": failure_share if target else None,
              "training_rows": len(train), "columns_left_out": [c for c in df.columns if c not in columns]}
    gen.params, gen.loss_curve, gen.training_seconds, gen.device = params, curve, seconds, "cuda" if gpu else "cpu"
    return gen

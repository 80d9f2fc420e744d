"""TVAE generators of synthetic sensor data that keep the rare failures (domain code: no Celery, no web).

`train_tvae(df, schema, ...)` fits SDV's `TVAESynthesizer` (SDV 2.0 API: data as `{"table": df}`)
and reports every epoch's mean loss as ctgan's training loop records it, so progress is real; a
stop request is checked before every gradient step, so it ends training within one batch.
`TvaeGenerator.sample(rows, failure_rate=...)` keeps the real failure rate by default (or any rate
asked for) by rejection: rows are generated in batches (a stop request is checked before each) and
kept until each class has its quota, within a budget of generated rows; a generator that produces
too few failures for the budget is reported as such, never padded with copies.

What a request may cost is checked first by GAN/limits.py (at submit time and again in the job).

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
from ctgan.synthesizers.base import random_state
from ctgan.synthesizers.tvae import TVAE
from sdv.single_table import TVAESynthesizer
from sdv.single_table.ctgan import _validate_no_category_dtype, detect_discrete_columns

from GAN.limits import TvaeLimits, check_tvae_config
from ml.expressions import Expression
from ml.schema import DatasetSchema

TABLE = "table"
NORMAL, NO_MODE = "normal", "no mode"
RARE_FAILURES, RARE_NORMAL = "other failures", "other normal"
MIN_SUPPORT = 5  # label combinations with fewer real rows are pooled (see TvaeGenerator.pooled)
BUDGET_FACTOR = 200  # sampling generates at most this many rows per row asked for (TvaeGenerator.sample)
Progress = Callable[[float, str, dict[str, Any]], None]


class GanStopped(Exception):
    """A stop request ended training or sampling (checked before every batch)."""


class SamplingBudgetExceeded(ValueError):
    """The generator did not produce enough rows of a class within the sampling budget."""


class ReportingTVAE(TVAE):
    """ctgan's TVAE with two changes to its training loop (the model, loss and sampling are ctgan's):

    * each epoch's mean loss goes to `on_epoch` as soon as the epoch ends (real progress), and
      `should_stop` is asked before every gradient step (GanStopped: a stop ends training within
      one batch, however large the model or the epoch);
    * with `failure_rows` set, each epoch is drawn by `FailureEmphasisSampler`: the same number of
      rows as plain TVAE (so the same number of gradient steps and the same time), with the failure
      rows repeated `failure_copies` times and a fresh random subset of the normal rows filling the
      rest.
    """

    on_epoch: Callable[[int, float], None] | None = None
    should_stop: Callable[[], bool] | None = None
    failure_rows: np.ndarray | None = None
    failure_copies: int = 1
    sampler_seed: int = 0

    @random_state
    def fit(self, train_data: pd.DataFrame, discrete_columns: Any = ()) -> None:
        import torch
        from ctgan.data_transformer import DataTransformer
        from ctgan.synthesizers.tvae import Decoder, Encoder, _loss_function
        from torch.optim import Adam
        from torch.utils.data import DataLoader, TensorDataset

        self.transformer = DataTransformer()
        self.transformer.fit(train_data, discrete_columns)
        data = self.transformer.transform(train_data)
        dataset = TensorDataset(torch.from_numpy(data.astype("float32")).to(self._device))
        sampler = None
        if self.failure_rows is not None and self.failure_copies > 1:
            sampler = FailureEmphasisSampler(self.failure_rows, self.failure_copies, self.sampler_seed)
        loader = DataLoader(dataset, batch_size=self.batch_size, shuffle=sampler is None, sampler=sampler,
                            drop_last=False)
        data_dim = self.transformer.output_dimensions
        encoder = Encoder(data_dim, self.compress_dims, self.embedding_dim).to(self._device)
        self.decoder = Decoder(self.embedding_dim, self.decompress_dims, data_dim).to(self._device)
        optimizer = Adam(list(encoder.parameters()) + list(self.decoder.parameters()), weight_decay=self.l2scale)
        frames = []
        for epoch in range(self.epochs):
            losses = []
            for (real,) in loader:
                if self.should_stop is not None and self.should_stop():
                    raise GanStopped()
                optimizer.zero_grad()
                real = real.to(self._device)
                mu, std, logvar = encoder(real)
                rec, sigmas = self.decoder(torch.randn_like(std) * std + mu)
                loss_1, loss_2 = _loss_function(rec, real, sigmas, mu, logvar,
                                                self.transformer.output_info_list, self.loss_factor)
                loss = loss_1 + loss_2
                loss.backward()
                optimizer.step()
                self.decoder.sigma.data.clamp_(0.01, 1.0)
                losses.append(loss.detach().cpu().item())
            frames.append(pd.DataFrame({"Epoch": epoch, "Batch": range(len(losses)), "Loss": losses}))
            if self.on_epoch is not None:
                self.on_epoch(epoch, float(np.mean(losses)))
        self.loss_values = pd.concat(frames, ignore_index=True) if frames else self.loss_values


class FailureEmphasisSampler:
    """Row order for one epoch of `n` rows: every failure row `copies` times, and as many normal
    rows as fill the epoch, a fresh random subset each epoch (without replacement), shuffled
    together. Every epoch has exactly the rows of a plain epoch, so failure emphasis costs no
    training time; across epochs every normal row is still seen."""

    def __init__(self, failure_rows: np.ndarray, copies: int, seed: int) -> None:
        self.failure = np.flatnonzero(failure_rows)
        self.normal = np.flatnonzero(~failure_rows)
        self.n = len(failure_rows)
        self.copies = int(max(1, min(copies, (self.n - 1) // max(1, len(self.failure)))))
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):  # noqa: ANN204
        fill = self.n - self.copies * len(self.failure)
        rows = np.concatenate([np.tile(self.failure, self.copies), self.rng.permutation(self.normal)[:fill]])
        return iter(self.rng.permutation(rows).tolist())


class ReportingTVAESynthesizer(TVAESynthesizer):
    """SDV 2.0's TVAESynthesizer training the TVAE above (its `_fit`, otherwise unchanged).
    `failure_mask` (a boolean Series on the training frame's index) switches on failure emphasis."""

    on_epoch: Callable[[int, float], None] | None = None
    should_stop: Callable[[], bool] | None = None
    failure_mask: pd.Series | None = None
    failure_copies: int = 1
    sampler_seed: int = 0

    def _fit(self, processed_data: pd.DataFrame) -> None:
        _validate_no_category_dtype(processed_data)
        transformers = self._data_processor._hyper_transformer.field_transformers
        discrete = detect_discrete_columns(self.metadata, processed_data, transformers)
        self._model = ReportingTVAE(**self._model_kwargs)
        model = self._model
        model.on_epoch, model.should_stop = self.on_epoch, self.should_stop
        if self.failure_mask is not None:
            mask = self.failure_mask.reindex(processed_data.index)
            if mask.isna().any():
                raise RuntimeError("SDV preprocessing changed the training rows; failure emphasis cannot align them")
            model.failure_rows = mask.to_numpy(dtype=bool)
            model.failure_copies, model.sampler_seed = self.failure_copies, self.sampler_seed
        try:
            model.fit(processed_data, discrete_columns=discrete)
        finally:  # none of this is pickled with the model
            model.on_epoch, model.should_stop, model.failure_rows = None, None, None


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
    failure_strata: dict[str, int] = field(default_factory=dict)  # real rows per label combination (`strata`)
    loss_curve: list[float] = field(default_factory=list)
    training_seconds: float = 0.0
    device: str = "cpu"

    @property
    def target(self) -> str | None:
        return self.schema.get("target")

    def strata(self, frame: pd.DataFrame) -> pd.Series:
        """Each row's label combination: `normal` (no failure, no mode), a failure's flagged modes
        in schema order joined by `+` (`HDF`, `HDF+OSF`) or `no mode`, and for a mode flagged
        without a failure `normal+<modes>` (AI4I's RNF rows mostly have no machine failure)."""
        def flag(c: str) -> np.ndarray:
            return pd.to_numeric(frame[c], errors="coerce").fillna(0).round().astype(int).to_numpy() == 1

        modes = list(self.real_mode_rates)
        code = flag(self.target).astype(np.int64)
        for i, m in enumerate(modes):
            code |= flag(m).astype(np.int64) << (i + 1)
        names = {}
        for c in np.unique(code):
            flagged = "+".join(m for i, m in enumerate(modes) if c >> (i + 1) & 1)
            names[c] = (flagged or NO_MODE) if c & 1 else (f"{NORMAL}+{flagged}" if flagged else NORMAL)
        return pd.Series([names[c] for c in code], index=frame.index, dtype=object)

    def pooled(self, frame: pd.DataFrame, fixed: set[str] | frozenset[str] = frozenset()) -> pd.Series:
        """`strata`, with the label combinations that have fewer than MIN_SUPPORT real rows pooled
        into `other failures` / `other normal`: a combination seen once or twice (AI4I has one
        TWF+PWF+OSF row) is not something a generator can be asked to reproduce exactly, but rows
        of those combinations are still kept in their real number as a group. Combinations the
        real data never has are never accepted."""
        return self.strata(frame).map(lambda k: self._group(k, fixed))

    def _group(self, key: str, fixed: set[str] | frozenset[str] = frozenset()) -> str:
        """A combination's sampling stratum. Combinations carrying a mode named in `mode_counts`
        (`fixed`) are never pooled: their counts are exact."""
        real = self.failure_strata
        if key not in real:
            return "unseen"
        if real[key] >= MIN_SUPPORT or self._decode(key)[1] & set(fixed):
            return key
        return RARE_FAILURES if self._decode(key)[0] else RARE_NORMAL

    @staticmethod
    def _decode(key: str) -> tuple[bool, set[str]]:
        if key == NORMAL:
            return False, set()
        if key.startswith(NORMAL + "+"):
            return False, set(key[len(NORMAL) + 1:].split("+"))
        return True, set() if key == NO_MODE else set(key.split("+"))

    def quotas(self, rows: int, failure_rate: float | None = None,
               mode_counts: dict[str, int] | None = None) -> dict[str, int]:
        """Rows wanted per label combination (keys as `pooled` gives them). Default: the real failure rate, and
        within failures and non-failures the real split over combinations, so each mode's count
        follows the real one too. `failure_rate` changes the failure total (same split);
        `mode_counts` fixes how many rows carry each named mode (spread over the real combinations
        that carry that mode and no other named one); the rest keep the real split."""
        rate = self.real_failure_rate if failure_rate is None else failure_rate
        if not 0.0 <= rate <= 1.0:
            raise ValueError("failure_rate must be within [0, 1]")
        real = self.failure_strata
        known = sorted({m for k in real for m in self._decode(k)[1]})
        unknown = sorted(set(mode_counts or {}) - set(known))
        if unknown:
            raise ValueError(f"unknown failure mode(s) {unknown}; the generator knows {known}")
        fixed = {m: int(c) for m, c in (mode_counts or {}).items()}
        if any(c < 0 for c in fixed.values()):
            raise ValueError("mode_counts must not be negative")
        want: dict[str, int] = dict.fromkeys(real, 0)
        fixed_failures = 0
        for m, count in fixed.items():
            # combinations carrying m and no other named mode
            homes = {k: v for k, v in real.items() if self._decode(k)[1] & set(fixed) == {m}}
            if count and not homes:
                others = sorted({o for k in real if m in self._decode(k)[1] for o in self._decode(k)[1]} - {m})
                raise ValueError(f"mode {m} never occurs in the real data without {', '.join(others)}, which "
                                 f"mode_counts also names; give a count for only one of them")
            split = _largest_remainders(count, homes)
            for k, v in split.items():
                want[k] += v
                fixed_failures += v if self._decode(k)[0] else 0
        fixed_rows = sum(want.values())
        failures = int(round(rows * rate))
        if failure_rate is None:
            failures = max(failures, fixed_failures)
        if fixed_failures > failures or fixed_rows > rows:
            raise ValueError(f"mode_counts ask for {fixed_rows} rows ({fixed_failures} failures), more than the "
                             f"{rows} rows and {failures} failures the request allows")
        free = {k: v for k, v in real.items() if not (self._decode(k)[1] & set(fixed))}
        free_failed = {k: v for k, v in free.items() if self._decode(k)[0]}
        free_normal = {k: v for k, v in free.items() if not self._decode(k)[0]}
        left_failed, left_normal = failures - fixed_failures, rows - failures - (fixed_rows - fixed_failures)
        if left_failed and not any(self._decode(k)[0] for k in real):
            raise ValueError("the generator was trained on data without failure rows, so it cannot produce "
                             "failures; ask for failure_rate 0")
        if left_failed and not free_failed:
            raise ValueError(f"{left_failed} more failure rows are needed but every failure combination the "
                             f"real data has carries a mode fixed by mode_counts; raise those counts or the "
                             f"failure_rate accordingly")
        if left_normal < 0 or (left_normal and not free_normal):
            raise ValueError("mode_counts and failure_rate leave no consistent number of normal rows")
        for part in (_largest_remainders(left_failed, free_failed), _largest_remainders(left_normal, free_normal)):
            for k, v in part.items():
                want[k] += v
        out: dict[str, int] = {}
        for k, v in want.items():
            if v > 0:
                key = self._group(k, set(fixed))
                out[key] = out.get(key, 0) + v
        return out

    def _failing(self, key: str) -> bool:
        return key == RARE_FAILURES or (key != RARE_NORMAL and self._decode(key)[0])

    def sample(self, rows: int, *, failure_rate: float | None = None, mode_counts: dict[str, int] | None = None,
               seed: int = 0, budget_factor: int = BUDGET_FACTOR, exact_factor: int = 20, batch_rows: int = 10_000,
               report: dict[str, Any] | None = None, should_stop: Callable[[], bool] | None = None,
               progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
        """`rows` synthetic rows. With a target column, failures make up exactly `failure_rate` of
        them (default: the real rate), split over label combinations as the real rows are (or with
        `mode_counts` rows per named mode), kept by rejection sampling.

        Up to `exact_factor` × rows generated rows (at least 100,000; at most half the budget of
        `budget_factor` × rows, itself at least two batches) every combination is held to
        its quota. A combination still short after that (a generator may never produce a label seen
        a dozen times, such as AI4I's RNF without a failure) has its shortfall filled by other real
        combinations of the same failure status, never by a combination the real data lacks, and
        `report["substituted"]` says which and how many. Totals of failures and of rows named in
        `mode_counts` are never relaxed: if they are not met within `budget_factor` × rows,
        `SamplingBudgetExceeded` says which are short. So no request generates more than
        max(`budget_factor` × rows, 2 × `batch_rows`) rows, in batches of `batch_rows`; before each
        batch `should_stop` is asked (GanStopped) and `progress(generated, kept)` told."""
        if rows <= 0:
            raise ValueError("rows must be positive")
        stop = should_stop or (lambda: False)
        say = progress or (lambda drawn, kept: None)
        _seed_everything(seed)
        self.synthesizer.reset_sampling()
        info = report if report is not None else {}
        if self.target is None:
            parts, made = [], 0
            while made < rows:
                if stop():
                    raise GanStopped()
                say(made, made)
                parts.append(self._generate(min(batch_rows, rows - made)))
                made += len(parts[-1])
            info.update(generated_rows=rows, substituted={})
            return pd.concat(parts, ignore_index=True)
        want = self.quotas(rows, failure_rate, mode_counts)
        fixed = set(mode_counts or {})
        strict = {k for k in want if k in self.failure_strata and self._decode(k)[1] & fixed}
        budget = max(budget_factor * rows, 2 * batch_rows)  # room to fill substitutions after relaxing
        info["quotas"] = dict(want)
        kept: list[pd.DataFrame] = []
        have = dict.fromkeys(want, 0)
        pool = {True: 0, False: 0}  # rows owed to any real combination of that failure status
        substituted: dict[str, int] = {}
        drawn, relaxed = 0, False
        while any(have[k] < want[k] for k in want) or any(pool.values()):
            if not relaxed and drawn >= min(max(exact_factor * rows, 100_000), budget // 2):
                relaxed = True
                for k in want:
                    if have[k] < want[k] and k not in strict:
                        substituted[k] = want[k] - have[k]
                        pool[self._failing(k)] += want[k] - have[k]
                        want[k] = have[k]
            if drawn >= budget:
                short = {k: f"{have[k]:,} of {want[k]:,}" for k in want if have[k] < want[k]}
                short.update({("any failure" if f else "any normal"): f"{n:,} more" for f, n in pool.items() if n})
                kinds = "failure" if any(self._failing(k) for k in short if k in want) or pool[True] else "normal"
                raise SamplingBudgetExceeded(
                    f"after {drawn:,} generated rows some strata are short ({short}): the generator rarely produces "
                    f"those {kinds} rows; train with more epochs or ask for counts nearer the generator's own")
            if stop():
                raise GanStopped()
            say(drawn, sum(have.values()))
            batch = self._generate(batch_rows)
            drawn += len(batch)
            raw = self.strata(batch)
            labels = raw.map(lambda k: self._group(k, fixed))
            free = pd.Series(True, index=batch.index)
            for k in want:
                need = want[k] - have[k]
                if need > 0:
                    part = batch[(labels == k) & free].head(need)
                    kept.append(part)
                    have[k] += len(part)
                    free[part.index] = False
            # substitutes: real combinations of the right status that carry no mode named in mode_counts
            failing = labels.map(lambda k: None if k == "unseen" else self._failing(k))
            carries_fixed = raw.map(lambda k: bool(fixed) and k in self.failure_strata and bool(self._decode(k)[1] & fixed))
            for status in (True, False):
                if pool[status]:
                    ok = (failing == status) & ~carries_fixed
                    part = batch[ok & free].head(pool[status])
                    kept.append(part)
                    pool[status] -= len(part)
                    free[part.index] = False
        info.update(generated_rows=drawn, substituted=substituted)
        out = pd.concat(kept, ignore_index=True)
        return out.sample(frac=1.0, random_state=seed).reset_index(drop=True)

    def _generate(self, n: int) -> pd.DataFrame:
        out = self.synthesizer.sample(num_rows=n)
        return out[TABLE] if isinstance(out, dict) else out


def _largest_remainders(total: int, weights: dict[str, int]) -> dict[str, int]:
    """`total` split in proportion to `weights`, as integers that add up exactly."""
    if total <= 0 or not weights:
        return {}
    whole = sum(weights.values())
    raw = {k: total * v / whole for k, v in weights.items()}
    out = {k: int(x) for k, x in raw.items()}
    for k in sorted(raw, key=lambda k: (raw[k] - out[k], weights[k]), reverse=True)[: total - sum(out.values())]:
        out[k] += 1
    return out


def failure_copies(failed: pd.Series, share: float) -> int:
    """How many times each failure row appears per training epoch so failures are about `share`
    of an epoch's rows (at most 20 copies). Plain TVAE under-generates a 3 % class (AI4I: 2 % at
    300 epochs, 0.3 % at 30); emphasising failures in training, then sampling back to the real rate
    by rejection, keeps failures without inventing them. The privacy report measures what the
    emphasis costs."""
    n, f = len(failed), int(failed.sum())
    if f == 0 or f == n or f / n >= share:
        return 1
    return int(min(20, max(1, round(share * n / f))))


def train_tvae(df: pd.DataFrame, schema: DatasetSchema, *, epochs: int = 300, batch_size: int = 500,
               embedding_dim: int = 128, compress_dims: tuple[int, ...] = (128, 128),
               decompress_dims: tuple[int, ...] = (128, 128), seed: int = 0, enable_gpu: str | bool = "auto",
               failure_share: float = 0.25, limits: TvaeLimits | None = None,
               progress: Progress | None = None, should_stop: Callable[[], bool] | None = None) -> TvaeGenerator:
    """A trained generator. With `limits`, the configuration is checked first (`check_tvae_config`);
    `should_stop` is asked before every gradient step and after every epoch (GanStopped)."""
    import torch
    from sdv.metadata import Metadata

    if limits is not None:
        check_tvae_config(epochs=epochs, batch_size=batch_size, embedding_dim=embedding_dim,
                          compress_dims=compress_dims, decompress_dims=decompress_dims, limits=limits)

    columns = modelled_columns(df, schema)
    data = df[columns].reset_index(drop=True)
    target = schema.target if schema.target in columns else None
    # Rare-event rows: a failure, or any mode flagged (AI4I's RNF rows mostly carry no failure).
    failed = None
    if target:
        labels = [target, *(m for m in schema.failure_modes if m in columns)]
        failed = (data[labels].apply(pd.to_numeric, errors="coerce").fillna(0).round() == 1).any(axis=1)
    copies = failure_copies(failed, failure_share) if target else 1
    gpu = torch.cuda.is_available() if enable_gpu == "auto" else bool(enable_gpu)
    metadata = Metadata.detect_from_dataframes({TABLE: data})
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

    synth.on_epoch, synth.should_stop = on_epoch, stop
    if copies > 1:
        synth.failure_mask, synth.failure_copies, synth.sampler_seed = failed, copies, seed
    _seed_everything(seed)
    started = time.perf_counter()
    try:
        synth.fit({TABLE: data})
    finally:
        synth.on_epoch, synth.should_stop, synth.failure_mask = None, None, None
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
    gen.failure_strata = {str(k): int(v) for k, v in strata.items()}
    params = {"epochs": epochs, "batch_size": batch_size, "embedding_dim": embedding_dim,
              "compress_dims": list(compress_dims), "decompress_dims": list(decompress_dims), "seed": seed,
              "enable_gpu": enable_gpu, "failure_share_in_training": failure_share if target else None,
              "failure_copies_per_epoch": copies, "training_rows": len(data), "columns_left_out": [c for c in df.columns if c not in columns]}
    gen.params, gen.loss_curve, gen.training_seconds, gen.device = params, curve, seconds, "cuda" if gpu else "cpu"
    return gen

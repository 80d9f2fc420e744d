"""What one TVAE training or sampling request may cost, checked before anything is allocated.

`check_tvae_config` and `check_sample_rows` are called by the API at submit time and by the job
again before it starts (a job queued before a limit was lowered is refused too), with `TvaeLimits`
from the settings: every layer width between 2 and TVAE_MAX_LAYER, epochs up to TVAE_MAX_EPOCHS,
batch size up to TVAE_MAX_BATCH, and the estimated training memory of those layers
(`tvae_memory_mb`) up to TVAE_MAX_MEMORY_MB: six layers each within the width limit still multiply
(width x width weights, batch x width activations), so the width limit alone admits a model of
tens of GB. Sample rows up to GAN_MAX_SAMPLE_ROWS. Light on purpose (no torch, no SDV): the API
imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class TvaeConfigError(ValueError):
    """A TVAE training or sampling request outside what the platform allows. `details` names the
    field and, for a limit, the setting (env name), the limit and the value seen."""

    def __init__(self, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.message, self.details = message, details

    @property
    def is_limit(self) -> bool:
        return "setting" in self.details


MIN_LAYER = 2


@dataclass(frozen=True)
class TvaeLimits:
    max_layer: int = 2_048
    max_epochs: int = 10_000
    max_batch: int = 50_000
    max_memory_mb: int = 2_048
    max_sample_rows: int = 5_000_000

    @classmethod
    def from_settings(cls, s: Any) -> TvaeLimits:
        return cls(max_layer=s.tvae_max_layer, max_epochs=s.tvae_max_epochs, max_batch=s.tvae_max_batch,
                   max_memory_mb=s.tvae_max_memory_mb, max_sample_rows=s.gan_max_sample_rows)


def _over(setting: str, limit: int | float, value: int | float, what: str, where: str) -> TvaeConfigError:
    return TvaeConfigError(f"{where}: {what} {value:,}; {setting} allows at most {limit:,}",
                           {"field": where, "setting": setting, "limit": limit, "value": value})


def tvae_memory_mb(*, batch_size: int, embedding_dim: int, compress_dims: tuple[int, ...] | list[int],
                   decompress_dims: tuple[int, ...] | list[int]) -> float:
    """Estimated training memory (MiB, float32) of the layers a request sets: 4 copies of their
    weights (values, gradients, Adam's two moments) and 3 batch x width activations per layer
    (kept for the backward pass, and its gradient). The first and last layers, whose size also
    depends on the dataset's encoded width, are not counted. Measured on AI4I (compress and
    decompress 3 x 1024, embedding 256, batch 4000, one epoch): 392 MiB estimated, 321 MiB of
    resident growth."""
    enc = [*compress_dims, embedding_dim]
    weights = sum(a * b + b for a, b in zip(enc, enc[1:], strict=False)) + compress_dims[-1] * embedding_dim  # mu+logvar
    dec = [embedding_dim, *decompress_dims]
    weights += sum(a * b + b for a, b in zip(dec, dec[1:], strict=False))
    widths = sum(compress_dims) + 3 * embedding_dim + sum(decompress_dims)
    return 4 * (4 * weights + 3 * batch_size * widths) / 2**20


def check_tvae_config(*, epochs: int, batch_size: int, embedding_dim: int, compress_dims: list[int] | tuple[int, ...],
                      decompress_dims: list[int] | tuple[int, ...], limits: TvaeLimits) -> None:
    """Refuse, before anything is allocated, a TVAE that the limits do not allow (TvaeConfigError)."""
    def whole(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    for name, dims in (("compress_dims", compress_dims), ("decompress_dims", decompress_dims)):
        if not dims:
            raise TvaeConfigError(f"body.{name}: needs at least one layer", {"field": f"body.{name}"})
        for i, w in enumerate(dims):
            where = f"body.{name}[{i}]"
            if not whole(w) or w < MIN_LAYER:
                raise TvaeConfigError(f"{where}: a layer has at least {MIN_LAYER} units, not {w!r}",
                                      {"field": where, "minimum": MIN_LAYER, "value": w})
            if w > limits.max_layer:
                raise _over("TVAE_MAX_LAYER", limits.max_layer, w, "layer width", where)
    if not whole(embedding_dim) or embedding_dim < MIN_LAYER:
        raise TvaeConfigError(f"body.embedding_dim: at least {MIN_LAYER}, not {embedding_dim!r}",
                              {"field": "body.embedding_dim", "minimum": MIN_LAYER, "value": embedding_dim})
    if embedding_dim > limits.max_layer:
        raise _over("TVAE_MAX_LAYER", limits.max_layer, embedding_dim, "embedding width", "body.embedding_dim")
    if not whole(epochs) or epochs < 1:
        raise TvaeConfigError(f"body.epochs: at least 1, not {epochs!r}", {"field": "body.epochs", "value": epochs})
    if epochs > limits.max_epochs:
        raise _over("TVAE_MAX_EPOCHS", limits.max_epochs, epochs, "epochs", "body.epochs")
    if not whole(batch_size) or batch_size < 2:
        raise TvaeConfigError(f"body.batch_size: at least 2, not {batch_size!r}",
                              {"field": "body.batch_size", "value": batch_size})
    if batch_size > limits.max_batch:
        raise _over("TVAE_MAX_BATCH", limits.max_batch, batch_size, "batch size", "body.batch_size")
    mb = tvae_memory_mb(batch_size=batch_size, embedding_dim=embedding_dim, compress_dims=compress_dims,
                        decompress_dims=decompress_dims)
    if mb > limits.max_memory_mb:
        raise _over("TVAE_MAX_MEMORY_MB", limits.max_memory_mb, round(mb), "estimated training memory (MiB) of "
                    "these layers at this batch size is", "body")


def check_sample_rows(rows: int, limits: TvaeLimits) -> None:
    if rows > limits.max_sample_rows:
        raise _over("GAN_MAX_SAMPLE_ROWS", limits.max_sample_rows, rows, "rows", "body.rows")

"""GAN: train TVAE generators, sample synthetic datasets, read a generator's report."""

from __future__ import annotations

import re
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import Field, model_validator

from core import datasets, registry
from core.settings import get_settings
from GAN.limits import TvaeConfigError, TvaeLimits, check_sample_rows, check_tvae_config
from server.deps import DbSession, SubmitJob, Viewer
from server.errors import ApiError
from server.schemas import JobOut, StrictModel
from server.strings import CheckedRoute

router = APIRouter(prefix="/api/v1", tags=["gan"], route_class=CheckedRoute)


class TvaeRequest(StrictModel):
    dataset_id: str
    # Upper bounds are settings (TVAE_MAX_EPOCHS, TVAE_MAX_BATCH, TVAE_MAX_LAYER, TVAE_MAX_MEMORY_MB), checked
    # by GAN.tvae.check_tvae_config at submit time and again by the job.
    epochs: int = Field(default=300, ge=1, description="at most TVAE_MAX_EPOCHS")
    batch_size: int = Field(default=500, ge=10, description="rows per step (SDV rounds to an even number); at most "
                            "TVAE_MAX_BATCH")
    embedding_dim: int = Field(default=128, ge=2, description="at most TVAE_MAX_LAYER")
    compress_dims: list[int] = Field(default=[128, 128], min_length=1, max_length=6,
                                     description="layer widths, each 2..TVAE_MAX_LAYER")
    decompress_dims: list[int] = Field(default=[128, 128], min_length=1, max_length=6,
                                       description="layer widths, each 2..TVAE_MAX_LAYER")
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    enable_gpu: Literal["auto"] | bool = "auto"  # not Literal[True, False]: that one accepts 0 and 1
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,100}$")


class SampleRequest(StrictModel):
    rows: int = Field(gt=0, description="at most GAN_MAX_SAMPLE_ROWS")
    failure_rate: float | None = Field(default=None, ge=0, le=1, description="default: the real rate")
    mode_counts: dict[str, int] | None = Field(default=None, description="exact failure rows per mode")
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    split: dict[str, float] | None = Field(default=None, examples=[{"train": 0.7, "val": 0.15, "test": 0.15}])
    name: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _check(self) -> SampleRequest:
        if self.split is not None:
            if not self.split or any(v <= 0 for v in self.split.values()) or abs(sum(self.split.values()) - 1) > 1e-6:
                raise ValueError("split must map names to positive fractions that add up to 1")
            if any(not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", k) for k in self.split):
                raise ValueError("split names must be 1-40 letters, digits, '_' or '-'")
        if self.mode_counts and any(v < 0 for v in self.mode_counts.values()):
            raise ValueError("mode_counts must be non-negative")
        return self


def _limits_error(exc: TvaeConfigError) -> ApiError:
    return ApiError(422, "limit_exceeded" if exc.is_limit else "invalid_request", exc.message, exc.details)


@router.post("/gan/models", status_code=202, response_model=JobOut, summary="Train a TVAE generator")
def train(body: TvaeRequest, session: DbSession, submit: SubmitJob) -> JobOut:
    try:
        check_tvae_config(epochs=body.epochs, batch_size=body.batch_size, embedding_dim=body.embedding_dim,
                          compress_dims=body.compress_dims, decompress_dims=body.decompress_dims,
                          limits=TvaeLimits.from_settings(get_settings()))
    except TvaeConfigError as exc:
        raise _limits_error(exc) from None
    ds = datasets.get(session, body.dataset_id)
    if ds.rows < 50:
        raise ApiError(422, "invalid_dataset", f"dataset {ds.id} has {ds.rows} rows; a generator needs at least 50",
                       {"field": "body.dataset_id"})
    name = body.name or (re.sub(r"[^A-Za-z0-9._-]+", "-", ds.name).strip("-")[:80] or "data") + "-tvae"
    params = {**body.model_dump(), "name": name, "submitted_by": submit.principal.name}
    session.close()
    return JobOut.of(submit("gan.train_tvae", params, kind="train_tvae"))


def _generator(session: DbSession, ref: str) -> Any:
    m = registry.resolve(session, ref)
    if m.kind != "tvae":
        raise ApiError(422, "unsupported_model", f"model {m.id} is a {m.kind} model, not a TVAE generator",
                       {"field": "path.ref"})
    return m


@router.post("/gan/models/{ref}/samples", status_code=202, response_model=JobOut,
             summary="Sample synthetic rows into new dataset(s)")
def sample(ref: str, body: SampleRequest, session: DbSession, submit: SubmitJob) -> JobOut:
    try:
        check_sample_rows(body.rows, TvaeLimits.from_settings(get_settings()))
    except TvaeConfigError as exc:
        raise _limits_error(exc) from None
    m = _generator(session, ref)
    modes = set(m.metrics.get("failure_rate", {}).get("real", {}).get("modes", {}))
    unknown = sorted(set(body.mode_counts or {}) - modes)
    if unknown:
        raise ApiError(422, "invalid_request", f"unknown failure mode(s): {', '.join(unknown)}; this generator knows "
                       f"{', '.join(sorted(modes)) or 'none'}", {"field": "body.mode_counts", "unknown": unknown})
    if body.mode_counts and sum(body.mode_counts.values()) > body.rows:
        raise ApiError(422, "invalid_request", "mode_counts ask for more rows than `rows`", {"field": "body.mode_counts"})
    params = {**body.model_dump(), "model_id": m.id, "name": body.name or f"synthetic from {m.name} v{m.version}",
              "submitted_by": submit.principal.name}
    session.close()
    return JobOut.of(submit("gan.sample", params, kind="sample"))


@router.get("/models/{ref}/report", summary="A TVAE generator's report, with real vs synthetic histograms")
def report(ref: str, session: DbSession, _: Viewer) -> dict[str, Any]:
    m = _generator(session, ref)
    return {"model_id": m.id, "name": m.name, "version": m.version, **m.metrics}

"""`ml` queue. ML jobs: failure and RUL training, batch scoring (ml/ holds the domain code)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery_app import app
from core import datasets, registry
from core.artifacts import ArtifactStore
from core.db import session_scope
from core.models import Dataset
from ml.batch import BatchStopped, output_columns, score_parquet
from ml.fitting import FitStopped
from ml.rul import train_rul_model
from ml.schema import DatasetSchema
from ml.training import train_failure_model
from tasks.base import JobCancelled, JobContext, LoggingTask
from tasks.system import ping_job

STOPPED = (FitStopped, BatchStopped)  # TrainingStopped and RulStopped are FitStopped


@app.task(name="ml.ping", base=LoggingTask, bind=True)
def ping(self: LoggingTask, job_id: str, seq: int) -> dict[str, Any]:
    return self.run_job(job_id, seq, ping_job)


def _stoppable(ctx: JobContext, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except STOPPED:
        ctx.check()  # raises the precise reason (cancelled, timed out, lease lost)
        raise JobCancelled("stopped") from None


def _dataset(ctx: JobContext, store: ArtifactStore) -> tuple[Dataset, Any]:
    with session_scope(write=False) as session:
        ds = datasets.get(session, ctx.params["dataset_id"])
    ctx.progress(0.01, f"loading dataset {ds.name}")
    return ds, datasets.load_frame(ds, store)


def _register(ctx: JobContext, model: Any, kind: str, ds: Dataset, feature_names: list[str],
              store: ArtifactStore) -> None:
    """Stage the model file; its registry row (model_id, name, version in the job's result) is
    written in the transaction that finishes the job, only if this run still owns it."""
    ctx.progress(0.98, "saving to the model registry")
    ctx.stage(registry.stage(model, kind=kind, name=ctx.params["name"], params=model.params, metrics=model.metrics,
                             feature_names=feature_names, dataset_id=ds.id, dataset_sha256=ds.sha256,
                             job_id=ctx.job_id, created_by=ctx.params.get("submitted_by"), store=store))


def train_failure_job(ctx: JobContext) -> dict[str, Any]:
    p, store = ctx.params, ArtifactStore()
    ds, frame = _dataset(ctx, store)
    model = _stoppable(ctx, lambda: train_failure_model(
        frame, DatasetSchema.model_validate(ds.schema), algorithm=p["algorithm"], cv_folds=p["cv_folds"],
        cost_false_alarm=p["cost_false_alarm"], cost_missed_failure=p["cost_missed_failure"], seed=p["seed"],
        progress=lambda f, m: ctx.progress(0.02 + 0.95 * f, m), should_stop=ctx.should_stop))
    _register(ctx, model, "failure", ds, model.builder.feature_names_, store)
    summary = {k: model.metrics[k] for k in ("f1", "precision", "recall", "pr_auc", "roc_auc", "threshold")}
    return {"metrics": summary}  # + model_id, name, version when the job finishes


def train_rul_job(ctx: JobContext) -> dict[str, Any]:
    p, store = ctx.params, ArtifactStore()
    ds, frame = _dataset(ctx, store)
    model = _stoppable(ctx, lambda: train_rul_model(
        frame, DatasetSchema.model_validate(ds.schema), rul_cap=p["rul_cap"], windows=p["windows"],
        settings=p.get("settings"), algorithm=p["algorithm"], cv_folds=p["cv_folds"], seed=p["seed"],
        progress=lambda f, m: ctx.progress(0.02 + 0.95 * f, m), should_stop=ctx.should_stop))
    _register(ctx, model, "rul", ds, model.builder.feature_names_, store)
    summary = {k: model.metrics[k] for k in ("rmse", "mae", "nasa_score", "units")}
    return {"metrics": summary}  # + model_id, name, version when the job finishes


def batch_predict_job(ctx: JobContext) -> dict[str, Any]:
    p, store = ctx.params, ArtifactStore()
    with session_scope(write=False) as session:
        ds = datasets.get(session, p["dataset_id"])
        model_row = registry.resolve(session, p["model_id"])
    model = registry.ModelCache(store, max_items=1).load(model_row)  # verifies the sha256 first
    src = datasets.verified_path(ds, store)
    ctx.progress(0.01, f"scoring {ds.rows:,} rows of {ds.name} in chunks of {p['chunk_rows']:,}")
    with store.scratch() as tmp:
        out = tmp / "scored.parquet"
        result = _stoppable(ctx, lambda: score_parquet(  # BatchInputError fails the job with its message
            model, src, out, chunk_rows=p["chunk_rows"], should_stop=ctx.should_stop,
            progress=lambda f, m: ctx.progress(0.02 + 0.93 * f, m)))
        ctx.progress(0.96, "profiling and registering the scored dataset")
        schema = DatasetSchema.model_validate(ds.schema)
        schema.ignore = [*schema.ignore, *output_columns(model)]  # outputs are never features for later models
        scored = ctx.stage(datasets.stage_parquet(  # its row is written when the job finishes
            out, name=p["name"], schema=schema, kind="predictions", created_by=p.get("submitted_by"), store=store,
            lineage={"model_id": model_row.id, "model_version": model_row.version, "source_dataset_id": ds.id,
                     "job_id": ctx.job_id}))
    return {"dataset_id": scored.id, "rows": result.rows, "chunks": result.chunks,
            "seconds": round(result.seconds, 3), "rows_per_second": round(result.rows_per_second, 1),
            "peak_rss_mb": round(result.peak_rss_mb, 1), "coerced_values": result.coerced_values,
            "columns": output_columns(model)}


@app.task(name="ml.train_failure", base=LoggingTask, bind=True)
def train_failure(self: LoggingTask, job_id: str, seq: int) -> dict[str, Any]:
    return self.run_job(job_id, seq, train_failure_job)


@app.task(name="ml.train_rul", base=LoggingTask, bind=True)
def train_rul(self: LoggingTask, job_id: str, seq: int) -> dict[str, Any]:
    return self.run_job(job_id, seq, train_rul_job)


@app.task(name="ml.batch_predict", base=LoggingTask, bind=True)
def batch_predict(self: LoggingTask, job_id: str, seq: int) -> dict[str, Any]:
    return self.run_job(job_id, seq, batch_predict_job)

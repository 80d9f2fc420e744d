"""`ml` queue. ML jobs: failure-prediction training (ml/ holds the domain code)."""

from __future__ import annotations

from typing import Any

from celery_app import app
from core import datasets, registry
from core.artifacts import ArtifactStore
from core.db import session_scope
from ml.schema import DatasetSchema
from ml.training import TrainingStopped, train_failure_model
from tasks.base import JobCancelled, JobContext, LoggingTask
from tasks.system import ping_job


@app.task(name="ml.ping", base=LoggingTask, bind=True)
def ping(self: LoggingTask, job_id: str, seq: int) -> dict[str, Any]:
    return self.run_job(job_id, seq, ping_job)


def train_failure_job(ctx: JobContext) -> dict[str, Any]:
    p = ctx.params
    store = ArtifactStore()
    with session_scope(write=False) as session:
        ds = datasets.get(session, p["dataset_id"])
    ctx.progress(0.01, f"loading dataset {ds.name}")
    frame = datasets.load_frame(ds, store)
    schema = DatasetSchema.model_validate(ds.schema)
    try:
        model = train_failure_model(
            frame, schema, algorithm=p["algorithm"], cv_folds=p["cv_folds"], cost_false_alarm=p["cost_false_alarm"],
            cost_missed_failure=p["cost_missed_failure"], seed=p["seed"],
            progress=lambda f, m: ctx.progress(0.02 + 0.95 * f, m), should_stop=ctx.should_stop)
    except TrainingStopped:
        ctx.check()  # raises the precise reason (cancelled, timed out, lease lost)
        raise JobCancelled("stopped") from None
    ctx.progress(0.98, "saving to the model registry")
    row = registry.register(model, kind="failure", name=p["name"], params=model.params, metrics=model.metrics,
                            feature_names=model.builder.feature_names_, dataset_id=ds.id, dataset_sha256=ds.sha256,
                            job_id=ctx.job_id, created_by=p.get("submitted_by"), store=store)
    summary = {k: model.metrics[k] for k in ("f1", "precision", "recall", "pr_auc", "roc_auc", "threshold")}
    return {"model_id": row.id, "name": row.name, "version": row.version, "metrics": summary}


@app.task(name="ml.train_failure", base=LoggingTask, bind=True)
def train_failure(self: LoggingTask, job_id: str, seq: int) -> dict[str, Any]:
    return self.run_job(job_id, seq, train_failure_job)

"""`gan` queue. GAN jobs: TVAE training and sampling (GAN/ holds the domain code)."""

from __future__ import annotations

from typing import Any

from celery_app import app
from core import datasets, registry
from core.artifacts import ArtifactStore
from core.db import session_scope
from core.settings import get_settings
from tasks.base import JobCancelled, JobContext, LoggingTask
from tasks.system import ping_job

HOLDOUT = 0.2


@app.task(name="gan.ping", base=LoggingTask, bind=True)
def ping(self: LoggingTask, job_id: str, seq: int) -> dict[str, Any]:
    return self.run_job(job_id, seq, ping_job)


def _epoch_progress(ctx: JobContext, fraction: float, message: str, metrics: dict[str, Any], epochs: int) -> None:
    ctx.progress(0.02 + 0.78 * fraction, message, metrics=metrics)
    if metrics.get("epoch") == epochs:  # writes are throttled; the last epoch must not be superseded unseen
        ctx.flush_progress()


def train_tvae_job(ctx: JobContext) -> dict[str, Any]:
    from sklearn.model_selection import train_test_split

    from GAN.limits import TvaeLimits, check_tvae_config
    from GAN.report import evaluate
    from GAN.tvae import GanStopped, train_tvae
    from ml.schema import DatasetSchema

    p, store = ctx.params, ArtifactStore()
    limits = TvaeLimits.from_settings(get_settings())
    check_tvae_config(epochs=p["epochs"], batch_size=p["batch_size"], embedding_dim=p["embedding_dim"],
                      compress_dims=p["compress_dims"], decompress_dims=p["decompress_dims"], limits=limits)
    with session_scope(write=False) as session:
        ds = datasets.get(session, p["dataset_id"])
    ctx.progress(0.01, f"loading dataset {ds.name}")
    frame = datasets.load_frame(ds, store)
    schema = DatasetSchema.model_validate(ds.schema)
    stratify = frame[schema.target] if schema.target and frame[schema.target].sum() >= 2 else None
    # The report's real holdout is set aside before the generator sees any data.
    train, holdout = train_test_split(frame, test_size=HOLDOUT, stratify=stratify, random_state=p["seed"])
    epochs = p["epochs"]
    try:
        gen = train_tvae(train, schema, epochs=epochs, batch_size=p["batch_size"], embedding_dim=p["embedding_dim"],
                         compress_dims=tuple(p["compress_dims"]), decompress_dims=tuple(p["decompress_dims"]),
                         seed=p["seed"], enable_gpu=p["enable_gpu"], should_stop=ctx.should_stop, limits=limits,
                         progress=lambda f, m, x: _epoch_progress(ctx, f, m, x, epochs))
    except GanStopped:
        ctx.check()
        raise JobCancelled("stopped") from None
    ctx.progress(0.82, "evaluating: quality, failure rates, train-on-synthetic-test-on-real, privacy")
    try:
        report = evaluate(gen, train, holdout, schema, seed=p["seed"], should_stop=ctx.should_stop)
    except GanStopped:
        ctx.check()
        raise JobCancelled("stopped") from None
    metrics = {**report, "loss_curve": gen.loss_curve, "training_seconds": round(gen.training_seconds, 2),
               "device": gen.device}
    ctx.progress(0.98, "saving to the model registry")
    # The registry row (model_id, name, version in the result) is written when the job finishes,
    # in the same transaction and only if this run still owns the job.
    ctx.stage(registry.stage(gen, kind="tvae", name=p["name"], params={**p, **gen.params}, metrics=metrics,
                             feature_names=gen.columns, dataset_id=ds.id, dataset_sha256=ds.sha256,
                             job_id=ctx.job_id, created_by=p.get("submitted_by"), store=store))
    summary = {"quality": report["quality"]["overall"], "failure_rate": report["failure_rate"],
               "tstr_ratio": (report["tstr"] or {}).get("ratio")}
    return {"metrics": summary}


def sample_job(ctx: JobContext) -> dict[str, Any]:
    import numpy as np

    from GAN.limits import TvaeLimits, check_sample_rows
    from GAN.tvae import GanStopped, synthetic_schema
    from ml.schema import DatasetSchema

    p, store = ctx.params, ArtifactStore()
    check_sample_rows(p["rows"], TvaeLimits.from_settings(get_settings()))
    with session_scope(write=False) as session:
        row = registry.resolve(session, p["model_id"])
    gen = registry.ModelCache(store, max_items=1).load(row)  # sha256 verified before unpickling
    ctx.progress(0.05, f"generating {p['rows']:,} rows")
    sampling: dict[str, Any] = {}
    rows = p["rows"]

    def generated(drawn: int, kept: int) -> None:
        ctx.progress(0.05 + 0.5 * kept / rows, f"generated {drawn:,} rows, kept {kept:,} of {rows:,}")

    try:  # stops (cancel, deadline) are checked before every generated batch
        frame = gen.sample(rows, failure_rate=p.get("failure_rate"), mode_counts=p.get("mode_counts"),
                           seed=p["seed"], report=sampling, should_stop=ctx.should_stop, progress=generated)
    except GanStopped:
        ctx.check()
        raise JobCancelled("stopped") from None
    if sampling.get("substituted"):
        ctx.log(f"label combinations the generator did not produce within the exact budget, filled with other "
                f"combinations of the same failure status: {sampling['substituted']}", level="warning")
    schema = synthetic_schema(DatasetSchema.model_validate(gen.schema), gen.columns)
    parts = {"all": frame}
    if p.get("split"):
        cuts = np.cumsum([int(round(v * len(frame))) for v in p["split"].values()])[:-1]
        parts = dict(zip(p["split"], np.split(frame, cuts), strict=True))
    made = {}
    for i, (name, part) in enumerate(parts.items()):
        ctx.progress(0.6 + 0.35 * i / len(parts), f"storing {name}: {len(part):,} rows")
        with store.scratch() as tmp:
            path = tmp / "synthetic.parquet"
            part.reset_index(drop=True).to_parquet(path, index=False)
            ds = ctx.stage(datasets.stage_parquet(  # its row is written when the job finishes
                path, name=f"{p['name']}" + (f" ({name})" if p.get("split") else ""), schema=schema, kind="synthetic",
                created_by=p.get("submitted_by"), store=store,
                lineage={"generator_model_id": row.id, "generator_version": row.version,
                         "source_dataset_id": row.dataset_id, "job_id": ctx.job_id, "seed": p["seed"],
                         "sampling": {"generated_rows": sampling.get("generated_rows"),
                                      "substituted": sampling.get("substituted", {})},
                         **({"split": name} if p.get("split") else {})}))
        made[name] = ds.id
    if p.get("split"):
        return {"dataset_ids": made, "rows": len(frame), "sampling": sampling}
    return {"dataset_id": made["all"], "rows": len(frame), "sampling": sampling}


@app.task(name="gan.train_tvae", base=LoggingTask, bind=True)
def train_tvae_task(self: LoggingTask, job_id: str, seq: int) -> dict[str, Any]:
    return self.run_job(job_id, seq, train_tvae_job)


@app.task(name="gan.sample", base=LoggingTask, bind=True)
def sample_task(self: LoggingTask, job_id: str, seq: int) -> dict[str, Any]:
    return self.run_job(job_id, seq, sample_job)

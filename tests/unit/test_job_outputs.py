"""Exactly once, also for artifacts: a job's registry and dataset rows are written in the same
transaction as its success, only by the run that still owns the job.

Real Celery task execution in this process (`apply`), real job store (SQLite and PostgreSQL), the
real failure-training job on AI4I rows. The reaper requeues the job (as it does a job whose worker
went silent) at two points of the first run: just before it saves its model, and after the job
code returned but before the outcome is written.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import select

from core import datasets, jobs
from core.artifacts import ArtifactStore
from core.db import session_scope
from core.models import Dataset, Model, utcnow
from core.settings import PROJECT_ROOT
from tests.unit.test_logging_task import app_and_url  # noqa: F401 - the module's fixture

AI4I = PROJECT_ROOT / "data" / "samples" / "ai4i2020.csv"


def _presume_dead(url: str | None = None) -> None:
    # What the reaper does to a job whose heartbeat went silent: requeue with a new dispatch_seq.
    assert jobs.reap_stale(db_url=url, now=utcnow() + timedelta(seconds=600))


def _register(app: Any) -> dict[str, Any]:
    """Tasks are registered once per process; at run time they use the current backend's database."""
    from tasks.base import JobContext, LoggingTask
    from tasks.ml import train_failure_job

    def before_saving(ctx: JobContext) -> dict[str, Any]:
        progress = ctx.progress

        def spy(fraction: float, message: str | None = None, metrics: Any = None) -> None:
            progress(fraction, message, metrics)
            if message == "saving to the model registry" and ctx.seq == 1:
                _presume_dead()

        ctx.progress = spy  # type: ignore[method-assign]
        return train_failure_job(ctx)

    def before_finishing(ctx: JobContext) -> dict[str, Any]:
        result = train_failure_job(ctx)
        if ctx.seq == 1:
            _presume_dead()
        return result

    out = {}
    for name, fn in {"before_saving": before_saving, "before_finishing": before_finishing}.items():
        if f"ml.test_superseded_{name}" not in app.tasks:
            def run(self: LoggingTask, job_id: str, seq: int, _fn: Any = fn) -> dict[str, Any]:
                return self.run_job(job_id, seq, _fn)

            app.task(name=f"ml.test_superseded_{name}", base=LoggingTask, bind=True)(run)
        out[name] = app.tasks[f"ml.test_superseded_{name}"]
    return out


@pytest.fixture(scope="module")
def setup(app_and_url: tuple[Any, str], tmp_path_factory: pytest.TempPathFactory  # noqa: F811
          ) -> Iterator[tuple[dict[str, Any], str, Dataset, ArtifactStore]]:
    app, url = app_and_url
    csv = tmp_path_factory.mktemp("ai4i") / "ai4i-3000.csv"
    pd.read_csv(AI4I).head(3000).to_csv(csv, index=False)
    store = ArtifactStore()  # what the job code uses
    ds = datasets.create(upload=csv, filename=csv.name, name="ai4i 3000", given=None, created_by="t", store=store,
                         db_url=url)
    yield _register(app), url, ds, store


def _model_files(store: ArtifactStore) -> set[str]:
    return {k for k, _ in store.list_keys("models")}


@pytest.mark.parametrize("when", ["before_saving", "before_finishing"])
def test_superseded_run_registers_nothing_and_the_new_run_exactly_one(setup: Any, when: str) -> None:
    tasks, url, ds, store = setup
    name = f"superseded-{when}"
    params = {"dataset_id": ds.id, "algorithm": "logistic_regression", "cv_folds": 2, "cost_false_alarm": 1.0,
              "cost_missed_failure": 10.0, "seed": 0, "name": name, "submitted_by": "t"}
    jid = jobs.submit(task_name=f"ml.test_superseded_{when}", queue="ml", kind="train_failure", params=params,
                      submitted_by="t", dispatcher=None, db_url=url).id
    files_before = _model_files(store)

    tasks[when].apply(args=[jid, 1])  # the old run: trains, then loses its job before it is recorded
    with session_scope(url, write=False) as s:
        job = jobs.get(s, jid)
        assert job.status == "queued" and job.dispatch_seq == 2 and job.result is None
        assert list(s.scalars(select(Model).where(Model.job_id == jid))) == []
        assert list(s.scalars(select(Model).where(Model.name == name))) == []
    assert _model_files(store) == files_before  # its staged file was removed

    assert tasks[when].apply(args=[jid, 2]).get() == {"succeeded": True}  # the new run
    with session_scope(url, write=False) as s:
        job = jobs.get(s, jid)
        models = list(s.scalars(select(Model).where(Model.job_id == jid)))
    assert job.status == "succeeded" and len(models) == 1
    m = models[0]
    assert (m.name, m.version) == (name, 1)
    assert job.result["model_id"] == m.id and job.result["version"] == 1 and job.result["name"] == name
    assert set(job.result["metrics"]) >= {"f1", "threshold"}
    assert _model_files(store) == files_before | {m.storage_key}


def test_staged_dataset_of_a_run_that_lost_its_job_is_removed(setup: Any, tmp_path: Path) -> None:
    """The dataset side directly: a staged dataset whose finish loses the ownership check leaves
    no row and no file; recorded by the owner, its row lands with the job's success."""
    from ml.schema import DatasetSchema

    _, url, ds, store = setup
    schema = DatasetSchema.model_validate(ds.schema)
    rows = datasets.load_frame(ds, store).head(50)

    def staged(tag: str) -> datasets.StagedDataset:
        path = tmp_path / f"{tag}.parquet"
        rows.to_parquet(path, index=False)
        return datasets.stage_parquet(path, name=f"out {tag}", schema=schema, kind="predictions", created_by="t",
                                      store=store, db_url=url)

    jid = jobs.submit(task_name="ml.test_boom", queue="ml", kind="t", params={}, submitted_by="t", dispatcher=None,
                      db_url=url).id
    assert jobs.claim(jid, 1, worker="w", celery_task_id=None, db_url=url) is not None
    old = staged("old")
    _presume_dead(url)
    assert jobs.finish(jid, 1, "succeeded", result={"dataset_id": old.id}, outputs=[old], db_url=url) is False
    old.discard()
    assert jobs.claim(jid, 2, worker="w2", celery_task_id=None, db_url=url) is not None
    new = staged("new")
    assert jobs.finish(jid, 2, "succeeded", result={"dataset_id": new.id}, outputs=[new], db_url=url) is True
    new.discard()  # a no-op: its row exists
    with session_scope(url, write=False) as s:
        assert s.get(Dataset, old.id) is None and s.get(Dataset, new.id) is not None
        assert jobs.get(s, jid).result == {"dataset_id": new.id}
    keys = {k for k, _ in store.list_keys("datasets")}
    assert old.row.storage_key not in keys and new.row.storage_key in keys

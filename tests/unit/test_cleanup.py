"""Periodic cleanup of scratch and partial files and orphaned artifacts (core/cleanup.py), on a
real database and a real store (a directory, and the same behind an fsspec URL)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from core import cleanup, jobs, registry
from core.artifacts import ArtifactStore
from core.db import session_scope
from core.models import Job, utcnow
from tests.conftest import new_database

HOUR = 3600.0


@pytest.fixture(scope="module")
def url(backend: str) -> Iterator[str]:
    with new_database(backend) as u:
        yield u


def aged(path: Path, hours: float, body: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(body)
    t = time.time() - hours * HOUR
    os.utime(path, (t, t))
    return path


@pytest.mark.parametrize("kind", ["directory", "fsspec-url"])
def test_old_scratch_partial_and_orphans_go_files_in_use_stay(url: str, tmp_path: Path, kind: str) -> None:
    shared = tmp_path / "shared"
    store = ArtifactStore(shared if kind == "directory" else f"file://{shared}", local_dir=tmp_path / "machine")
    scratch = (store.root if store.url is None else store.local_dir) / "tmp"
    kept_model = registry.register({"w": 1}, kind="failure", name=f"keep-{kind}", params={}, metrics={},
                                   feature_names=[], dataset_id=None, dataset_sha256=None, job_id=None,
                                   created_by="t", store=store, db_url=url)
    registered = aged(shared / kept_model.storage_key, 100)  # old, but its row exists

    # A job that has been running for 50 h: anything touched after it started may be its own.
    jid = jobs.submit(task_name="ml.ping", queue="ml", kind="ping", params={}, submitted_by="t", dispatcher=None,
                      db_url=url).id
    assert jobs.claim(jid, 1, worker="w", celery_task_id=None, db_url=url)
    with session_scope(url) as s:
        s.execute(update(Job).where(Job.id == jid).values(started_at=utcnow() - timedelta(hours=50)))

    old_scratch = aged(scratch / "a" / "model.joblib", 60)  # killed job's scratch, before the running job
    aged(old_scratch.parent, 60)
    running_scratch = aged(scratch / "b" / "data.parquet", 49)  # older than 24 h, but the running job's
    aged(running_scratch.parent, 49)
    fresh_scratch = aged(scratch / "c" / "upload.csv", 1)
    old_partial = aged(store.root / "ab" / "x.joblib.123.partial", 60) if store.url else None  # cache download
    orphan_model = aged(shared / "models" / f"{'0' * 32}.joblib", 60)
    orphan_dataset = aged(shared / "datasets" / f"{'1' * 32}.parquet", 60)
    young_orphan = aged(shared / "models" / f"{'2' * 32}.joblib", 2)  # maybe a row being written now
    remote_partial = aged(shared / "models" / "y.joblib.456.partial", 60) if store.url else None

    removed = cleanup.clean(store, max_age_hours=24, db_url=url)

    for gone in (old_scratch.parent, old_partial, orphan_model, orphan_dataset, remote_partial):
        assert gone is None or not gone.exists(), gone
    for kept in (running_scratch, fresh_scratch, registered, young_orphan):
        assert kept.exists(), kept
    assert removed["orphans"] == 2 and removed["scratch"] == (3 if store.url else 1)
    assert registry.ModelCache(store).load(kept_model) == {"w": 1}

    jobs.finish(jid, 1, "succeeded", db_url=url)  # no job running any more: the 49 h scratch goes too
    assert cleanup.clean(store, max_age_hours=24, db_url=url)["scratch"] == 1
    assert not running_scratch.exists() and fresh_scratch.exists()

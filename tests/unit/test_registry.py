"""The registry refuses to unpickle a model file whose sha256 it doesn't vouch for."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core import registry
from core.artifacts import ArtifactStore
from core.db import session_scope
from core.jobs import JobError
from tests.conftest import new_database


@pytest.fixture(scope="module")
def url(backend: str) -> Iterator[str]:
    with new_database(backend) as u:
        yield u


def test_versions_aliases_and_tamper_check(url: str, tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    kw = dict(kind="failure", params={}, metrics={"f1": 0.5}, feature_names=["a"], dataset_id=None,
              dataset_sha256=None, job_id=None, created_by="t", store=store, db_url=url)
    m1 = registry.register({"weights": [1, 2, 3]}, name="pump", **kw)
    m2 = registry.register({"weights": [4, 5, 6]}, name="pump", **kw)
    assert (m1.version, m2.version) == (1, 2)
    registry.set_alias(m1.id, "production", url)
    registry.set_alias(m2.id, "production", url)  # moves
    with session_scope(url, write=False) as s:
        assert registry.resolve(s, "pump@production").id == m2.id
        assert registry.resolve(s, "pump:1").id == m1.id
        assert registry.aliases_of(s, m1.id) == []
        with pytest.raises(JobError):
            registry.resolve(s, "pump:9")
    cache = registry.ModelCache(store)
    assert cache.load(m1) == {"weights": [1, 2, 3]}
    path = tmp_path / m2.storage_key
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")  # someone swapped the file
    with pytest.raises(JobError, match="does not match the sha256"):
        cache.load(m2)


def test_predictions_are_stored_and_purged_after_retention(url: str, tmp_path: Path) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from core import predictions
    from core.models import Prediction, utcnow

    store = ArtifactStore(tmp_path)
    m = registry.register({"w": 1}, kind="failure", name="fan", params={}, metrics={}, feature_names=[],
                          dataset_id=None, dataset_sha256=None, job_id=None, created_by="t", store=store, db_url=url)
    old, new = predictions.store(m.id, m.version, [{"x": float("nan")}, {"x": 2.0}], [{"p": 0.1}, {"p": 0.9}], "t",
                                 db_url=url)
    with session_scope(url) as s:
        assert predictions.get(s, old).inputs == {"x": None}
        s.execute(update(Prediction).where(Prediction.id == old).values(created_at=utcnow() - timedelta(days=100)))
    assert predictions.purge(90, db_url=url) == 1
    with session_scope(url, write=False) as s:
        assert predictions.get(s, new).outputs == {"p": 0.9}
        with pytest.raises(JobError):
            predictions.get(s, old)


def test_model_is_unpickled_from_the_bytes_that_were_hashed(url: str, tmp_path: Path) -> None:
    """The file is swapped between the hash check and the load: the store path is a FIFO that
    serves the genuine bytes to its first reader and other (valid) model bytes to any later one.
    Reading twice (hash, then unpickle) would load the swapped model; reading once never does."""
    import io
    import os
    import threading
    import time

    import joblib

    store = ArtifactStore(tmp_path)
    m = registry.register({"genuine": True}, kind="failure", name="swap", params={}, metrics={}, feature_names=[],
                          dataset_id=None, dataset_sha256=None, job_id=None, created_by="t", store=store, db_url=url)
    path = tmp_path / m.storage_key
    genuine = path.read_bytes()
    evil = io.BytesIO()
    joblib.dump({"genuine": False}, evil, compress=3)
    path.unlink()
    os.mkfifo(path)
    served: list[bytes] = []

    def reader_gone() -> bool:
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))  # ENXIO: no reader has it open
        except OSError:
            return True
        return False

    def serve() -> None:
        for body in (genuine, evil.getvalue()):
            with open(path, "wb") as f:  # blocks until a reader opens the path
                served.append(body)
                f.write(body)
            while not reader_gone():  # each reader gets exactly one body
                time.sleep(0.01)

    threading.Thread(target=serve, daemon=True).start()
    try:
        assert registry.ModelCache(store).load(m) == {"genuine": True}
        assert len(served) == 1  # opened once
    finally:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # release a writer still waiting
        os.close(fd)

"""Jobs that cannot run away: the per-job memory guard, in real prefork workers.

A test-only job (tests/integration/guard_tasks.py, loaded with PM_EXTRA_TASK_MODULES) allocates
memory in steps of 35 MB (385 MB at most) in a worker whose WORKER_MAX_MEMORY_MB is 450 (a pool
child starts near 230 MB).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from core import jobs
from tests.conftest import Platform, new_database
from tests.helpers import RedisServer

LIMIT_MB = 450


@pytest.fixture
def guarded(backend: str, isolated_redis: RedisServer) -> Iterator[Platform]:
    with new_database(backend) as url:
        p = Platform(url, isolated_redis.url(0), f"{backend}-mem", queues=("ml",),
                     extra_env={"PM_EXTRA_TASK_MODULES": "tests.integration.guard_tasks",
                                "WORKER_MAX_MEMORY_MB": str(LIMIT_MB)}).start()
        yield p
        p.stop()


def grow(p: Platform, *, cooperative: bool) -> str:
    # Sent by the API's outbox, like any job whose message was not sent at submit time.
    return jobs.submit(task_name="ml.test_grow", queue="ml", kind="test_grow", submitted_by="test",
                       params={"step_mb": 35, "steps": 11, "cooperative": cooperative, "block_s": 120},
                       dispatcher=None, db_url=p.db_url).id


def assert_memory_limit(job: dict) -> None:
    assert job["status"] == "failed", job
    err = job["error"]
    assert err["type"] == "MemoryLimitExceeded" and err["code"] == "memory_limit", err
    assert f"WORKER_MAX_MEMORY_MB={LIMIT_MB}" in err["message"]
    assert err["details"]["setting"] == "WORKER_MAX_MEMORY_MB" and err["details"]["limit_mb"] == LIMIT_MB
    assert err["details"]["rss_mb"] > LIMIT_MB


def test_job_over_memory_limit_stops_cooperatively(guarded: Platform) -> None:
    api = guarded.api()
    job = api.wait(grow(guarded, cooperative=True), timeout=90)
    assert_memory_limit(job)
    assert job["attempts"] == 1
    assert api.wait(api.ping("ml")["id"])["status"] == "succeeded"  # the worker is fine


def test_job_that_never_checks_is_failed_and_its_process_ended(guarded: Platform) -> None:
    api = guarded.api()
    job = api.wait(grow(guarded, cooperative=False), timeout=90)
    assert_memory_limit(job)
    # The pool replaced the ended child and runs the next job; the killed job's message, handed
    # back when its process died, finds it terminal: it is not run again as a lost worker's job.
    assert api.wait(api.ping("ml")["id"], timeout=60)["status"] == "succeeded", guarded.logs()
    log = guarded.workers["ml"].log_path.read_text()
    assert "job did not stop at its memory limit; ending its process" in log
    again = api.job(job["id"])
    assert again["status"] == "failed" and again["attempts"] == 1 and again["error"]["code"] == "memory_limit"


def test_api_maintenance_removes_old_scratch_and_orphaned_artifacts(backend: str, isolated_redis: RedisServer) -> None:
    """Files left by killed jobs before the API starts are removed by its maintenance loop (which
    cleans at start and then hourly); recent ones stay."""
    import os
    import time

    from core.artifacts import ArtifactStore
    from tests.helpers import wait_until

    with new_database(backend) as url:
        p = Platform(url, isolated_redis.url(0), f"{backend}-clean", queues=("ml",))
        store = ArtifactStore(p.env.get("ARTIFACT_ROOT") or p.dir / "artifacts", local_dir=p.dir)
        shared = p.dir / "artifacts"
        scratch = (store.root if store.url is None else store.local_dir) / "tmp"
        old = time.time() - 30 * 3600
        leftovers = [scratch / "killed-job" / "model.joblib", shared / "models" / f"{'3' * 32}.joblib",
                     shared / "datasets" / f"{'4' * 32}.parquet"]
        recent = scratch / "upload-in-progress" / "upload.csv"
        for f in [*leftovers, recent]:
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(b"left behind")
        for f in [*leftovers, leftovers[0].parent]:
            os.utime(f, (old, old))
        p.start()
        try:
            wait_until(lambda: not any(f.exists() for f in leftovers), timeout=30, what="leftovers removed",
                       on_timeout=p.logs)
            assert not leftovers[0].parent.exists() and recent.exists()
            api = p.api()
            assert api.wait(api.ping("ml")["id"])["status"] == "succeeded"
        finally:
            p.stop()


class TcpProxy:
    """A loopback TCP relay to PostgreSQL that the test can cut (every connection dropped, new ones
    closed at once, as a database that went away looks to its clients) and restore."""

    def __init__(self, target: tuple[str, int]) -> None:
        import socket
        import threading

        self.target, self.up = target, True
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self._open: list[Any] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: Any, dst: Any) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.close()

    def cut(self) -> None:
        import socket

        self.up = False
        with self._lock:
            sockets, self._open = self._open, []
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.cut()
        self.server.close()


def test_database_down_40s_when_a_job_finishes_keeps_its_outcome(backend: str, isolated_redis: RedisServer) -> None:
    """PostgreSQL unreachable from the moment a job finishes until 40 s later (past the stale-job
    limit): the worker keeps retrying its outcome and the reaper does not requeue the job once the
    database is back, so the job succeeds once, on its first attempt."""
    import time

    from tests.conftest import PG_ADMIN_URL

    if backend != "postgresql":
        pytest.skip("a SQLite file can't be made unreachable from outside the process")
    with new_database(backend) as url:
        proxy = TcpProxy(("127.0.0.1", 5432))
        via_proxy = url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        assert via_proxy != url, PG_ADMIN_URL
        p = Platform(via_proxy, isolated_redis.url(0), "pg-finish-outage", queues=("ml",)).start()
        try:
            api = p.api()
            job = api.ping("ml", sleep_s=3)
            api.wait(job["id"], "running", timeout=30)
            proxy.cut()  # down before the job's last step: its outcome meets a dead database
            time.sleep(40)
            proxy.restore()
            done = api.wait(job["id"], timeout=60)
            assert done["status"] == "succeeded" and done["attempts"] == 1, (done, p.logs())
            log = p.workers["ml"].log_path.read_text()
            assert "could not record job outcome yet; retrying" in log
            assert "requeued" not in api.get(f"/api/v1/jobs/{job['id']}").text
        finally:
            p.stop()
            proxy.close()

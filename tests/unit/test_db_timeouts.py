"""Database timeouts: a hung or unreachable database makes statements fail, never hang a thread.

PostgreSQL: DB_STATEMENT_TIMEOUT_SECONDS is the server-side statement timeout (a lock wait
included) and DB_CONNECT_TIMEOUT_SECONDS bounds the connect; SQLite: a held write lock is waited
out for at most the statement timeout. The heartbeat thread keeps working across a hang.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from core import jobs
from core.db import get_engine, ping_database, session_scope
from core.models import Job
from tests.conftest import new_database


@pytest.fixture
def short_timeouts(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from core.settings import get_settings

    monkeypatch.setenv("DB_STATEMENT_TIMEOUT_SECONDS", "0.5")
    monkeypatch.setenv("DB_CONNECT_TIMEOUT_SECONDS", "2")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def bounded(fn: Any, limit_s: float = 60) -> Any:
    """Run fn in a thread; fail (instead of hanging the suite) if it doesn't return in limit_s."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(limit_s)
    assert not t.is_alive(), f"{fn} still blocked after {limit_s} s"
    if "error" in out:
        raise out["error"]
    return out.get("value")


def test_statement_over_the_timeout_fails(backend: str, short_timeouts: None) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite has no server-side statements to time out; see the lock test below")
    with new_database(backend) as url:
        with pytest.raises(OperationalError, match="statement timeout"):
            bounded(lambda: session_scope(url).__enter__().execute(text("SELECT pg_sleep(20)")))
        with get_engine(url).connect() as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "500ms"


def test_heartbeat_fails_fast_while_the_job_row_is_locked_then_works(backend: str, short_timeouts: None) -> None:
    from tasks.base import JobContext, _Watchdog

    with new_database(backend) as url:
        os.environ["DATABASE_URL"] = url  # the watchdog uses the configured database
        try:
            from core.settings import get_settings

            get_settings.cache_clear()
            jid = jobs.submit(task_name="ml.ping", queue="ml", kind="ping", params={}, submitted_by="t",
                              dispatcher=None, db_url=url).id
            claim = jobs.claim(jid, 1, worker="w", celery_task_id=None, db_url=url)
            assert claim is not None
            ctx = JobContext(jid, 1, {}, 1, claim.deadline, claim.timeout_s)
            with session_scope(url, write=False) as s:
                first = s.get(Job, jid).heartbeat_at
            # Another session holds the job row (PostgreSQL) or the database's write lock (SQLite).
            if backend == "postgresql":
                blocker: Any = get_engine(url).connect()
                blocker.execute(text("SELECT id FROM jobs WHERE id = :id FOR UPDATE"), {"id": jid})
            else:
                import sqlite3

                blocker = sqlite3.connect(url.split("///", 1)[1], isolation_level=None)
                blocker.execute("BEGIN IMMEDIATE")
            try:
                with pytest.raises(OperationalError):
                    bounded(lambda: jobs.heartbeat(jid, 1, write=True, db_url=url))
                bounded(lambda: _Watchdog()._check(ctx, 0.0))  # logs the failure, doesn't raise or hang
            finally:
                blocker.rollback()
                blocker.close()
            bounded(lambda: _Watchdog()._check(ctx, 0.0))  # the next beat lands
            with session_scope(url, write=False) as s:
                assert s.get(Job, jid).heartbeat_at > first
            assert not ctx.should_stop()
        finally:
            os.environ.pop("DATABASE_URL", None)
            get_settings.cache_clear()
            get_engine(url).dispose()


def test_connect_to_a_server_that_never_answers_times_out(short_timeouts: None) -> None:
    """A listening socket that never speaks: without a connect timeout libpq waits forever."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        url = f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/none"
        ok, problem = bounded(lambda: ping_database(url), limit_s=30)
        assert ok is False and "timeout" in problem.lower()
    finally:
        silent.close()

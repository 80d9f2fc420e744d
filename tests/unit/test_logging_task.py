"""LoggingTask end to end in-process: real Celery task execution (`apply`), real job store, no worker.

Covers the paths a ping job can't reach: job code raising, retrying, running past its deadline,
being cancelled mid-run, and losing its job to a requeue.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from core import jobs
from core.db import session_scope
from tests.conftest import new_database

calls: dict[str, int] = {}


@pytest.fixture(scope="module")
def app_and_url(backend: str, redis_base: tuple[str, list[int]]) -> Iterator[tuple[Any, str]]:
    """The real Celery app configured for this backend; tasks run in this process via `apply()`."""
    from core.settings import get_settings

    base, dbs = redis_base
    saved = {k: os.environ.get(k) for k in ("REDIS_URL", "DATABASE_URL")}
    with new_database(backend) as url:
        os.environ["REDIS_URL"], os.environ["DATABASE_URL"] = f"{base}/{dbs[2]}", url
        get_settings.cache_clear()
        from celery_app import app

        app.conf.broker_url = app.conf.result_backend = os.environ["REDIS_URL"]
        app.conf.task_store_eager_result = False
        yield app, url
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    get_settings.cache_clear()


def _register(app: Any) -> dict[str, Any]:
    from tasks.base import LoggingTask, RetryableJobError

    def boom(ctx: Any) -> dict[str, Any]:
        ctx.progress(0.3, "about to fail")
        raise ValueError("sensor column 'Torque [Nm]' is all NaN")

    def flaky(ctx: Any) -> dict[str, Any]:
        calls[ctx.job_id] = calls.get(ctx.job_id, 0) + 1
        if calls[ctx.job_id] < 3:
            raise RetryableJobError(f"endpoint busy (try {calls[ctx.job_id]})")
        return {"tries": calls[ctx.job_id]}

    def slow(ctx: Any) -> dict[str, Any]:
        for i in range(100):
            ctx.sleep(0.1)
            ctx.progress(i / 100, f"step {i}")
        return {"done": True}

    out = {}
    for name, fn in {"boom": boom, "flaky": flaky, "slow": slow}.items():
        if f"ml.test_{name}" in app.tasks:
            out[name] = app.tasks[f"ml.test_{name}"]
            continue
        def run(self: LoggingTask, job_id: str, seq: int, _fn: Any = fn) -> dict[str, Any]:
            return self.run_job(job_id, seq, _fn)

        task = app.task(name=f"ml.test_{name}", base=LoggingTask, bind=True, retry_backoff_s=0.01)(run)
        out[name] = task
    return out


@pytest.fixture(scope="module")
def test_tasks(app_and_url: tuple[Any, str]) -> dict[str, Any]:
    return _register(app_and_url[0])


def submit(url: str, name: str, timeout_s: int | None = None) -> str:
    return jobs.submit(task_name=f"ml.test_{name}", queue="ml", kind=f"test_{name}", params={}, submitted_by="t",
                       dispatcher=None, db_url=url, timeout_s=timeout_s).id


def job(url: str, job_id: str) -> Any:
    with session_scope(url, write=False) as s:
        return jobs.get(s, job_id)


def test_exception_fails_job_with_type_and_message_and_logs_it(app_and_url, test_tasks, caplog) -> None:
    _, url = app_and_url
    jid = submit(url, "boom")
    with caplog.at_level(logging.INFO, logger="pm.tasks"):
        test_tasks["boom"].apply(args=[jid, 1])
    j = job(url, jid)
    assert j.status == "failed" and j.error == {"type": "ValueError", "message": "sensor column 'Torque [Nm]' is all NaN"}
    assert j.progress == pytest.approx(0.3) and j.finished_at is not None
    failed = [r for r in caplog.records if r.msg == "job failed"]
    assert failed and failed[0].job_id == jid and failed[0].queue == "ml" and failed[0].attempt == 1
    assert failed[0].error["type"] == "ValueError" and failed[0].duration_s >= 0


def test_retryable_error_retries_with_backoff_then_succeeds(app_and_url, test_tasks, caplog) -> None:
    _, url = app_and_url
    jid = submit(url, "flaky")
    with caplog.at_level(logging.INFO, logger="pm.tasks"):
        test_tasks["flaky"].apply(args=[jid, 1])
    j = job(url, jid)
    assert j.status == "succeeded" and j.result == {"tries": 3} and j.attempts == 3
    assert [r.msg for r in caplog.records if r.name == "pm.tasks"].count("job will retry") == 2


def test_deadline_stops_the_job(app_and_url, test_tasks) -> None:
    _, url = app_and_url
    jid = submit(url, "slow", timeout_s=1)
    t0 = time.monotonic()
    test_tasks["slow"].apply(args=[jid, 1])
    j = job(url, jid)
    assert j.status == "failed" and j.error["type"] == "JobTimedOut" and "1 s" in j.error["message"]
    assert time.monotonic() - t0 < 5


def test_cancel_while_running(app_and_url, test_tasks) -> None:
    _, url = app_and_url
    jid = submit(url, "slow")

    def cancel_soon() -> None:
        time.sleep(1.0)
        jobs.cancel(jid, by="tester", db_url=url)

    threading.Thread(target=cancel_soon).start()
    t0 = time.monotonic()
    test_tasks["slow"].apply(args=[jid, 1])
    j = job(url, jid)
    assert j.status == "cancelled" and 0 < j.progress < 1
    assert time.monotonic() - t0 < 3


def test_job_requeued_elsewhere_stops_without_writing(app_and_url, test_tasks) -> None:
    from datetime import timedelta

    from core.models import utcnow

    _, url = app_and_url
    jid = submit(url, "slow")

    def presume_dead() -> None:
        time.sleep(1.0)
        jobs.reap_stale(db_url=url, now=utcnow() + timedelta(seconds=120))

    threading.Thread(target=presume_dead).start()
    result = test_tasks["slow"].apply(args=[jid, 1]).get()
    assert result == {"abandoned": True}
    j = job(url, jid)
    assert j.status == "queued" and j.dispatch_seq == 2 and j.result is None


def test_duplicate_message_is_skipped(app_and_url, test_tasks) -> None:
    _, url = app_and_url
    jid = submit(url, "flaky")
    calls[jid] = 5
    assert test_tasks["flaky"].apply(args=[jid, 1]).get() == {"succeeded": True}
    assert test_tasks["flaky"].apply(args=[jid, 1]).get() == {"skipped": True}
    assert job(url, jid).attempts == 1


def test_outbox_resends_a_job_lost_by_a_broker_restart_exactly_once(app_and_url) -> None:
    """Real Celery dispatcher against real Redis: a job sent to an earlier broker run is re-sent
    once, and the new run is recorded, so later ticks don't send it again."""
    import redis
    from sqlalchemy import update

    from core.broker import CeleryDispatcher
    from core.models import Job

    app, url = app_and_url
    dispatcher = CeleryDispatcher(app, os.environ["REDIS_URL"])
    r = redis.Redis.from_url(os.environ["REDIS_URL"])
    jid = submit(url, "boom")
    with session_scope(url) as s:
        s.execute(update(Job).where(Job.id == jid).values(dispatched_at=jobs.utcnow(), broker_run_id="earlier-run"))
    before = r.llen("ml")
    assert jobs.flush_outbox(dispatcher, db_url=url, older_than_s=0) >= 1
    assert r.llen("ml") >= before + 1  # the message really went to the broker
    assert job(url, jid).broker_run_id == dispatcher.run_id()
    sent_again = jobs.flush_outbox(dispatcher, db_url=url, older_than_s=0)
    assert jid not in {j.id for j in jobs.pending_dispatch(db_url=url, older_than_s=0, broker_run_id=dispatcher.run_id())}
    assert sent_again == 0
    r.delete("ml")

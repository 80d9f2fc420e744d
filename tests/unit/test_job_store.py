"""The job state machine in core.jobs, straight against SQLite and PostgreSQL (no broker, no workers)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from core import jobs
from core.db import session_scope
from core.models import JobEvent, utcnow
from tests.conftest import new_database


@pytest.fixture(scope="module")
def url(backend: str) -> Iterator[str]:
    with new_database(backend) as u:
        yield u


def make(url: str, **params: object) -> str:
    job = jobs.submit(task_name="ml.ping", queue="ml", kind="ping", params=dict(params), submitted_by="t",
                      dispatcher=None, db_url=url)
    return job.id


def statuses(url: str, job_id: str) -> list[str]:
    with session_scope(url, write=False) as s:
        return [e.data["status"] for e in s.scalars(select(JobEvent).where(JobEvent.job_id == job_id,
                                                                        JobEvent.type == "status").order_by(JobEvent.id))]


def test_only_one_claim_wins_and_finish_happens_once(url: str) -> None:
    jid = make(url)
    first = jobs.claim(jid, 1, worker="w1", celery_task_id="c1", db_url=url)
    assert first is not None and first.attempts == 1
    assert jobs.claim(jid, 1, worker="w2", celery_task_id="c1", db_url=url) is None  # duplicate message
    assert jobs.finish(jid, 1, "succeeded", result={"x": 1}, db_url=url)
    assert not jobs.finish(jid, 1, "failed", error={"type": "E", "message": "m"}, db_url=url)
    assert jobs.claim(jid, 1, worker="w3", celery_task_id="c1", db_url=url) is None  # redelivery after finish
    assert statuses(url, jid) == ["queued", "running", "succeeded"]
    with session_scope(url, write=False) as s:
        job = jobs.get(s, jid)
        assert job.result == {"x": 1} and job.progress == 1.0 and job.error is None


def test_stale_job_is_requeued_with_new_seq_and_old_owner_loses_it(url: str) -> None:
    jid = make(url)
    assert jobs.claim(jid, 1, worker="w1", celery_task_id="c1", db_url=url)
    assert jobs.reap_stale(db_url=url) == []  # fresh heartbeat: left alone
    assert jobs.reap_stale(db_url=url, now=utcnow() + timedelta(seconds=60)) == [jid]
    beat = jobs.heartbeat(jid, 1, db_url=url)
    assert not beat.owned  # the presumed-dead worker learns it lost the job
    assert not jobs.report_progress(jid, 1, 0.5, "half", None, db_url=url)
    assert jobs.claim(jid, 1, worker="w1", celery_task_id="c1", db_url=url) is None  # old message
    again = jobs.claim(jid, 2, worker="w2", celery_task_id="c2", db_url=url)
    assert again is not None and again.attempts == 2
    assert jobs.finish(jid, 2, "succeeded", result={}, db_url=url)
    assert statuses(url, jid) == ["queued", "running", "queued", "running", "succeeded"]


def test_job_fails_after_max_worker_losses(url: str) -> None:
    jid = make(url)
    for seq in (1, 2, 3):
        assert jobs.claim(jid, seq, worker=f"w{seq}", celery_task_id=None, db_url=url)
        jobs.reap_stale(db_url=url, now=utcnow() + timedelta(seconds=60))
    with session_scope(url, write=False) as s:
        job = jobs.get(s, jid)
        assert job.status == "failed" and job.error["type"] == "WorkerLost" and job.attempts == 3


def test_cancel_semantics(url: str) -> None:
    queued = make(url)
    assert jobs.cancel(queued, by="op", db_url=url).status == "cancelled"
    assert jobs.claim(queued, 1, worker="w", celery_task_id=None, db_url=url) is None
    running = make(url)
    jobs.claim(running, 1, worker="w", celery_task_id=None, db_url=url)
    job = jobs.cancel(running, by="op", db_url=url)
    assert job.status == "running" and job.cancel_requested
    assert jobs.heartbeat(running, 1, write=False, db_url=url).cancel_requested
    jobs.finish(running, 1, "cancelled", db_url=url)
    done = make(url)
    jobs.claim(done, 1, worker="w", celery_task_id=None, db_url=url)
    jobs.finish(done, 1, "succeeded", result={}, db_url=url)
    with pytest.raises(jobs.JobError) as exc:
        jobs.cancel(done, by="op", db_url=url)
    assert exc.value.code == "conflict"


def test_outbox_lists_undispatched_and_lost_messages(url: str) -> None:
    never_sent = make(url)
    pending = {j.id for j in jobs.pending_dispatch(db_url=url, older_than_s=0)}
    assert never_sent in pending
    # Mark as sent to broker run "A"; a broker now running as "B" restarted and lost it.
    from sqlalchemy import update

    from core.models import Job

    with session_scope(url) as s:
        s.execute(update(Job).where(Job.id == never_sent).values(dispatched_at=utcnow(), broker_run_id="A"))
    assert never_sent not in {j.id for j in jobs.pending_dispatch(db_url=url, older_than_s=0, broker_run_id="A")}
    assert never_sent in {j.id for j in jobs.pending_dispatch(db_url=url, older_than_s=0, broker_run_id="B")}


def test_listing_pages_and_filters(url: str) -> None:
    ids = [make(url) for _ in range(5)]
    with session_scope(url, write=False) as s:
        page = jobs.list_jobs(s, queue="ml", status="queued", limit=2, offset=0)
        assert page.total >= 5 and [j.id for j in page.items] == ids[::-1][:2]
        page2 = jobs.list_jobs(s, queue="ml", status="queued", limit=2, offset=2)
        assert [j.id for j in page2.items] == ids[::-1][2:4]


def test_silent_worker_is_never_taken_over_under_the_same_seq(url: str) -> None:
    from sqlalchemy import update

    from core.models import Job

    jid = make(url)
    assert jobs.claim(jid, 1, worker="A", celery_task_id=None, db_url=url)
    with session_scope(url) as s:  # A has been silent for a minute (paused VM, slow lock…)
        s.execute(update(Job).where(Job.id == jid).values(heartbeat_at=utcnow() - timedelta(seconds=60)))
    assert jobs.claim(jid, 1, worker="B", celery_task_id=None, db_url=url) is None  # a duplicate message
    assert jobs.heartbeat(jid, 1, db_url=url).owned  # A still owns it until the reaper decides


def test_retries_do_not_count_as_worker_losses(url: str) -> None:
    jid = make(url)
    for _ in range(2):  # two transient failures, each retried
        assert jobs.claim(jid, 1, worker="w", celery_task_id=None, db_url=url)
        assert jobs.release_for_retry(jid, 1, reason="busy", db_url=url)
    assert jobs.claim(jid, 1, worker="w", celery_task_id=None, db_url=url)
    assert jid in jobs.reap_stale(db_url=url, now=utcnow() + timedelta(seconds=60))  # first loss: requeued
    with session_scope(url, write=False) as s:
        job = jobs.get(s, jid)
        assert job.status == "queued" and job.attempts == 3 and job.losses == 1 and job.dispatch_seq == 2


def test_reaper_fails_a_silent_job_past_its_deadline(url: str) -> None:
    jid = jobs.submit(task_name="ml.ping", queue="ml", kind="ping", params={}, submitted_by="t", dispatcher=None,
                      db_url=url, timeout_s=10).id
    assert jobs.claim(jid, 1, worker="w", celery_task_id=None, db_url=url)
    jobs.reap_stale(db_url=url, now=utcnow() + timedelta(seconds=60))
    with session_scope(url, write=False) as s:
        job = jobs.get(s, jid)
        assert job.status == "failed" and job.error["type"] == "JobTimedOut" and "10 s" in job.error["message"]


def test_log_events_only_from_the_owner(url: str) -> None:
    jid = make(url)
    assert not jobs.log_event(jid, 1, "info", "before start", db_url=url)
    jobs.claim(jid, 1, worker="w", celery_task_id=None, db_url=url)
    assert jobs.log_event(jid, 1, "info", "working", db_url=url)
    assert not jobs.log_event(jid, 2, "info", "stale owner", db_url=url)
    jobs.finish(jid, 1, "succeeded", result={}, db_url=url)
    assert not jobs.log_event(jid, 1, "info", "after the end", db_url=url)


def test_reaper_waits_a_stale_period_after_the_database_comes_back() -> None:
    """While the database was down no worker could heartbeat: silence is counted only from when it
    is reachable again."""
    now = [1000.0]
    gate = jobs.ReapGate(30.0, clock=lambda: now[0])
    assert gate.allows()  # no outage seen
    gate.observe({"requeued": 0, "dispatched": 0, "db_unreachable": 1})
    assert not gate.allows()
    now[0] += 100
    gate.observe({"requeued": 0, "dispatched": 0})  # the database answers again
    assert not gate.allows()
    now[0] += 29
    assert not gate.allows()
    now[0] += 1
    assert gate.allows()

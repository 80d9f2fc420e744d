"""The job service: the single place that creates, dispatches, claims, updates and finishes jobs.

Life of a job
-------------
1. `submit` inserts the row (`queued`) and its first event and commits; only then is the Celery
   message sent (`dispatch`). If the broker is down the row stays undispatched (an outbox) and the
   maintenance loop sends it when the broker is back: no job is lost and none is stuck.
2. A worker `claim`s the job for the message's `dispatch_seq`. Only one claim can win, so a
   duplicated or redelivered message for a job that already ran, or is running elsewhere, is a no-op.
3. While running, the worker `heartbeat`s. Each heartbeat also tells it whether a cancel was asked
   for and whether it still owns the job. A job whose heartbeat goes silent (worker killed, machine
   gone) is requeued by `reap_stale` with a new `dispatch_seq`, so the old message can't run it again.
4. `finish` writes the terminal state exactly once, and only for the current owner. What a job
   made (a registry row, a dataset row, an explanation) is staged as an `Output` and its row is
   inserted in the same transaction as the job's success, after the conditional update: a run
   that no longer owns the job writes neither.

All writes are single conditional UPDATEs so that several API processes and workers can race safely.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from queue import Empty, SimpleQueue
from typing import Any, Protocol, TypeVar

from sqlalchemy import and_, bindparam, func, insert, or_, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from core.db import session_scope
from core.idempotency import KeyClaim, Replay
from core.idempotency import existing as idempotency_existing
from core.models import TERMINAL_STATUSES, IdempotencyKey, Job, JobEvent, UTCDateTime, new_id, utcnow
from core.settings import get_settings

log = logging.getLogger("pm.jobs")
T = TypeVar("T")


class JobError(Exception):
    """A request about a job that can't be honoured; `code` maps to an HTTP status."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}


class Output(Protocol):
    """Something a job made whose row is written only as part of finishing it (see `finish`)."""

    def record(self, session: Session) -> dict[str, Any]: ...  # insert the row; fields to merge into the result

    def discard(self) -> None: ...  # the row was never written: remove what was staged


class Dispatcher(Protocol):
    """Sends a job's message to the broker; raises on broker failure."""

    def send(self, job: Job) -> str: ...  # returns the Celery task id

    def run_id(self) -> str | None: ...  # identity of the broker process (changes on restart)


@dataclass
class Page:
    items: list[Job]
    total: int
    limit: int
    offset: int


_INSERT_EVENT = insert(JobEvent)


def add_event(session: Session, job_id: str, type_: str, data: dict[str, Any]) -> None:
    # A Core INSERT: no unit-of-work bookkeeping on the hot path of every job.
    session.connection().execute(_INSERT_EVENT, [{"job_id": job_id, "type": type_, "data": data, "ts": utcnow()}])


# --------------------------------------------------------------------------- API side
def task_id_for(job_id: str, seq: int) -> str:
    return f"{job_id}-{seq}"


class DispatchLog:
    """Records of sent messages, written to the job rows in one batch a moment later.

    Marking each job as dispatched in its own transaction doubled the writes per submitted job.
    Losing this buffer (process crash) is safe: those jobs look undispatched to the outbox and are
    sent again, and a duplicate message can't run a job twice (see `claim`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[tuple[str, int, str | None, datetime]] = []

    def add(self, job_id: str, seq: int, run_id: str | None) -> None:
        with self._lock:
            self._items.append((job_id, seq, run_id, utcnow()))

    def flush(self, db_url: str | None = None) -> int:
        with self._lock:
            items, self._items = self._items, []
        if not items:
            return 0
        groups: dict[tuple[int, str | None], list[str]] = {}
        for job_id, seq, run_id, _ in items:
            groups.setdefault((seq, run_id), []).append(job_id)
        sent_at = max(i[3] for i in items)
        try:
            with session_scope(db_url) as session:
                for (seq, run_id), ids in groups.items():
                    session.execute(update(Job).where(Job.id.in_(ids), Job.dispatch_seq == seq,
                                                      Job.status == "queued")
                                    .values(dispatched_at=sent_at, broker_run_id=run_id))
        except Exception:
            with self._lock:
                self._items[:0] = items  # keep them for the next flush
            raise
        return len(items)


class GroupCommitter:
    """Inserts new jobs from many request threads in shared transactions (group commit).

    With SQLite every write transaction takes the database-wide write lock, and a request thread
    holding it can be kept off the CPU by the others for milliseconds while workers wait. One
    writer thread draining whatever submissions are pending takes the lock once per batch.
    Each caller still returns only after its own row is committed.
    """

    MAX_BATCH = 200

    def __init__(self, db_url: str | None = None) -> None:
        self.db_url = db_url
        self._queue: SimpleQueue[tuple[list[dict[str, Any]], Future[None]]] = SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def insert(self, rows: list[dict[str, Any]]) -> None:
        """rows: [{"job": {...}, "event": {...}}]; blocks until committed (raises what the commit raised)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="pm-job-writer", daemon=True)
                self._thread.start()
        done: Future[None] = Future()
        self._queue.put((rows, done))
        done.result()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except Empty:
                    break
            try:
                with session_scope(self.db_url) as session:
                    rows = [r for rs, _ in batch for r in rs]
                    session.execute(insert(Job), [r["job"] for r in rows])
                    session.execute(insert(JobEvent), [r["event"] for r in rows])
            except Exception as exc:  # noqa: BLE001 - every caller in the batch gets the error
                for _, fut in batch:
                    fut.set_exception(exc)
                continue
            for _, fut in batch:
                fut.set_result(None)


def submit(
    *,
    task_name: str,
    queue: str,
    kind: str,
    params: dict[str, Any],
    submitted_by: str | None,
    dispatcher: Dispatcher | None,
    timeout_s: int | None = None,
    db_url: str | None = None,
    dispatch_log: DispatchLog | None = None,
    committer: GroupCommitter | None = None,
    idempotency: KeyClaim | None = None,
) -> Job:
    """Create a job row, commit it, then send its message. Returns the job as stored.

    With an idempotency claim, the key's row is inserted in the job's own transaction (not through
    the group committer, whose batch one duplicate would fail); if another request took the key
    first, `Replay` (same request) or `KeyReused` (a different one) is raised and nothing is written.
    """
    settings = get_settings()
    timeout = min(timeout_s or settings.max_job_seconds, settings.max_job_seconds)
    job_id, now = new_id(), utcnow()
    values = {"id": job_id, "kind": kind, "task_name": task_name, "queue": queue, "params": params,
              "submitted_by": submitted_by, "timeout_s": timeout, "status": "queued", "progress": 0.0,
              "dispatch_seq": 1, "attempts": 0, "cancel_requested": False, "message": "queued",
              "celery_task_id": task_id_for(job_id, 1), "created_at": now, "updated_at": now}
    event = {"job_id": job_id, "type": "status", "ts": now,
             "data": {"status": "queued", "message": "queued", "progress": 0.0}}
    if idempotency is not None:
        try:
            with session_scope(db_url) as session:
                idempotency.clear_expired(session)
                session.execute(insert(Job), [values])
                session.execute(insert(JobEvent), [event])
                session.execute(insert(IdempotencyKey), [idempotency.row(job_id)])
        except IntegrityError:
            winner = idempotency_existing(idempotency, db_url)  # raises KeyReused for another request
            if winner is None:
                raise
            raise Replay(winner) from None
    elif committer is not None:
        committer.insert([{"job": values, "event": event}])
    else:
        with session_scope(db_url) as session:
            session.execute(insert(Job), [values])
            session.execute(insert(JobEvent), [event])
    job = Job(**values)
    if dispatcher is not None:
        dispatch(job, dispatcher, db_url=db_url, dispatch_log=dispatch_log)
    return job


def dispatch(job: Job, dispatcher: Dispatcher, *, db_url: str | None = None,
             dispatch_log: DispatchLog | None = None) -> bool:
    """Send the job's message and record it as dispatched (now, or batched through `dispatch_log`).

    False, with the job left in the outbox, if the broker is down.
    """
    try:
        dispatcher.send(job)
    except Exception as exc:  # noqa: BLE001 - any broker failure leaves the job in the outbox
        log.warning("dispatch deferred: broker unavailable", extra={"job_id": job.id, "error": repr(exc)[:300]})
        return False
    now = utcnow()
    if dispatch_log is not None:
        dispatch_log.add(job.id, job.dispatch_seq, dispatcher.run_id())
    else:
        with session_scope(db_url) as session:
            session.execute(
                # Also for a re-send after a broker restart: record the new run, or the outbox would
                # see the old run id and send the job again on every tick.
                update(Job).where(Job.id == job.id, Job.dispatch_seq == job.dispatch_seq, Job.status == "queued")
                .values(dispatched_at=now, broker_run_id=dispatcher.run_id())
            )
    job.dispatched_at = now
    return True


ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")


def get_by_id(session: Session, cls: type[T], record_id: str, what: str) -> T:
    """The row of `cls` with this id, or a `not_found` JobError naming `<what>_id`.

    Ids are 32 hex digits: anything else can't exist and never reaches the database.
    """
    row = session.get(cls, record_id) if ID_PATTERN.match(record_id) else None
    if row is None:
        raise JobError("not_found", f"no {what} with id {record_id!r}", {f"{what}_id": record_id})
    return row


def get(session: Session, job_id: str) -> Job:
    return get_by_id(session, Job, job_id, "job")


def list_jobs(session: Session, *, status: str | None = None, kind: str | None = None, queue: str | None = None,
              limit: int = 50, offset: int = 0) -> Page:
    conds = []
    if status:
        conds.append(Job.status == status)
    if kind:
        conds.append(Job.kind == kind)
    if queue:
        conds.append(Job.queue == queue)
    where = and_(*conds) if conds else None
    q = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit).offset(offset)
    cq = select(func.count()).select_from(Job)
    if where is not None:
        q, cq = q.where(where), cq.where(where)
    return Page(items=list(session.scalars(q)), total=session.scalar(cq) or 0, limit=limit, offset=offset)


def events_after(session: Session, job_id: str, after_id: int = 0, limit: int = 500) -> list[JobEvent]:
    q = select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.id > after_id).order_by(JobEvent.id).limit(limit)
    return list(session.scalars(q))


def cancel(job_id: str, *, by: str | None, db_url: str | None = None) -> Job:
    """Cancel a job: a queued one ends `cancelled` now; a running one is asked to stop at its next check."""
    now = utcnow()
    with session_scope(db_url) as session:
        res = session.execute(
            update(Job).where(Job.id == job_id, Job.status == "queued")
            .values(status="cancelled", cancel_requested=True, finished_at=now, updated_at=now,
                    message=f"cancelled before it started by {by or 'unknown'}")
        )
        if res.rowcount == 1:
            add_event(session, job_id, "status", {"status": "cancelled", "message": f"cancelled by {by or 'unknown'}"})
        else:
            res = session.execute(
                update(Job).where(Job.id == job_id, Job.status == "running", Job.cancel_requested.is_(False))
                .values(cancel_requested=True, updated_at=now)
            )
            if res.rowcount == 1:
                add_event(session, job_id, "log", {"level": "info", "message": f"cancel requested by {by or 'unknown'}"})
        job = get(session, job_id)
        if job.status in TERMINAL_STATUSES and job.status != "cancelled":
            raise JobError("conflict", f"job {job_id} already {job.status}; only queued or running jobs can be cancelled",
                           {"job_id": job_id, "status": job.status})
        return job


# --------------------------------------------------------------------------- worker side
# The two statements every job runs, built once: constructing them per call cost more CPU than
# SQLite spent executing them (measured with cProfile on claim()).
_CLAIM = (
    update(Job)
    # Only from `queued`: a job whose worker went silent is requeued by the reaper with a new
    # dispatch_seq, never taken over under the old one (the silent worker may still be running it).
    .where(Job.id == bindparam("jid"), Job.dispatch_seq == bindparam("seq"), Job.status == "queued")
    .values(status="running", worker=bindparam("worker"), celery_task_id=bindparam("ctid"),
            attempts=Job.attempts + 1, started_at=bindparam("now", type_=UTCDateTime()),
            heartbeat_at=bindparam("now", type_=UTCDateTime()), updated_at=bindparam("now", type_=UTCDateTime()),
            message="running")
    .returning(Job.attempts, Job.progress, Job.params, Job.timeout_s)
)
# PostgreSQL: data-modifying CTE, so the claim and its "running" event are one statement.
_PG_CLAIM = text("""
WITH claimed AS (
    UPDATE jobs SET status = 'running', worker = :worker, celery_task_id = :ctid, attempts = attempts + 1,
                    started_at = :now, heartbeat_at = :now, updated_at = :now, message = 'running'
    WHERE id = :jid AND dispatch_seq = :seq AND status = 'queued'
    RETURNING id, attempts, progress, params, timeout_s
), event AS (
    INSERT INTO job_events (job_id, ts, type, data)
    SELECT id, :now, 'status', jsonb_build_object('status', 'running', 'message', 'running', 'worker',
                                                  CAST(:worker AS text), 'attempt', attempts, 'progress', progress)
    FROM claimed
)
SELECT attempts, progress, params, timeout_s FROM claimed
""").bindparams(bindparam("now", type_=UTCDateTime()))
_PG_FINISH_SQL = """
WITH finished AS (
    UPDATE jobs SET status = :status, finished_at = :now, updated_at = :now, result = :result, error = :error,
                    message = :message{progress}
    WHERE id = :jid AND dispatch_seq = :seq AND status = 'running'
    RETURNING id
)
INSERT INTO job_events (job_id, ts, type, data) SELECT id, :now, 'status', :data FROM finished
"""
_PG_JSON = {n: bindparam(n, type_=JSONB()) for n in ("result", "error", "data")}
_PG_FINISH, _PG_FINISH_SUCCEEDED = (
    text(_PG_FINISH_SQL.format(progress=p)).bindparams(bindparam("now", type_=UTCDateTime()), *_PG_JSON.values())
    for p in ("", ", progress = 1.0")
)
_FINISH_VALUES = {c: bindparam(c, type_=Job.__table__.c[c].type)
                  for c in ("status", "finished_at", "updated_at", "result", "error", "message")}
_FINISH_WHERE = (Job.id == bindparam("jid"), Job.dispatch_seq == bindparam("seq"), Job.status == "running")
_FINISH = update(Job).where(*_FINISH_WHERE).values(**_FINISH_VALUES)
_FINISH_SUCCEEDED = update(Job).where(*_FINISH_WHERE).values(**_FINISH_VALUES, progress=1.0)


@dataclass
class Claim:
    job_id: str
    attempts: int
    params: dict[str, Any]
    timeout_s: int
    deadline: datetime


def claim(job_id: str, seq: int, *, worker: str, celery_task_id: str | None, db_url: str | None = None) -> Claim | None:
    """Take ownership of a job for dispatch `seq`. None if the job is finished, cancelled, owned, or superseded."""
    now = utcnow()
    args = {"jid": job_id, "seq": seq, "worker": worker, "ctid": celery_task_id, "now": now}
    with session_scope(db_url) as session:
        conn = session.connection()
        if conn.dialect.name == "postgresql":
            # One round trip: the claim and its event in a single statement.
            row = conn.execute(_PG_CLAIM, args).first()
            if row is None:
                return None
            attempts, progress, params, timeout_s = row
        else:
            row = conn.execute(_CLAIM, args).first()
            if row is None:
                return None
            attempts, progress, params, timeout_s = row
            add_event(session, job_id, "status", {"status": "running", "message": "running", "worker": worker,
                                                   "attempt": attempts, "progress": progress})
        return Claim(job_id=job_id, attempts=attempts, params=dict(params or {}), timeout_s=timeout_s,
                     deadline=now + timedelta(seconds=timeout_s))


@dataclass
class Beat:
    owned: bool
    cancel_requested: bool


def heartbeat(job_id: str, seq: int, *, write: bool = True, db_url: str | None = None) -> Beat:
    """Prove the job is alive (`write`) and learn whether it is still ours and whether to cancel."""
    owned = (Job.id == job_id, Job.dispatch_seq == seq, Job.status == "running")
    with session_scope(db_url, write=write) as session:
        if write:
            row = session.execute(update(Job).where(*owned).values(heartbeat_at=utcnow())
                                  .returning(Job.cancel_requested)).first()
        else:
            row = session.execute(select(Job.cancel_requested).where(*owned)).first()
    return Beat(owned=row is not None, cancel_requested=bool(row[0]) if row else False)


def report_progress(job_id: str, seq: int, fraction: float, message: str | None, metrics: dict[str, Any] | None,
                    *, db_url: str | None = None) -> bool:
    now = utcnow()
    values: dict[str, Any] = {"progress": fraction, "heartbeat_at": now, "updated_at": now}
    if message is not None:
        values["message"] = message
    if metrics is not None:
        values["metrics"] = metrics
    with session_scope(db_url) as session:
        res = session.execute(update(Job).where(Job.id == job_id, Job.dispatch_seq == seq, Job.status == "running")
                              .values(**values).execution_options(synchronize_session=False))
        if res.rowcount != 1:
            return False
        data: dict[str, Any] = {"fraction": fraction, "message": message}
        if metrics is not None:
            data["metrics"] = metrics
        add_event(session, job_id, "progress", data)
    return True


def log_event(job_id: str, seq: int, level: str, message: str, *, db_url: str | None = None) -> bool:
    """Append a log event, only while this dispatch still owns the running job."""
    return owned_event(job_id, seq, "log", {"level": level, "message": message}, db_url=db_url)


def owned_event(job_id: str, seq: int, type_: str, data: dict[str, Any], *, db_url: str | None = None) -> bool:
    """Append an event of any type (log, token, ...), only while this dispatch owns the running job."""
    with session_scope(db_url) as session:
        owned = session.execute(select(Job.id).where(Job.id == job_id, Job.dispatch_seq == seq,
                                                     Job.status == "running")).first()
        if owned is None:
            return False
        add_event(session, job_id, type_, data)
    return True


def finish(job_id: str, seq: int, status: str, *, result: dict[str, Any] | None = None,
           error: dict[str, Any] | None = None, message: str | None = None, db_url: str | None = None,
           outputs: Sequence[Output] = ()) -> bool:
    """Write the terminal state. Only the current owner can; returns False if it no longer owns the job.

    `outputs` (only with `succeeded`) are recorded in the same transaction, after the conditional
    update has proved ownership and locked the row: the job's success and its registry/dataset rows
    commit together or not at all. Their `record` results are merged into `result`.
    """
    assert status in TERMINAL_STATUSES
    assert not outputs or status == "succeeded"
    now = utcnow()
    values: dict[str, Any] = {"status": status, "finished_at": now, "updated_at": now, "result": result,
                              "error": error, "message": message or status}
    data: dict[str, Any] = {"status": status, "message": values["message"]}
    if error:
        data["error"] = error
    if status == "succeeded":
        data["progress"] = 1.0
    with session_scope(db_url) as session:
        conn = session.connection()
        if outputs:
            if conn.execute(_FINISH_SUCCEEDED, {"jid": job_id, "seq": seq, **values}).rowcount != 1:
                return False
            merged = dict(result or {})
            for output in outputs:
                merged.update(output.record(session) or {})
            session.flush()
            conn.execute(update(Job).where(Job.id == job_id).values(result=merged))
            add_event(session, job_id, "status", data)
            return True
        if conn.dialect.name == "postgresql":
            # One round trip: the terminal state and its event in a single statement.
            stmt = _PG_FINISH_SUCCEEDED if status == "succeeded" else _PG_FINISH
            return conn.execute(stmt, {"jid": job_id, "seq": seq, "now": now, "data": data, **values}).rowcount == 1
        stmt = _FINISH_SUCCEEDED if status == "succeeded" else _FINISH
        if conn.execute(stmt, {"jid": job_id, "seq": seq, **values}).rowcount != 1:
            return False
        add_event(session, job_id, "status", data)
    return True


def release_for_retry(job_id: str, seq: int, *, reason: str, db_url: str | None = None) -> bool:
    """Hand a running job back to `queued` so a retried message (same seq) can claim it again."""
    now = utcnow()
    with session_scope(db_url) as session:
        res = session.execute(update(Job).where(Job.id == job_id, Job.dispatch_seq == seq, Job.status == "running")
                              .values(status="queued", worker=None, updated_at=now, message=f"retrying: {reason}"))
        if res.rowcount != 1:
            return False
        add_event(session, job_id, "status", {"status": "queued", "message": f"retrying: {reason}"})
    return True


def mark_undispatched(job_id: str, seq: int, *, db_url: str | None = None) -> None:
    """The message for this queued job was not delivered (a retry could not be published): let the
    outbox send it again."""
    with session_scope(db_url) as session:
        session.execute(update(Job).where(Job.id == job_id, Job.dispatch_seq == seq, Job.status == "queued")
                        .values(dispatched_at=None, updated_at=utcnow()))


# --------------------------------------------------------------------------- maintenance
def reap_stale(*, db_url: str | None = None, now: datetime | None = None) -> list[str]:
    """Requeue running jobs whose worker stopped heartbeating; fail them after too many losses."""
    settings = get_settings()
    now = now or utcnow()
    cutoff = now - timedelta(seconds=settings.stale_job_seconds)
    requeued: list[str] = []
    with session_scope(db_url, write=False) as session:
        candidates = list(session.execute(
            select(Job.id, Job.dispatch_seq, Job.losses, Job.worker, Job.cancel_requested, Job.started_at,
                   Job.timeout_s)
            .where(Job.status == "running", Job.heartbeat_at < cutoff)
        ))
    for job_id, seq, losses, worker, cancel_requested, started_at, timeout_s in candidates:
        lost = f"worker {worker or '?'} stopped responding"
        with session_scope(db_url) as session:
            base = update(Job).where(Job.id == job_id, Job.dispatch_seq == seq, Job.status == "running",
                                     Job.heartbeat_at < cutoff)
            error: dict[str, Any] | None = None
            if cancel_requested:
                status = "cancelled"
            elif started_at and now >= started_at + timedelta(seconds=timeout_s):
                status, error = "failed", {"type": "JobTimedOut",
                                           "message": f"{lost} after its time limit of {timeout_s} s"}
            elif losses + 1 >= settings.max_job_attempts:
                status, error = "failed", {"type": "WorkerLost",
                                           "message": f"{lost}; gave up after {losses + 1} lost workers"}
            else:
                status = "queued"
            if status != "queued":
                res = session.execute(base.values(status=status, finished_at=now, updated_at=now, error=error,
                                                  losses=Job.losses + 1,
                                                  message=error["message"] if error else "cancelled"))
                if res.rowcount == 1:
                    add_event(session, job_id, "status", {"status": status, "message": lost, **({"error": error} if error else {})})
                continue
            res = session.execute(base.values(status="queued", dispatch_seq=seq + 1, dispatched_at=None, worker=None,
                                              losses=Job.losses + 1,
                                              celery_task_id=task_id_for(job_id, seq + 1), updated_at=now,
                                              message=f"requeued: {lost}"))
            if res.rowcount == 1:
                add_event(session, job_id, "status", {"status": "queued", "message": f"requeued: {lost}"})
                requeued.append(job_id)
                log.warning("job requeued after worker loss", extra={"job_id": job_id, "worker": worker,
                                                                      "losses": losses + 1})
    return requeued


def pending_dispatch(*, db_url: str | None = None, older_than_s: float = 3.0, broker_run_id: str | None = None,
                     limit: int = 500) -> Sequence[Job]:
    """Queued jobs whose message was never sent, or was sent to a broker that has since restarted empty."""
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    conds = [and_(Job.dispatched_at.is_(None), Job.updated_at < cutoff)]
    if broker_run_id:
        conds.append(and_(Job.dispatched_at.is_not(None), Job.broker_run_id != broker_run_id))
    with session_scope(db_url, write=False) as session:
        return list(session.scalars(select(Job).where(Job.status == "queued", or_(*conds))
                                    .order_by(Job.created_at).limit(limit)))


def flush_outbox(dispatcher: Dispatcher, *, db_url: str | None = None, older_than_s: float = 3.0) -> int:
    sent = 0
    for job in pending_dispatch(db_url=db_url, older_than_s=older_than_s, broker_run_id=dispatcher.run_id()):
        if not dispatch(job, dispatcher, db_url=db_url):
            break  # broker still down; try again next tick
        sent += 1
    return sent


def maintenance_tick(dispatcher: Dispatcher, *, db_url: str | None = None, outbox_delay_s: float = 3.0,
                     on_error: Callable[[Exception], None] | None = None, reap: bool = True) -> dict[str, int]:
    """One reaper + outbox pass. `reap=False` skips the reaper (see `ReapGate`)."""
    out = {"requeued": 0, "dispatched": 0}
    try:
        if reap:
            out["requeued"] = len(reap_stale(db_url=db_url))
        out["dispatched"] = flush_outbox(dispatcher, db_url=db_url, older_than_s=outbox_delay_s)
    except Exception as exc:  # noqa: BLE001 - the loop must survive a database blip
        if isinstance(exc, DBAPIError):
            out["db_unreachable"] = 1
        if on_error:
            on_error(exc)
        else:
            log.exception("maintenance tick failed")
    return out


class ReapGate:
    """Whether the reaper may run: not until STALE_JOB_SECONDS after the database came back.

    While the database is unreachable no worker can heartbeat, so every running job looks silent the
    moment it returns; reaping then would requeue healthy jobs and throw away the outcomes their
    workers are about to write. Silence counts only while the database was reachable (as this
    process saw it): after an outage each worker gets one full STALE_JOB_SECONDS to heartbeat or
    finish. A worker that really died is reaped that much later.
    """

    def __init__(self, stale_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stale_s, self.clock = stale_s, clock
        self.down = False
        self.back_at: float | None = None

    def allows(self) -> bool:
        if self.down:
            return False
        return self.back_at is None or self.clock() - self.back_at >= self.stale_s

    def observe(self, tick: dict[str, int]) -> None:
        if tick.get("db_unreachable"):
            self.down = True
        elif self.down:
            self.down, self.back_at = False, self.clock()

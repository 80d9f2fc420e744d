"""`LoggingTask`: the base of every job task, and the `JobContext` it hands to job code.

It owns the bookkeeping so task modules stay thin:
- claims the job (a redelivered or duplicated message for a finished or superseded job is a no-op);
- logs start / success / failure / retry / skip as structured lines (job id, task, queue, attempt,
  duration, error);
- has a watchdog heartbeat the job row and poll for cancellation every 0.5 s;
- gives job code `progress()`, `check()`/`should_stop()`, a cancellable `sleep()` and an in-task
  deadline. The solo pool (Windows) has no time limits and can't kill a running task, so both
  cancellation and deadlines work through these checks;
- writes the terminal state (succeeded / failed / cancelled) with the result or error.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from celery import Task
from celery.exceptions import Retry
from sqlalchemy.exc import DBAPIError

from core import jobs
from core.models import utcnow
from core.settings import get_settings

log = logging.getLogger("pm.tasks")

CHECK_INTERVAL_S = 0.5
DEADLINE_GRACE = timedelta(seconds=60)


class JobStopped(Exception):
    """Base for the ways a job is stopped from outside its own code."""


class JobCancelled(JobStopped):
    pass


class JobTimedOut(JobStopped):
    pass


class JobLeaseLost(JobStopped):
    """Another dispatch of this job took over (this worker was presumed dead); stop without writing."""


class RetryableJobError(Exception):
    """Raise from job code for a transient failure; the job is retried with backoff."""


class JobContext:
    """What a running job can do: report progress, check for stop requests, sleep cancellably."""

    def __init__(self, job_id: str, seq: int, params: dict[str, Any], attempt: int, deadline: datetime,
                 timeout_s: int) -> None:
        self.job_id = job_id
        self.timeout_s = timeout_s
        self.seq = seq
        self.params = params
        self.attempt = attempt
        self.deadline = deadline
        self._cancel = threading.Event()
        self._lost = threading.Event()
        self._last_progress_write = 0.0
        self._pending: tuple[float, str | None, dict[str, Any] | None] | None = None
        self.settings = get_settings()

    # -- stop checks ------------------------------------------------------------------------
    def check(self) -> None:
        """Raise if the job must stop: cancelled, past its deadline, or taken over elsewhere."""
        if self._lost.is_set():
            raise JobLeaseLost("job was requeued elsewhere; this run stops")
        if self._cancel.is_set():
            raise JobCancelled("cancelled on request")
        if utcnow() >= self.deadline:
            raise JobTimedOut(f"job exceeded its time limit of {self.timeout_s} s")

    def should_stop(self) -> bool:
        try:
            self.check()
        except JobStopped:
            return True
        return False

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake to check for stop requests at least every 0.5 s."""
        end = time.monotonic() + seconds
        while True:
            self.check()
            left = end - time.monotonic()
            if left <= 0:
                return
            self._cancel.wait(min(CHECK_INTERVAL_S, left))

    # -- progress -----------------------------------------------------------------------------
    def progress(self, fraction: float, message: str | None = None, metrics: dict[str, Any] | None = None) -> None:
        """Record progress (0..1). Writes are throttled to ~4/s; the newest value always lands."""
        self.check()
        fraction = min(max(float(fraction), 0.0), 1.0)
        now = time.monotonic()
        self._pending = (fraction, message, metrics)
        if now - self._last_progress_write >= 0.25 or fraction >= 1.0:
            self.flush_progress()

    def flush_progress(self) -> None:
        if self._pending is None:
            return
        fraction, message, metrics = self._pending
        self._pending = None
        self._last_progress_write = time.monotonic()
        try:
            owned = jobs.report_progress(self.job_id, self.seq, fraction, message, metrics)
        except DBAPIError:
            # Progress is best effort: a database blip must not fail a healthy job. Keep the value
            # for the next write unless a newer one arrives first.
            log.warning("progress not recorded (database unavailable)", exc_info=True, extra={"job_id": self.job_id})
            self._pending = self._pending or (fraction, message, metrics)
            return
        if not owned:
            self._lost.set()

    def log(self, message: str, level: str = "info") -> None:
        if not jobs.log_event(self.job_id, self.seq, level, message):
            self._lost.set()

    def emit(self, type_: str, data: dict[str, Any]) -> None:
        """A job event of another type (e.g. `token` for streamed LLM text), for the SSE stream."""
        if not jobs.owned_event(self.job_id, self.seq, type_, data):
            self._lost.set()


class _Watchdog:
    """One thread per process that heartbeats every running job's row every HEARTBEAT_SECONDS and
    polls for cancellation every 0.5 s (a thread per job cost a measurable share of short jobs)."""

    def __init__(self) -> None:
        self._jobs: dict[str, tuple[JobContext, float]] = {}
        self._lock = threading.Lock()
        self._pid: int | None = None

    def watch(self, ctx: JobContext) -> None:
        with self._lock:
            self._jobs[ctx.job_id] = (ctx, time.monotonic())
            if self._pid != os.getpid():  # first job in this (possibly forked) process
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="pm-watchdog", daemon=True).start()

    def unwatch(self, ctx: JobContext) -> None:
        with self._lock:
            self._jobs.pop(ctx.job_id, None)

    def _run(self) -> None:
        while True:
            time.sleep(CHECK_INTERVAL_S)
            with self._lock:
                watched = list(self._jobs.values())
            for ctx, last_beat in watched:
                self._check(ctx, last_beat)

    def _check(self, ctx: JobContext, last_beat: float) -> None:
        # Reads are cheap and frequent (cancel latency); writes only every HEARTBEAT_SECONDS.
        write = time.monotonic() - last_beat >= ctx.settings.heartbeat_seconds
        if write and utcnow() > ctx.deadline + DEADLINE_GRACE:
            # Past its deadline and not stopping (blocked in I/O or C code, never calling check()):
            # stop vouching for it, so the reaper fails it with JobTimedOut.
            write = False
        try:
            beat = jobs.heartbeat(ctx.job_id, ctx.seq, write=write)
        except Exception:  # noqa: BLE001 - a database blip must not kill the job; retry next tick
            log.warning("heartbeat failed", exc_info=True, extra={"job_id": ctx.job_id})
            return
        with self._lock:
            if write and ctx.job_id in self._jobs:
                self._jobs[ctx.job_id] = (ctx, time.monotonic())
        if not beat.owned:
            ctx._lost.set()
        elif beat.cancel_requested:
            ctx._cancel.set()


_watchdog = _Watchdog()


JobFunction = Callable[[JobContext], dict[str, Any]]


class LoggingTask(Task):
    """Base class for every job task. Subclasses (via `@app.task(base=LoggingTask)`) call `run_job`."""

    abstract = True
    # The job store holds results, progress and errors; the result backend would only duplicate them.
    ignore_result = True
    max_retries = 3
    retry_backoff_s = 5.0

    def run_job(self, job_id: str, seq: int, fn: JobFunction) -> dict[str, Any]:
        queue = (self.request.delivery_info or {}).get("routing_key") or self.name.split(".", 1)[0]
        fields = {"job_id": job_id, "task": self.name, "queue": queue, "celery_task_id": self.request.id}
        worker = f"{self.request.hostname or socket.gethostname()}"
        try:
            claim = jobs.claim(job_id, seq, worker=worker, celery_task_id=self.request.id)
        except DBAPIError as exc:
            # The job store is unreachable: hand the message back for later instead of acking it
            # unrun (the job row would stay queued and dispatched forever).
            countdown = self.retry_backoff_s * (2 ** min(self.request.retries, 6))
            log.warning("job store unavailable; message retried", extra={**fields, "error": str(exc)[:300],
                                                                        "retry_in_s": countdown})
            raise self.retry(exc=exc, countdown=countdown, max_retries=None) from exc
        if claim is None:
            log.info("job skipped: already finished, running elsewhere or superseded", extra={**fields, "dispatch_seq": seq})
            return {"skipped": True}
        fields["attempt"] = claim.attempts
        ctx = JobContext(job_id, seq, claim.params, claim.attempts, claim.deadline, claim.timeout_s)
        _watchdog.watch(ctx)  # until the terminal state is written, so a slow write is not taken for a death
        started = time.monotonic()
        log.info("job started", extra=fields)
        result: dict[str, Any] | None = None
        error: dict[str, Any] | None = None
        try:
            try:
                result = fn(ctx)
                ctx.flush_progress()
                ctx.check()  # a cancel that arrived during the last step still wins
                status, message = "succeeded", "succeeded"
            except JobLeaseLost:
                log.warning("job abandoned: requeued elsewhere", extra={**fields, "duration_s": _dur(started)})
                return {"abandoned": True}
            except JobCancelled:
                status, message = "cancelled", "cancelled"
            except JobTimedOut as exc:
                status, message, error = "failed", str(exc), {"type": "JobTimedOut", "message": str(exc)}
            except RetryableJobError as exc:
                if self.request.retries < self.max_retries:
                    return self._retry(ctx, exc, fields, started)
                message = f"{exc} (gave up after {self.max_retries} retries)"
                status, error = "failed", {"type": type(exc).__name__, "message": message}
            except Exception as exc:  # noqa: BLE001 - any job error becomes a failed job with a readable error
                message = str(exc)[:2000] or type(exc).__name__
                status, error = "failed", {"type": type(exc).__name__, "message": message}
                log.exception("job code raised", extra={**fields, "error": error})
            written = self._finish(ctx, status, result=result if status == "succeeded" else None, error=error,
                                   message=message)
        finally:
            _watchdog.unwatch(ctx)
        extra = {**fields, "duration_s": _dur(started), **({"error": error} if error else {})}
        if not written:
            log.warning("job outcome discarded: job no longer owned", extra={**extra, "status": status})
        elif status == "failed":
            log.error("job failed", extra=extra)
        else:
            log.info(f"job {status}", extra=extra)
        return {status: True}

    FINISH_ATTEMPTS = 6

    def _finish(self, ctx: JobContext, status: str, **kw: Any) -> bool:
        """Write the terminal state, riding out a short database outage (the watchdog keeps the
        job alive meanwhile); if it can't be written the reaper requeues the job later."""
        for attempt in range(self.FINISH_ATTEMPTS):
            try:
                return jobs.finish(ctx.job_id, ctx.seq, status, **kw)
            except DBAPIError:
                if attempt == self.FINISH_ATTEMPTS - 1:
                    raise
                log.warning("could not record job outcome yet; retrying", exc_info=True, extra={"job_id": ctx.job_id})
                time.sleep(min(2 ** attempt, 10))
        return False

    def _retry(self, ctx: JobContext, exc: Exception, fields: dict[str, Any], started: float) -> dict[str, Any]:
        countdown = self.retry_backoff_s * (2 ** self.request.retries)
        jobs.release_for_retry(ctx.job_id, ctx.seq, reason=str(exc)[:500])
        log.warning("job will retry", extra={**fields, "duration_s": _dur(started), "error": str(exc),
                                             "retry_in_s": countdown})
        try:
            raise self.retry(exc=exc, countdown=countdown)
        except Retry:
            raise
        except Exception:  # noqa: BLE001 - the retry message could not be published (broker down)
            jobs.mark_undispatched(ctx.job_id, ctx.seq)  # the outbox sends it when the broker is back
            log.warning("retry message not published; job left to the outbox", exc_info=True, extra=fields)
            return {"queued": True}


def _dur(started: float) -> float:
    return round(time.monotonic() - started, 4)

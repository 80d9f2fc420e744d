"""`LoggingTask`: the base of every job task, and the `JobContext` it hands to job code.

It owns the bookkeeping so task modules stay thin:
- claims the job (a redelivered or duplicated message for a finished or superseded job is a no-op);
- logs start / success / failure / retry / skip as structured lines (job id, task, queue, attempt,
  duration, error);
- has a watchdog heartbeat the job row and poll for cancellation every 0.5 s;
- gives job code `progress()`, `check()`/`should_stop()`, a cancellable `sleep()` and an in-task
  deadline. The solo pool (Windows) has no time limits and can't kill a running task, so both
  cancellation and deadlines work through these checks;
- guards memory: a job whose process grows past WORKER_MAX_MEMORY_MB is stopped and failed with
  `memory_limit` (cooperatively first; in a prefork child, by ending the process if it doesn't stop);
- writes the terminal state (succeeded / failed / cancelled) with the result or error, and records
  what the job staged (`ctx.stage(...)`: registry and dataset rows) in that same transaction, so a
  run that lost its job writes nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import psutil
from celery import Task
from celery.exceptions import Retry
from celery.signals import worker_process_init
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from core import jobs
from core.models import utcnow
from core.settings import get_settings

log = logging.getLogger("pm.tasks")
OutputT = TypeVar("OutputT", bound="jobs.Output")

CHECK_INTERVAL_S = 0.5
DEADLINE_GRACE = timedelta(seconds=60)
MEMORY_GRACE_S = 3.0  # a job over the memory limit has this long to stop on its own
MEMORY_HARD_FACTOR = 2.0  # ... unless it reaches this multiple of the limit first
MEMORY_EXIT_CODE = 70
FINISH_MIN_WINDOW_S = 120.0  # a database outage at finish time is ridden out at least this long
MB = 1024 * 1024


class JobStopped(Exception):
    """Base for the ways a job is stopped from outside its own code."""


class JobCancelled(JobStopped):
    pass


class JobTimedOut(JobStopped):
    pass


class JobLeaseLost(JobStopped):
    """Another dispatch of this job took over (this worker was presumed dead); stop without writing."""


class JobMemoryLimit(JobStopped):
    """The job's process grew past WORKER_MAX_MEMORY_MB."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["message"])
        self.error = error


def memory_limit_error(limit_mb: int, rss_bytes: int) -> dict[str, Any]:
    rss_mb = round(rss_bytes / MB, 1)
    message = (f"job stopped: its worker process reached {rss_mb:g} MB resident memory, above "
               f"WORKER_MAX_MEMORY_MB={limit_mb}")
    return {"type": "MemoryLimitExceeded", "code": "memory_limit", "message": message,
            "details": {"setting": "WORKER_MAX_MEMORY_MB", "limit_mb": limit_mb, "rss_mb": rss_mb}}


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
        self._wake = threading.Event()  # set with any stop reason, so `sleep` returns at once
        self.memory_error: dict[str, Any] | None = None
        self.memory_since: float | None = None
        self.outputs: list[jobs.Output] = []
        self._last_progress_write = 0.0
        self._pending: tuple[float, str | None, dict[str, Any] | None] | None = None
        self.settings = get_settings()

    # -- stop checks ------------------------------------------------------------------------
    def check(self) -> None:
        """Raise if the job must stop: cancelled, past its deadline, or taken over elsewhere."""
        if self._lost.is_set():
            raise JobLeaseLost("job was requeued elsewhere; this run stops")
        if self.memory_error is not None:
            raise JobMemoryLimit(self.memory_error)
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
            self._wake.wait(min(CHECK_INTERVAL_S, left))

    # -- outputs ------------------------------------------------------------------------------
    def stage(self, output: OutputT) -> OutputT:
        """Hand over something the job made (a staged model or dataset) to be recorded in the same
        transaction that marks the job succeeded, only if this run still owns it; otherwise
        discarded (its file removed)."""
        self.outputs.append(output)
        return output

    def discard_outputs(self) -> None:
        outputs, self.outputs = self.outputs, []
        for output in outputs:
            try:
                output.discard()
            except Exception:  # noqa: BLE001 - an orphan left here is removed by core/cleanup.py
                log.warning("staged output not removed", exc_info=True, extra={"job_id": self.job_id})

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
            ctx._wake.set()
        elif beat.cancel_requested:
            ctx._cancel.set()
            ctx._wake.set()


_watchdog = _Watchdog()


class _MemoryGuard:
    """One thread per process that samples its resident size every 0.5 s while jobs run.

    Above WORKER_MAX_MEMORY_MB every running job of the process is asked to stop (its next
    `check()`/`should_stop()` raises JobMemoryLimit). A job still running MEMORY_GRACE_S later, or
    once the process reaches MEMORY_HARD_FACTOR x the limit, is stuck where it can't check (C code
    allocating): its failure is recorded (only if this run still owns the job) and, in a prefork
    pool child, the process ends; the pool starts a fresh child. The redelivered message finds the
    job terminal and is skipped, so it is not run again as a lost worker's job. The solo and threads
    pools get the cooperative stop and the recorded failure only: ending the process there would
    take the whole worker down.

    A thread of its own, so a database that hangs the heartbeat can't delay it.
    """

    def __init__(self) -> None:
        self._jobs: dict[str, JobContext] = {}
        self._lock = threading.Lock()
        self._pid: int | None = None
        self.may_exit = False  # set in prefork pool children (worker_process_init)

    def watch(self, ctx: JobContext) -> None:
        with self._lock:
            self._jobs[ctx.job_id] = ctx
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="pm-memory-guard", daemon=True).start()

    def unwatch(self, ctx: JobContext) -> None:
        with self._lock:
            self._jobs.pop(ctx.job_id, None)

    def _run(self) -> None:
        proc = psutil.Process()
        while True:
            time.sleep(CHECK_INTERVAL_S)
            with self._lock:
                watched = list(self._jobs.values())
            if not watched:
                continue
            try:
                rss = proc.memory_info().rss
            except psutil.Error:
                continue
            for ctx in watched:
                self._check(ctx, rss)

    def _check(self, ctx: JobContext, rss: int) -> None:
        limit_mb = ctx.settings.worker_max_memory_mb
        now = time.monotonic()
        if ctx.memory_error is None:
            if rss <= limit_mb * MB:
                return
            ctx.memory_error, ctx.memory_since = memory_limit_error(limit_mb, rss), now
            ctx._wake.set()
            log.error("job over its memory limit; stopping it", extra={"job_id": ctx.job_id,
                                                                        "error": ctx.memory_error})
            return
        assert ctx.memory_since is not None
        if now - ctx.memory_since < MEMORY_GRACE_S and rss < MEMORY_HARD_FACTOR * limit_mb * MB:
            return
        self.unwatch(ctx)  # enforced once
        error = ctx.memory_error
        try:
            written = jobs.finish(ctx.job_id, ctx.seq, "failed", error=error, message=error["message"])
        except Exception:  # noqa: BLE001 - unrecorded: the reaper requeues it as a lost worker's job
            log.warning("memory-limit failure not recorded", exc_info=True, extra={"job_id": ctx.job_id})
            written = False
        log.error("job did not stop at its memory limit" + ("; ending its process" if self.may_exit else ""),
                  extra={"job_id": ctx.job_id, "error": error, "recorded": written})
        if self.may_exit:
            for handler in logging.getLogger().handlers:
                handler.flush()
            os._exit(MEMORY_EXIT_CODE)


_memory_guard = _MemoryGuard()


@worker_process_init.connect
def _in_pool_child(**_: Any) -> None:
    # Sent in prefork children and (in the main process) by the solo pool: only a child may end itself.
    import billiard

    _memory_guard.may_exit = billiard.current_process().name != "MainProcess"


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
        _memory_guard.watch(ctx)
        started = time.monotonic()
        log.info("job started", extra=fields)
        result: dict[str, Any] | None = None
        error: dict[str, Any] | None = None
        status, written = "abandoned", False
        try:
            try:
                result = fn(ctx)
                ctx.flush_progress()
                ctx.check()  # a cancel that arrived during the last step still wins
                status, message = "succeeded", "succeeded"
            except JobLeaseLost:
                log.warning("job abandoned: requeued elsewhere", extra={**fields, "duration_s": _dur(started)})
                return {"abandoned": True}
            except JobMemoryLimit as exc:
                status, message, error = "failed", str(exc), exc.error
            except JobCancelled:
                status, message = "cancelled", "cancelled"
            except JobTimedOut as exc:
                status, message, error = "failed", str(exc), {"type": "JobTimedOut", "message": str(exc)}
            except RetryableJobError as exc:
                if self.request.retries < self.max_retries:
                    ctx.discard_outputs()
                    return self._retry(ctx, exc, fields, started)
                message = f"{exc} (gave up after {self.max_retries} retries)"
                status, error = "failed", {"type": type(exc).__name__, "message": message}
            except Exception as exc:  # noqa: BLE001 - any job error becomes a failed job with a readable error
                message = str(exc)[:2000] or type(exc).__name__
                status, error = "failed", {"type": type(exc).__name__, "message": message}
                log.exception("job code raised", extra={**fields, "error": error})
            _memory_guard.unwatch(ctx)  # the job code is done: nothing left to stop
            if status == "succeeded":
                try:
                    written = self._finish(ctx, status, result=result, message=message, outputs=ctx.outputs)
                except DBAPIError as exc:
                    if _transient(exc):
                        raise
                    # Recording the outputs failed for a reason retrying won't fix: a failed job.
                    message = f"could not record the job's outputs: {str(exc).splitlines()[0][:500]}"
                    status, error = "failed", {"type": type(exc).__name__, "message": message}
                    log.exception("job outputs not recorded", extra={**fields, "error": error})
            if status != "succeeded":
                written = self._finish(ctx, status, result=None, error=error, message=message)
        finally:
            _watchdog.unwatch(ctx)
            _memory_guard.unwatch(ctx)
            if not (written and status == "succeeded"):
                ctx.discard_outputs()  # keeps any file whose row exists after all
        extra = {**fields, "duration_s": _dur(started), **({"error": error} if error else {})}
        if not written:
            log.warning("job outcome discarded: job no longer owned", extra={**extra, "status": status})
        elif status == "failed":
            log.error("job failed", extra=extra)
        else:
            log.info(f"job {status}", extra=extra)
        return {status: True}

    def _finish(self, ctx: JobContext, status: str, **kw: Any) -> bool:
        """Write the terminal state, riding out a database outage (the watchdog keeps the job
        alive meanwhile, and the reaper waits after an outage, see `jobs.ReapGate`) until the job's
        deadline, and at least FINISH_MIN_WINDOW_S; if it still can't be written the reaper
        requeues the job later."""
        give_up = max(time.monotonic() + FINISH_MIN_WINDOW_S,
                      time.monotonic() + (ctx.deadline - utcnow()).total_seconds())
        attempt = 0
        while True:
            try:
                return jobs.finish(ctx.job_id, ctx.seq, status, **kw)
            except DBAPIError as exc:
                if not _transient(exc) or time.monotonic() >= give_up:
                    raise
                log.warning("could not record job outcome yet; retrying", exc_info=True,
                            extra={"job_id": ctx.job_id, "attempt": attempt + 1})
                time.sleep(min(2 ** attempt, 5.0, max(0.0, give_up - time.monotonic())))
                attempt += 1

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


def _transient(exc: DBAPIError) -> bool:
    """A database error that retrying can fix (unreachable, timed out), not a refused statement."""
    return isinstance(exc, OperationalError | InterfaceError) or bool(exc.connection_invalidated)


def _dur(started: float) -> float:
    return round(time.monotonic() - started, 4)

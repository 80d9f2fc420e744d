"""`system` queue: diagnostics shared by all queues.

`ping_job` is the diagnostic job every queue offers (`<queue>.ping`): health checks and benchmarks
use it to prove a queue's worker runs jobs end to end. `system.noop` is a bare Celery task with no
job bookkeeping: the raw-Celery baseline that bench/queue_throughput.py compares against.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from celery_app import app
from tasks.base import JobContext, LoggingTask


def ping_job(ctx: JobContext) -> dict[str, Any]:
    sleep_s = float(ctx.params.get("sleep_s", 0))
    started = time.monotonic()
    if sleep_s > 0:
        steps = max(1, int(sleep_s / 0.5))
        for i in range(steps):
            ctx.sleep(sleep_s / steps)
            ctx.progress((i + 1) / steps, f"slept {(i + 1) * sleep_s / steps:.1f} of {sleep_s:g} s")
    return {"pong": True, "slept_s": round(time.monotonic() - started, 3), "host": socket.gethostname(),
            "pid": os.getpid(), "attempt": ctx.attempt}


@app.task(name="system.ping", base=LoggingTask, bind=True)
def ping(self: LoggingTask, job_id: str, seq: int) -> dict[str, Any]:
    return self.run_job(job_id, seq, ping_job)


@app.task(name="system.noop")
def noop() -> None:
    return None

"""Test-only jobs, loaded into real workers through PM_EXTRA_TASK_MODULES=tests.integration.guard_tasks.

`ml.test_grow` allocates memory in steps (each step written, so it is resident), like a job whose
data or model grows without bound. With `cooperative` it checks for stop requests between steps,
as domain code does; without, it then blocks without ever checking, like C code that never returns.
"""

from __future__ import annotations

import time
from typing import Any

from celery_app import app
from tasks.base import JobContext, LoggingTask

MB = 1024 * 1024


def grow_job(ctx: JobContext) -> dict[str, Any]:
    step_mb, steps = int(ctx.params["step_mb"]), int(ctx.params["steps"])
    held: list[bytearray] = []
    for _ in range(steps):
        held.append(bytearray(b"\x01") * (step_mb * MB))
        if ctx.params.get("cooperative"):
            ctx.sleep(0.3)
        else:
            time.sleep(0.3)
    if not ctx.params.get("cooperative"):
        time.sleep(float(ctx.params.get("block_s", 60)))
    return {"held_mb": step_mb * len(held)}


@app.task(name="ml.test_grow", base=LoggingTask, bind=True)
def grow(self: LoggingTask, job_id: str, seq: int) -> dict[str, Any]:
    return self.run_job(job_id, seq, grow_job)

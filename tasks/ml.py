"""`ml` queue. ML jobs: failure-prediction and remaining-useful-life training and scoring (ml/ holds the domain code)."""

from __future__ import annotations

from typing import Any

from celery_app import app
from tasks.base import LoggingTask
from tasks.system import ping_job


@app.task(name="ml.ping", base=LoggingTask, bind=True)
def ping(self: LoggingTask, job_id: str, seq: int) -> dict[str, Any]:
    return self.run_job(job_id, seq, ping_job)

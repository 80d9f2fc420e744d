"""The memory guard where a job's process can't be ended (solo pool, Windows; here: this test
process, run through Celery's `apply`): the job is still stopped cooperatively, and one that never
checks is recorded as failed while the process lives on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from core import jobs
from core.db import session_scope
from tests.unit.test_logging_task import app_and_url  # noqa: F401 - the module's fixture


@pytest.fixture
def grow_task(app_and_url: tuple[Any, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str, int]]:  # noqa: F811
    from core.settings import get_settings
    from tasks.base import LoggingTask, _memory_guard
    from tests.integration.guard_tasks import grow_job

    app, url = app_and_url
    if "ml.test_grow_inproc" not in app.tasks:
        def run(self: LoggingTask, job_id: str, seq: int) -> dict[str, Any]:
            return self.run_job(job_id, seq, grow_job)

        app.task(name="ml.test_grow_inproc", base=LoggingTask, bind=True)(run)
    limit = int(psutil.Process().memory_info().rss / 2**20) + 120  # this process, plus 120 MB
    monkeypatch.setenv("WORKER_MAX_MEMORY_MB", str(limit))
    get_settings.cache_clear()
    assert _memory_guard.may_exit is False
    yield app.tasks["ml.test_grow_inproc"], url, limit
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.mark.parametrize("cooperative", [True, False])
def test_memory_limit_without_ending_the_process(grow_task: tuple[Any, str, int], cooperative: bool,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    import logging

    task, url, limit = grow_task
    jid = jobs.submit(task_name="ml.test_grow_inproc", queue="ml", kind="test_grow", submitted_by="t",
                      params={"step_mb": 30, "steps": 8, "cooperative": cooperative, "block_s": 5},
                      dispatcher=None, db_url=url).id
    with caplog.at_level(logging.INFO, logger="pm.tasks"):
        task.apply(args=[jid, 1])
    enforced = [r for r in caplog.records if r.msg.startswith("job did not stop at its memory limit")]
    # A job that never checks is failed by the guard while it still runs (and the process lives on).
    assert [r.recorded for r in enforced] == ([] if cooperative else [True])
    with session_scope(url, write=False) as s:
        job = jobs.get(s, jid)
    assert job.status == "failed" and job.error["code"] == "memory_limit", job.error
    assert job.error["details"] == {"setting": "WORKER_MAX_MEMORY_MB", "limit_mb": limit,
                                    "rss_mb": job.error["details"]["rss_mb"]}
    assert job.error["details"]["rss_mb"] > limit and f"WORKER_MAX_MEMORY_MB={limit}" in job.error["message"]

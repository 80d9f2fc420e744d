"""Periodic removal of what killed jobs and interrupted uploads leave behind.

- scratch directories (`<store>/tmp/<uuid>`) and `*.partial` files (downloads into the artifact
  cache, uploads to a remote store) last touched more than SCRATCH_MAX_AGE_HOURS ago;
- orphaned artifacts: files under `models/` and `datasets/` that no registry or dataset row names
  (a job staged its output and died before finishing, or its commit failed), of the same age.

Nothing a running job may still use is touched: the cutoff is also kept before the start of the
oldest running job (less a margin for clock differences between machines), because a job only
creates files after it starts. Called hourly by the API's maintenance loop (server/app.py).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import func, select

from core.artifacts import ArtifactStore
from core.db import session_scope
from core.models import Dataset, Job, Model, utcnow

log = logging.getLogger("pm.cleanup")

CLOCK_MARGIN = timedelta(minutes=10)
BATCH = 500


def cutoff(*, max_age_hours: float, db_url: str | None = None, now: datetime | None = None) -> datetime:
    """Files last touched before this may go: older than the age limit and than every running job."""
    limit = (now or utcnow()) - timedelta(hours=max_age_hours)
    with session_scope(db_url, write=False) as session:
        oldest = session.scalar(select(func.min(Job.started_at)).where(Job.status == "running"))
    return min(limit, oldest - CLOCK_MARGIN) if oldest is not None else limit


def clean(store: ArtifactStore, *, max_age_hours: float, db_url: str | None = None,
          now: datetime | None = None) -> dict[str, int]:
    """Remove old scratch/partial files and orphaned artifacts; returns counts of what went."""
    older_than = cutoff(max_age_hours=max_age_hours, db_url=db_url, now=now).timestamp()
    out = {"scratch": store.clean_scratch(older_than), "orphans": 0}
    for prefix, table in (("models", Model), ("datasets", Dataset)):
        keys = [key for key, mtime in store.list_keys(prefix) if mtime < older_than]
        for i in range(0, len(keys), BATCH):
            batch = keys[i:i + BATCH]
            with session_scope(db_url, write=False) as session:
                known = set(session.scalars(select(table.storage_key).where(table.storage_key.in_(batch))))
            for key in batch:
                if key not in known:
                    store.delete(key)
                    out["orphans"] += 1
                    log.info("orphaned artifact removed", extra={"key": key})
    return out

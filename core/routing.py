"""Which queue a task runs on: the prefix of its name. Shared by Celery routing and the API."""

from __future__ import annotations

from core.settings import ALL_QUEUES


def route_for(task_name: str) -> str | None:
    """The queue a task name routes to (`ml.train` → `ml`), or None when its prefix is not a queue."""
    prefix, dot, rest = task_name.partition(".")
    if dot and rest and prefix in ALL_QUEUES:
        return prefix
    return None

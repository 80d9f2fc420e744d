"""The one Celery app: Redis broker and result backend, queues gan/ml/llm/system, routing by prefix.

A task named `gan.*` runs on the `gan` queue, `ml.*` on `ml`, `llm.*` on `llm`, `system.*` on
`system`. Queues are declared explicitly and missing queues are never created, so a task whose
name matches no route fails at send time instead of waiting forever on a queue no worker reads.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from core.routing import route_for
from core.settings import ALL_QUEUES, Settings, get_settings

UNROUTED_QUEUE = "unrouted"
"""Default queue name that is deliberately *not* declared: sending an unrouted task raises."""


def _route(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> dict[str, str] | None:
    queue = route_for(name)
    return {"queue": queue, "routing_key": queue} if queue else None


def build_config(settings: Settings) -> dict[str, Any]:
    broker = settings.broker_url()
    return {
        "broker_url": broker,
        "result_backend": broker,
        "task_queues": [Queue(q, Exchange(q, type="direct"), routing_key=q) for q in ALL_QUEUES],
        "task_default_queue": UNROUTED_QUEUE,
        "task_routes": (_route,),
        "task_create_missing_queues": False,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # Long jobs: ack only after the task returns, give the message back if the worker dies,
        # and never hold a second message while a long one runs.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_transport_options": {"visibility_timeout": settings.visibility_timeout},
        "result_backend_transport_options": {"visibility_timeout": settings.visibility_timeout},
        "result_expires": settings.result_expires_seconds,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 2.0,
        # Flower sees every task, including ones sent while it was not looking at the worker.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "enable_utc": True,
        "timezone": "UTC",
    }


# PM_EXTRA_TASK_MODULES (comma-separated): more task modules for a worker to import. The test suite
# uses it to run test-only jobs (tests/integration/guard_tasks.py) in real worker processes.
_EXTRA = [m.strip() for m in os.environ.get("PM_EXTRA_TASK_MODULES", "").split(",") if m.strip()]
app = Celery("predictive_maintenance", include=["tasks.system", "tasks.gan", "tasks.ml", "tasks.llm", *_EXTRA])
app.conf.update(build_config(get_settings()))

# Worker liveness records and logging setup hook into worker signals.
import tasks.worker_signals  # noqa: E402,F401

"""Worker process hooks: JSON logging, liveness beacon in Redis, fresh DB pools after fork."""

from __future__ import annotations

import os
from typing import Any

from celery.signals import setup_logging, worker_process_init, worker_ready, worker_shutdown

from core.broker import WorkerBeacon
from core.logs import configure_logging
from core.settings import get_settings

_beacon: WorkerBeacon | None = None


@setup_logging.connect
def _setup_logging(**_: Any) -> None:
    configure_logging(get_settings().log_level)


@worker_process_init.connect
def _fresh_db_pools(**_: Any) -> None:
    # A forked pool child must not share the parent's database connections.
    from core import db

    db.dispose_all()


@worker_ready.connect
def _start_beacon(sender: Any = None, **_: Any) -> None:
    global _beacon
    consumer = sender
    app = consumer.app
    queues = sorted(app.amqp.queues.consume_from.keys()) if app.amqp.queues.consume_from else []
    pool = type(consumer.pool).__module__.rsplit(".", 1)[-1] if getattr(consumer, "pool", None) else "?"
    _beacon = WorkerBeacon(app.conf.broker_url, consumer.hostname, queues, pool, os.getpid())
    _beacon.start()


@worker_shutdown.connect
def _stop_beacon(**_: Any) -> None:
    if _beacon is not None:
        _beacon.stop()

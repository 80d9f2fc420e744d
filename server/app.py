"""FastAPI app factory. The maintenance loop (stale-job reaper + outbox flusher) runs here too."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from core import jobs
from core.broker import CeleryDispatcher
from core.logs import configure_logging
from core.settings import Settings, get_settings
from server.errors import BodySizeLimit, install_error_handlers
from server.routes import health, tokens
from server.routes import jobs as jobs_routes

log = logging.getLogger("pm.api")


class MaintenanceLoop(threading.Thread):
    """Every MAINTENANCE_SECONDS: requeue jobs whose worker died; send jobs the broker missed.

    Safe with several API processes: every change is a conditional UPDATE that only one can win.
    """

    def __init__(self, dispatcher: CeleryDispatcher, db_url: str, period_s: float) -> None:
        super().__init__(name="pm-maintenance", daemon=True)
        self.dispatcher, self.db_url, self.period_s = dispatcher, db_url, period_s
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(self.period_s):
            out = jobs.maintenance_tick(self.dispatcher, db_url=self.db_url)
            if out["requeued"] or out["dispatched"]:
                log.info("maintenance", extra=out)


def create_app(settings: Settings | None = None, *, maintenance: bool = True) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    from celery_app import app as celery

    dispatcher = CeleryDispatcher(celery, settings.broker_url())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = MaintenanceLoop(dispatcher, settings.db_url, settings.maintenance_seconds) if maintenance else None
        if loop:
            loop.start()
        yield
        if loop:
            loop.stop_event.set()
            loop.join(timeout=5)

    app = FastAPI(
        title="Predictive Maintenance Platform",
        version="0.1.0",
        description="Jobs on the `gan`, `ml` and `llm` queues. Every /api/v1 route needs a bearer token.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.db_url = settings.db_url
    app.state.broker_url = settings.broker_url()
    app.state.dispatcher = dispatcher
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(jobs_routes.router)
    app.include_router(tokens.router)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    return app

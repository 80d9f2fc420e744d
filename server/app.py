"""FastAPI app factory. The maintenance loop (stale-job reaper + outbox flusher) runs here too."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware

from core import cleanup, idempotency, jobs, predictions
from core.artifacts import ArtifactStore
from core.auth import PrincipalCache
from core.broker import CeleryDispatcher
from core.logs import configure_logging
from core.registry import ModelCache
from core.settings import Settings, get_settings
from server.errors import AnswerErrors, AuthenticateFirst, BodySizeLimit, install_error_handlers
from server.openapi import install as install_openapi
from server.routes import dashboard, health, tokens
from server.routes import datasets as datasets_routes
from server.routes import gan as gan_routes
from server.routes import jobs as jobs_routes
from server.routes import llm as llm_routes
from server.routes import models as models_routes
from server.strings import CheckedRoute

log = logging.getLogger("pm.api")


class MaintenanceLoop(threading.Thread):
    """Every MAINTENANCE_SECONDS: requeue jobs whose worker died; send jobs the broker missed.
    Hourly: purge old predictions and expired idempotency keys; remove old scratch files and
    orphaned artifacts (core/cleanup.py).

    Safe with several API processes: every change is a conditional UPDATE that only one can win.
    After a database outage the reaper waits STALE_JOB_SECONDS (`jobs.ReapGate`).
    """

    FLUSH_S = 0.25

    def __init__(self, dispatcher: CeleryDispatcher, dispatch_log: jobs.DispatchLog, db_url: str,
                 period_s: float, store: ArtifactStore | None = None) -> None:
        super().__init__(name="pm-maintenance", daemon=True)
        self.dispatcher, self.dispatch_log, self.db_url, self.period_s = dispatcher, dispatch_log, db_url, period_s
        self.store = store
        self.stop_event = threading.Event()
        settings = get_settings()
        self.retention_days = settings.prediction_retention_days
        self.scratch_max_age_hours = settings.scratch_max_age_hours
        self.idempotency_ttl_hours = settings.idempotency_ttl_hours
        self.reap_gate = jobs.ReapGate(settings.stale_job_seconds)
        self.next_purge = time.monotonic()

    def hourly(self) -> None:
        chores: list[tuple[str, Callable[[], Any]]] = [
            ("purged old predictions", lambda: {"purged": predictions.purge(self.retention_days, self.db_url)}),
            ("purged expired idempotency keys",
             lambda: {"purged": idempotency.purge(self.idempotency_ttl_hours, self.db_url)}),
        ]
        if self.store is not None:
            store = self.store
            chores.append(("removed old scratch files and orphaned artifacts",
                           lambda: cleanup.clean(store, max_age_hours=self.scratch_max_age_hours, db_url=self.db_url)))
        for what, chore in chores:
            try:
                done = chore()
            except Exception:  # noqa: BLE001 - each chore is retried next hour; one failing doesn't stop the others
                log.warning("hourly maintenance failed", extra={"chore": what}, exc_info=True)
                continue
            if any(done.values()):
                log.info(what, extra=done)

    def flush(self) -> None:
        try:
            self.dispatch_log.flush(self.db_url)
        except Exception:  # noqa: BLE001 - kept for the next flush
            log.warning("could not record dispatched jobs yet", exc_info=True)

    def run(self) -> None:
        next_tick = time.monotonic() + self.period_s
        while not self.stop_event.wait(self.FLUSH_S):
            self.flush()
            if time.monotonic() < next_tick:
                continue
            next_tick = time.monotonic() + self.period_s
            # Other API processes flush their dispatch logs within FLUSH_S; wait well past that
            # (and past one maintenance period) before treating a job as never sent.
            out = jobs.maintenance_tick(self.dispatcher, db_url=self.db_url, outbox_delay_s=self.period_s + 3.0,
                                        reap=self.reap_gate.allows())
            self.reap_gate.observe(out)
            if out["requeued"] or out["dispatched"]:
                log.info("maintenance", extra=out)
            if time.monotonic() >= self.next_purge:
                self.next_purge = time.monotonic() + 3600
                self.hourly()
        self.flush()


def create_app(settings: Settings | None = None, *, maintenance: bool = True) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    from celery_app import app as celery

    dispatcher = CeleryDispatcher(celery, settings.broker_url())
    dispatch_log = jobs.DispatchLog()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = MaintenanceLoop(dispatcher, dispatch_log, settings.db_url, settings.maintenance_seconds,
                               app.state.artifacts) if maintenance else None
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
    app.state.artifacts = ArtifactStore(settings.artifacts)
    app.state.models = ModelCache(app.state.artifacts)
    app.state.principals = PrincipalCache(ttl_s=settings.token_cache_seconds)
    app.state.dispatch_log = dispatch_log if maintenance else None
    app.state.committer = jobs.GroupCommitter(settings.db_url)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(jobs_routes.router)
    app.include_router(tokens.router)
    app.include_router(datasets_routes.router)
    app.include_router(datasets_routes.samples_router)
    app.include_router(models_routes.router)
    app.include_router(llm_routes.router)
    app.include_router(gan_routes.router)
    dashboard.mount(app)  # last: the dashboard's files at / and /static
    install_openapi(app)  # the real error bodies, statuses and media types
    # JSON pages (a page of jobs is ~30 KB) travel gzipped; small answers (a prediction) are not
    # worth the CPU; SSE streams and Parquet are never compressed.
    app.add_middleware(GZipMiddleware, minimum_size=2048, compresslevel=5,
                       exclude_content_types=(*DEFAULT_EXCLUDED_CONTENT_TYPES, "application/vnd.apache.parquet"))
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes,
                       overrides={("POST", "/api/v1/datasets"): (settings.dataset_max_bytes, "DATASET_MAX_BYTES")})
    # Added last = runs first: the token is verified before any body byte is read.
    app.add_middleware(AuthenticateFirst, principals=app.state.principals, db_url=settings.db_url)
    app.add_middleware(AnswerErrors)  # outermost of ours: an unexpected error is a 500 here, not re-raised
    unchecked = [r.path for r in app.routes if isinstance(r, APIRoute) and not isinstance(r, CheckedRoute)]
    if unchecked:  # every string that enters goes through server/strings.py
        raise RuntimeError(f"routes not built with APIRouter(route_class=CheckedRoute): {', '.join(unchecked)}")
    return app

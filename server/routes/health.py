"""`GET /api/health`: database, broker, and per-queue workers and depth. No auth (for probes).

Anonymous callers get statuses only (overall, database, broker, workers per queue). Error texts,
queue depths, worker host names and the list of problems describe the deployment's insides: they
go to a caller with a valid token (any role), which is what the dashboard sends.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from core.broker import broker_status
from core.db import ping_database
from core.settings import QUEUES
from server.deps import MaybeViewer
from server.strings import CheckedRoute

router = APIRouter(tags=["health"], route_class=CheckedRoute)


def _health(db_url: str, broker_url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(full, public): the full body for token holders; the public one without error texts,
    depths and worker names."""
    db_ok, db_error = ping_database(db_url)
    status = broker_status(broker_url)
    problems: list[tuple[str, str]] = []  # (public wording, wording with the error)
    if not db_ok:
        problems.append(("database unreachable", f"database unreachable: {db_error}"))
    if not status["broker"]["ok"]:
        problems.append(("broker unreachable; new jobs wait in the outbox",
                         f"broker unreachable: {status['broker'].get('error')}; new jobs wait in the outbox"))
    else:
        problems += [(f"no worker is consuming queue '{q}'",) * 2 for q in QUEUES if status["queues"][q]["workers"] == 0]
    overall = "ok" if not problems else "degraded"
    full = {
        "status": overall,
        "database": {"ok": db_ok, **({"error": db_error} if db_error else {})},
        "broker": status["broker"],
        "queues": status["queues"],
        "workers": status.get("workers", []),
        "problems": [detailed for _, detailed in problems],
    }
    public = {
        "status": overall, "database": {"ok": db_ok}, "broker": {"ok": bool(status["broker"]["ok"])},
        "queues": {q: {"workers": v["workers"]} for q, v in status["queues"].items()},
        "problems": [short for short, _ in problems],
        "details": "send a bearer token (any role) for error texts, queue depths and worker names",
    }
    return full, public


@router.get("/api/health", summary="Platform health; 503 when degraded. No auth needed: statuses only "
            "without a token; error texts, queue depths and worker names with one (any role)")
async def health(request: Request, who: MaybeViewer) -> JSONResponse:
    full, public = await run_in_threadpool(_health, request.app.state.db_url, request.app.state.broker_url)
    return JSONResponse(full if who is not None else public, status_code=200 if full["status"] == "ok" else 503)

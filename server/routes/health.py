"""`GET /api/health`: database, broker, and per-queue workers and depth. No auth (for probes)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from core.broker import broker_status
from core.db import ping_database
from core.settings import QUEUES

router = APIRouter(tags=["health"])


def _health(db_url: str, broker_url: str) -> dict[str, Any]:
    db_ok, db_error = ping_database(db_url)
    status = broker_status(broker_url)
    problems = []
    if not db_ok:
        problems.append(f"database unreachable: {db_error}")
    if not status["broker"]["ok"]:
        problems.append(f"broker unreachable: {status['broker'].get('error')}; new jobs wait in the outbox")
    else:
        problems += [f"no worker is consuming queue '{q}'" for q in QUEUES if status["queues"][q]["workers"] == 0]
    return {
        "status": "ok" if not problems else "degraded",
        "database": {"ok": db_ok, **({"error": db_error} if db_error else {})},
        "broker": status["broker"],
        "queues": status["queues"],
        "workers": status.get("workers", []),
        "problems": problems,
    }


@router.get("/api/health", summary="Platform health (no auth); 503 when degraded")
async def health(request: Request) -> JSONResponse:
    body = await run_in_threadpool(_health, request.app.state.db_url, request.app.state.broker_url)
    return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)

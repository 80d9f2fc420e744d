"""Jobs: diagnostic ping jobs, listing, detail, cancel, and live events over Server-Sent Events."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from core import auth, jobs
from core.db import session_scope
from core.models import TERMINAL_STATUSES, JobEvent
from server.deps import DbSession, Operator, SubmitJob, Viewer
from server.errors import bearer_token
from server.paging import PageOffset
from server.schemas import JobOut, JobPage, JobStatus, PingRequest
from server.strings import CheckedRoute

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"], route_class=CheckedRoute)

SSE_POLL_S = 0.25
SSE_KEEPALIVE_S = 15.0
SSE_REAUTH_S = 15.0


@router.post("/ping", status_code=202, response_model=JobOut, summary="Start a diagnostic job on a queue")
def start_ping(body: PingRequest, submit: SubmitJob) -> JobOut:
    job = submit(f"{body.queue}.ping", body.model_dump(), kind="ping",
                 timeout_s=int(body.sleep_s) + 60)
    return JobOut.of(job)


@router.get("", response_model=JobPage, summary="List jobs, newest first")
def list_jobs(session: DbSession, _: Viewer,
              status: Annotated[JobStatus | None, Query()] = None,
              kind: Annotated[str | None, Query(max_length=64, pattern="^[a-z0-9_.-]+$")] = None,
              queue: Annotated[str | None, Query(pattern="^(gan|ml|llm|system)$")] = None,
              limit: Annotated[int, Query(ge=1, le=200)] = 50, *, offset: PageOffset) -> JobPage:
    page = jobs.list_jobs(session, status=status, kind=kind, queue=queue, limit=limit, offset=offset)
    return JobPage(items=[JobOut.of(j) for j in page.items], total=page.total, limit=limit, offset=offset)


@router.get("/{job_id}", response_model=JobOut, summary="One job")
def get_job(job_id: str, session: DbSession, _: Viewer) -> JobOut:
    return JobOut.of(jobs.get(session, job_id))


@router.post("/{job_id}/cancel", response_model=JobOut, summary="Cancel a queued or running job")
def cancel_job(job_id: str, request: Request, who: Operator) -> JobOut:
    return JobOut.of(jobs.cancel(job_id, by=who.name, db_url=request.app.state.db_url))


def _sse(event: JobEvent) -> str:
    return f"id: {event.id}\nevent: {event.type}\ndata: {json.dumps({**event.data, 'ts': event.ts.isoformat()})}\n\n"


@router.get("/{job_id}/events", summary="Server-Sent Events: stored history first, then live, until the job ends",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "status, progress and log events"}})
async def job_events(job_id: str, request: Request, session: DbSession, _: Viewer,
                     last_event_id: Annotated[int | None, Header(alias="Last-Event-ID")] = None) -> StreamingResponse:
    await run_in_threadpool(jobs.get, session, job_id)  # 404 before the stream starts
    session.close()
    db_url = request.app.state.db_url

    def fetch(after: int) -> tuple[list[JobEvent], str]:
        with session_scope(db_url, write=False) as s:
            # Status first: if it is terminal here, its terminal event is already committed and the
            # events read next include it (PostgreSQL reads each statement at its own snapshot).
            status = jobs.get(s, job_id).status
            return jobs.events_after(s, job_id, after), status

    token = bearer_token(request.scope) or ""
    principals = request.app.state.principals

    def still_authorised() -> bool:
        return auth.verify(token, principals, db_url) is not None

    async def stream() -> AsyncIterator[str]:
        after = last_event_id or 0
        idle = 0.0
        next_auth = time.monotonic() + SSE_REAUTH_S
        while True:
            if time.monotonic() >= next_auth:  # a stream can outlive its token: re-check it
                next_auth = time.monotonic() + SSE_REAUTH_S
                if not await run_in_threadpool(still_authorised):
                    yield "event: error\ndata: {\"code\": \"unauthorized\", \"message\": \"token revoked\"}\n\n"
                    return
            events, status = await run_in_threadpool(fetch, after)
            for ev in events:
                after = ev.id
                yield _sse(ev)
                if ev.type == "status" and ev.data.get("status") in TERMINAL_STATUSES:
                    return
            if not events and status in TERMINAL_STATUSES:
                return  # terminal event was already sent before Last-Event-ID
            if await request.is_disconnected():
                return
            idle = 0.0 if events else idle + SSE_POLL_S
            if idle >= SSE_KEEPALIVE_S:
                idle = 0.0
                yield ": keep-alive\n\n"
            await asyncio.sleep(SSE_POLL_S)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

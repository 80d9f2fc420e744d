"""Request dependencies: database session, the caller's identity and role, and job submission.

Routes declare what they need with the `Annotated` aliases at the bottom, e.g.
`def start(..., submit: SubmitJob, who: Operator)`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from core import auth, jobs
from core.db import new_session, session_scope
from core.models import Job
from core.routing import route_for
from server.errors import ApiError

bearer = HTTPBearer(auto_error=False, description="API token from `python -m server token create`")


async def db_session(request: Request) -> AsyncIterator[Session]:
    # Dependencies here are async on purpose: a sync dependency costs a thread-pool round trip each
    # (several per request); only work that may block (the database) is sent to a thread.
    session = new_session(request.app.state.db_url)
    try:
        yield session
    finally:
        if session.in_transaction():
            await run_in_threadpool(session.close)  # returning a connection may talk to the server
        else:
            session.close()


DbSession = Annotated[Session, Depends(db_session)]


def _authenticate(request: Request, session: Session, token: str) -> auth.Principal | None:
    principal = auth.authenticate(session, token)
    session.rollback()  # end the read transaction now; the route may run long (SSE)
    if principal is not None:
        request.app.state.principals.put(token, principal)
        if request.app.state.principals.due_for_touch(principal.token_id):
            with session_scope(request.app.state.db_url) as w:
                auth.touch(w, principal.token_id)
    return principal


async def current_principal(request: Request, session: DbSession,
                            creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> auth.Principal:
    challenge = {"WWW-Authenticate": "Bearer"}
    if creds is None or not creds.credentials:
        raise ApiError(401, "unauthorized", "missing bearer token: send 'Authorization: Bearer <token>' "
                       "(create one with `python -m server token create --role operator --name NAME`)", headers=challenge)
    cache: auth.PrincipalCache = request.app.state.principals
    principal = cache.get(creds.credentials)
    if principal is None:
        principal = await run_in_threadpool(_authenticate, request, session, creds.credentials)
    if principal is None:
        raise ApiError(401, "unauthorized", "token is unknown or revoked", headers=challenge)
    request.state.principal = principal
    return principal


def require(role: str) -> Any:
    async def check(principal: Annotated[auth.Principal, Depends(current_principal)]) -> auth.Principal:
        if not principal.has(role):
            raise ApiError(403, "forbidden", f"this action needs the '{role}' role; token '{principal.name}' "
                           f"has '{principal.role}'", {"required_role": role, "token_role": principal.role})
        return principal

    return check


Viewer = Annotated[auth.Principal, Depends(require("viewer"))]
Operator = Annotated[auth.Principal, Depends(require("operator"))]
Admin = Annotated[auth.Principal, Depends(require("admin"))]


class JobSubmitter:
    """The one way routes start jobs: `submit("ml.train", params, kind="train")` → the stored job.

    The queue comes from the task-name prefix (the same rule Celery routes by); the row is committed
    before the message is sent; if the broker is down the job waits in the outbox instead of failing.
    """

    def __init__(self, request: Request, principal: auth.Principal) -> None:
        self.state = request.app.state
        self.principal = principal

    def __call__(self, task_name: str, params: dict[str, Any], *, kind: str | None = None,
                 timeout_s: int | None = None) -> Job:
        queue = route_for(task_name)
        if queue is None:
            raise RuntimeError(f"task {task_name!r} has no queue route; name it '<queue>.<job>'")
        return jobs.submit(task_name=task_name, queue=queue, kind=kind or task_name.split(".", 1)[1], params=params,
                           submitted_by=self.principal.name, dispatcher=self.state.dispatcher,
                           timeout_s=timeout_s, db_url=self.state.db_url, dispatch_log=self.state.dispatch_log,
                           committer=self.state.committer)


async def job_submitter(request: Request, principal: Operator) -> JobSubmitter:
    return JobSubmitter(request, principal)


SubmitJob = Annotated[JobSubmitter, Depends(job_submitter)]

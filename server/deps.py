"""Request dependencies: database session, the caller's identity and role, and job submission.

Routes declare what they need with the `Annotated` aliases at the bottom, e.g.
`def start(..., submit: SubmitJob, who: Operator)`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from core import auth, idempotency, jobs
from core.db import new_session
from core.models import Job
from core.routing import route_for
from server.errors import CHALLENGE, ApiError, bearer_token, unauthorized_message

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


async def _verified(request: Request, token: str | None) -> auth.Principal:
    if token is None or not auth.well_formed(token):
        raise ApiError(401, "unauthorized", unauthorized_message(token), headers=CHALLENGE)
    state = request.app.state
    principal = state.principals.get(token) or await run_in_threadpool(auth.verify, token, state.principals,
                                                                         state.db_url)
    if principal is None:
        raise ApiError(401, "unauthorized", unauthorized_message(token), headers=CHALLENGE)
    return principal


async def current_principal(request: Request,
                            _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> auth.Principal:
    """The caller, as verified by `AuthenticateFirst` before the body was read (no second lookup).

    Only a route outside that middleware's prefix verifies the token here itself.
    """
    principal = request.scope.get("state", {}).get("principal")
    if principal is None:
        principal = await _verified(request, bearer_token(request.scope))
        request.state.principal = principal
    return principal


async def optional_principal(request: Request) -> auth.Principal | None:
    """For public routes that show more to a token holder (`/api/health`): None without a token,
    401 for a bad one (a caller who sent credentials wants to know they failed), and None while
    the database can't be asked (health must answer exactly then)."""
    token = bearer_token(request.scope)
    if token is None and not request.headers.get("authorization"):
        return None
    try:
        return await _verified(request, token)
    except OperationalError:
        return None


def require(role: str) -> Any:
    async def check(principal: Annotated[auth.Principal, Depends(current_principal)]) -> auth.Principal:
        if not principal.has(role):
            raise ApiError(403, "forbidden", f"this action needs the '{role}' role; token '{principal.name}' "
                           f"has '{principal.role}'", {"required_role": role, "token_role": principal.role})
        return principal

    return check


MaybeViewer = Annotated[auth.Principal | None, Depends(optional_principal)]
Viewer = Annotated[auth.Principal, Depends(require("viewer"))]
Operator = Annotated[auth.Principal, Depends(require("operator"))]
Admin = Annotated[auth.Principal, Depends(require("admin"))]


class JobSubmitter:
    """The one way routes start jobs: `submit("ml.train", params, kind="train")` → the stored job.

    The queue comes from the task-name prefix (the same rule Celery routes by); the row is committed
    before the message is sent; if the broker is down the job waits in the outbox instead of failing.
    """

    def __init__(self, request: Request, principal: auth.Principal, claim: idempotency.KeyClaim | None = None) -> None:
        self.state = request.app.state
        self.principal = principal
        self.claim = claim  # the request's Idempotency-Key, if it sent one

    def __call__(self, task_name: str, params: dict[str, Any], *, kind: str | None = None,
                 timeout_s: int | None = None) -> Job:
        queue = route_for(task_name)
        if queue is None:
            raise RuntimeError(f"task {task_name!r} has no queue route; name it '<queue>.<job>'")
        return jobs.submit(task_name=task_name, queue=queue, kind=kind or task_name.split(".", 1)[1], params=params,
                           submitted_by=self.principal.name, dispatcher=self.state.dispatcher,
                           timeout_s=timeout_s, db_url=self.state.db_url, dispatch_log=self.state.dispatch_log,
                           committer=self.state.committer, idempotency=self.claim)


async def job_submitter(
    request: Request, principal: Operator,
    key: Annotated[str | None, Header(
        alias=idempotency.HEADER, pattern=idempotency.KEY_PATTERN,
        description="Optional, 1-255 printable ASCII characters. The same key from the same token within "
                    "IDEMPOTENCY_TTL_HOURS returns the job it first created (202, `Idempotent-Replayed: true`) "
                    "instead of starting another; the same key with a different request is refused (422).")] = None,
) -> JobSubmitter:
    if key is None:
        return JobSubmitter(request, principal)
    state = request.app.state
    claim = idempotency.KeyClaim(principal.token_id, key,
                              idempotency.fingerprint(request.method, request.url.path, await request.body()),
                              state.settings.idempotency_ttl_hours)
    # Checked before the route does any work, so a replay answers even if what it checked has changed since.
    job = await run_in_threadpool(idempotency.existing, claim, state.db_url)  # KeyReused for another request
    if job is not None:
        raise idempotency.Replay(job)
    return JobSubmitter(request, principal, claim)


SubmitJob = Annotated[JobSubmitter, Depends(job_submitter)]

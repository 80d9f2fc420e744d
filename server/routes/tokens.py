"""API tokens (admin) and `GET /api/v1/me`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import select

from core import auth
from core.db import session_scope
from core.models import ApiToken
from server.deps import Admin, DbSession, Viewer
from server.errors import ApiError
from server.schemas import Me, TokenCreate, TokenCreated, TokenOut
from server.strings import CheckedRoute

router = APIRouter(prefix="/api/v1", tags=["auth"], route_class=CheckedRoute)


@router.get("/me", response_model=Me, summary="Who the presented token belongs to")
def me(who: Viewer) -> Me:
    return Me(name=who.name, role=who.role, token_id=who.token_id)  # type: ignore[arg-type]


@router.get("/tokens", response_model=list[TokenOut], summary="List tokens (never their secrets)")
def list_tokens(session: DbSession, _: Admin) -> list[TokenOut]:
    rows = session.scalars(select(ApiToken).order_by(ApiToken.created_at))
    return [TokenOut.model_validate(r) for r in rows]


@router.post("/tokens", status_code=201, response_model=TokenCreated, summary="Create a token; the secret is shown once")
def create_token(body: TokenCreate, request: Request, who: Admin) -> TokenCreated:
    with session_scope(request.app.state.db_url) as session:  # a write session: takes SQLite's lock up front
        row, plaintext = auth.create_token(session, name=body.name, role=body.role, created_by=who.name)
    return TokenCreated(**TokenOut.model_validate(row).model_dump(), token=plaintext)


@router.delete("/tokens/{token_id}", status_code=204, summary="Revoke a token")
def revoke_token(token_id: str, request: Request, who: Admin) -> None:
    if token_id == who.token_id:
        raise ApiError(409, "conflict", "refusing to revoke the token making this request; use another admin token")
    with session_scope(request.app.state.db_url) as session:
        if session.get(ApiToken, token_id) is None:
            raise ApiError(404, "not_found", f"no token with id {token_id!r}", {"token_id": token_id})
        auth.revoke(session, token_id)
    request.app.state.principals.forget(token_id)

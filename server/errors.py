"""One error shape for every response: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from core import auth, idempotency
from core.jobs import JobError

log = logging.getLogger("pm.api")

STATUS_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type", 422: "validation_error",
    503: "service_unavailable",
}
JOB_ERROR_STATUS = {"not_found": 404, "conflict": 409, "invalid": 422, "unavailable": 503}


class ApiError(StarletteHTTPException):
    """An answer with our error shape. An HTTPException, so that one raised while FastAPI reads the
    body (the string checks in server/strings.py) keeps its status instead of becoming a bare 400."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status, message, headers)
        self.status, self.code, self.message, self.details = status, code, message, details or {}

    def __str__(self) -> str:
        return self.message


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_response(status: int, code: str, message: str, details: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        where, rest = parts[0], parts[1:]
        return f"{where}.{'.'.join(rest)}" if rest else where
    return ".".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(idempotency.Replay)
    async def _replay(_: Request, exc: idempotency.Replay) -> JSONResponse:
        from server.schemas import JobOut

        return JSONResponse(JobOut.of(exc.job).model_dump(mode="json"), status_code=202,
                            headers={"Idempotent-Replayed": "true"})

    @app.exception_handler(idempotency.KeyReused)
    async def _key_reused(_: Request, exc: idempotency.KeyReused) -> JSONResponse:
        return error_response(422, "idempotency_key_reused",
                              f"{exc}; send a new {idempotency.HEADER} for a new request",
                              {"field": f"header.{idempotency.HEADER}", "job_id": exc.job_id})

    @app.exception_handler(JobError)
    async def _job_error(_: Request, exc: JobError) -> JSONResponse:
        return error_response(JOB_ERROR_STATUS.get(exc.code, 400), exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        bad_json = [e for e in errors if e.get("type") == "json_invalid"]
        if bad_json:
            ctx = bad_json[0].get("ctx") or {}
            return error_response(400, "malformed_json", "request body is not valid JSON",
                                  {"position": bad_json[0].get("loc", [None, None])[-1],
                                   "reason": str(ctx.get("error", "")) or None})
        items = []
        for e in errors:
            item = {"field": _field(e.get("loc", ())), "message": e.get("msg", ""), "type": e.get("type", "")}
            ctx = e.get("ctx")
            if ctx:
                item["allowed"] = {k: (v if isinstance(v, (int, float, str, bool, list)) else str(v)) for k, v in ctx.items()}
            items.append(item)
        first = items[0] if items else {"field": "?", "message": "invalid"}
        msg = f"{first['field']}: {first['message']}" + (f" (and {len(items) - 1} more)" if len(items) > 1 else "")
        return error_response(422, "validation_error", msg, {"errors": items})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = STATUS_CODES.get(exc.status_code, "error")
        return error_response(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(OperationalError)
    async def _db_down(_: Request, exc: OperationalError) -> JSONResponse:
        log.error("database unavailable", extra={"error": str(exc.orig)[:300]})
        return db_unavailable()

    @app.exception_handler(DataError)
    async def _db_refused_value(request: Request, exc: DataError) -> JSONResponse:
        # A safety net: the string checks refuse NUL and the like at the edge, so reaching this is a
        # gap there (logged) rather than a server fault; the client sent a value the database can't hold.
        reason = str(exc.orig).splitlines()[0][:200] if exc.orig is not None else type(exc).__name__
        log.warning("database refused a value", extra={"path": request.url.path, "error": reason})
        return error_response(422, "invalid_value", f"the database refused a value in this request: {reason}",
                              {"reason": reason})


def db_unavailable(close: bool = False) -> JSONResponse:
    return error_response(503, "database_unavailable", "the job database is unreachable; try again shortly",
                          headers={"Retry-After": "5", **({"Connection": "close"} if close else {})})


def internal_error(exc: BaseException) -> JSONResponse:
    return error_response(500, "internal_error", "the server failed to handle this request; it has been logged",
                          {"error_type": type(exc).__name__})


class AnswerErrors:
    """ASGI middleware, outermost of ours: an exception no handler took becomes a logged 500 here.

    Starlette's ServerErrorMiddleware answers 500 too but then re-raises into the server, and
    uvicorn closes the connection after "Exception in ASGI application", which dropped the
    client's next request on that keep-alive connection. Here nothing is re-raised, so the
    connection stays usable. If the response had already started (a stream failing midway), it
    cannot be completed honestly: returning leaves it incomplete and uvicorn closes the connection.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # noqa: BLE001 - the one place every unexpected error ends
            log.exception("unhandled error", extra={"path": scope.get("path"), "response_started": started})
            if not started:
                await internal_error(exc)(scope, receive, send)


TOKEN_HINT = "create one with `python -m server token create --role operator --name NAME`"
CHALLENGE = {"WWW-Authenticate": "Bearer"}


def bearer_token(scope: dict[str, Any]) -> str | None:
    """The token of the request's first `Authorization: Bearer <token>` header, or None."""
    for name, value in scope.get("headers") or []:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


def _route_path(scope: dict[str, Any]) -> str:
    # Behind a root path (uvicorn --root-path) scope["path"] includes it; routes match without it.
    path, root = scope["path"], scope.get("root_path") or ""
    return path[len(root):] if root and path.startswith(root) else path


def _body_pending(scope: dict[str, Any]) -> bool:
    headers = dict(scope.get("headers") or [])
    return b"transfer-encoding" in headers or headers.get(b"content-length", b"0").strip() not in (b"", b"0")


def unauthorized_message(token: str | None) -> str:
    if token is None:
        return f"missing bearer token: send 'Authorization: Bearer <token>' ({TOKEN_HINT})"
    return f"bearer token is malformed, unknown or revoked ({TOKEN_HINT})"


def unauthorized(token: str | None, *, close: bool = False) -> JSONResponse:
    # An unread body stays unread: the connection is closed after the answer, not drained.
    return error_response(401, "unauthorized", unauthorized_message(token),
                          headers={**CHALLENGE, **({"Connection": "close"} if close else {})})


class AuthenticateFirst:
    """ASGI middleware: every /api/v1 request is authenticated before any byte of its body is read.

    FastAPI resolves a route's body before its dependencies, so an auth dependency alone would let a
    junk token make the API receive and parse a 400 MB upload. Here a missing, malformed, unknown or
    revoked token is answered 401 at once (and the connection closed if a body was announced). The
    verified principal goes on in `scope["state"]["principal"]`; `server.deps` uses it and checks
    roles (403) there. The database read for a token not in the cache runs in a worker thread.
    """

    def __init__(self, app: Any, principals: auth.PrincipalCache, db_url: str, prefix: str = "/api/v1/") -> None:
        self.app, self.principals, self.db_url, self.prefix = app, principals, db_url, prefix

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not _route_path(scope).startswith(self.prefix):
            return await self.app(scope, receive, send)
        token = bearer_token(scope)
        principal = None
        if token is not None and auth.well_formed(token):
            principal = self.principals.get(token)
            if principal is None:
                try:
                    principal = await run_in_threadpool(auth.verify, token, self.principals, self.db_url)
                except OperationalError as exc:
                    log.error("database unavailable", extra={"error": str(exc.orig)[:300]})
                    return await db_unavailable(_body_pending(scope))(scope, receive, send)
        if principal is None:
            return await unauthorized(token, close=_body_pending(scope))(scope, receive, send)
        scope.setdefault("state", {})["principal"] = principal
        return await self.app(scope, receive, send)


class BodySizeLimit:
    """ASGI middleware: refuse bodies over the limit with 413, by header or while streaming."""

    def __init__(self, app: Any, max_bytes: int,
                 overrides: dict[tuple[str, str], tuple[int, str]] | None = None) -> None:
        self.app, self.default = app, (max_bytes, "MAX_REQUEST_BYTES")
        self.overrides = overrides or {}  # (method, path) -> (limit, setting), e.g. dataset uploads

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        max_bytes, setting = self.overrides.get((scope["method"], scope["path"].rstrip("/")), self.default)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        too_big = error_response(413, "payload_too_large", f"request body over the limit of {max_bytes} bytes",
                                 {"limit_bytes": max_bytes, "setting": setting},
                                 headers={"Connection": "close"})  # the rest of the body is not read
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            return await too_big(scope, receive, send)
        seen = 0
        exceeded = replied = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_bytes:
                    exceeded = True
                    raise _TooLarge  # stops the read; whatever the app answers is replaced below
            return message

        async def refuse() -> None:
            nonlocal replied
            if not replied:
                replied = True
                await too_big(scope, receive, send)

        async def guarded_send(message: dict[str, Any]) -> None:
            if not exceeded:
                await send(message)
            elif message["type"] == "http.response.start":
                await refuse()

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooLarge:
            await refuse()


class _TooLarge(Exception):
    pass

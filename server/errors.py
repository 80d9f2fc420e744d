"""One error shape for every response: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.jobs import JobError

log = logging.getLogger("pm.api")

STATUS_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type", 422: "validation_error",
    503: "service_unavailable",
}
JOB_ERROR_STATUS = {"not_found": 404, "conflict": 409, "invalid": 422, "unavailable": 503}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details, self.headers = status, code, message, details or {}, headers


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

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return error_response(500, "internal_error", "the server failed to handle this request; it has been logged",
                              {"error_type": type(exc).__name__})

    @app.exception_handler(OperationalError)
    async def _db_down(_: Request, exc: OperationalError) -> JSONResponse:
        log.error("database unavailable", extra={"error": str(exc.orig)[:300]})
        return error_response(503, "database_unavailable", "the job database is unreachable; try again shortly",
                              headers={"Retry-After": "5"})


class RequireBearerFirst:
    """ASGI middleware: an /api/v1 request without a bearer token gets 401 before its body is read,
    so anonymous clients can't make the API buffer and parse large bodies."""

    def __init__(self, app: Any, prefix: str = "/api/v1/") -> None:
        self.app, self.prefix = app, prefix

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefix):
            auth = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not auth.lower().startswith(b"bearer ") or len(auth) <= 7:
                response = error_response(
                    401, "unauthorized", "missing bearer token: send 'Authorization: Bearer <token>' "
                    "(create one with `python -m server token create --role operator --name NAME`)",
                    headers={"WWW-Authenticate": "Bearer"})
                return await response(scope, receive, send)
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
                                 {"limit_bytes": max_bytes, "setting": setting})
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

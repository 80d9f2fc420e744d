"""Every string that enters the API is checked once, here: no control characters, no lone
surrogates, at most MAX_FIELD_CHARS characters.

Why: PostgreSQL refuses NUL in text (a `DataError`, once a 500), a lone surrogate cannot be encoded
to UTF-8 at all, and other control characters in names and keys end up in logs, CSV headers and the
dashboard. Refusing them at the edge, with the field named, is cheaper and clearer than failing
deep inside a route.

`CheckedRoute` is the route class of every router (`APIRouter(route_class=CheckedRoute)`;
`create_app` refuses to start otherwise). It checks query parameters (names and values) and path
parameters before the body is read, then gives the route a `CheckedRequest` whose `json()` and
`form()` check what they decode: JSON keys and values at any depth, multipart field names, values
and file names. A form field holding JSON (a dataset's `schema`) is checked as JSON. File contents
are not looked at here (datasets check their own headers and cells).

Tab, newline and carriage return are allowed in JSON string values only (a description may span
lines); keys, query, path and form fields allow none.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from functools import lru_cache
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.datastructures import FormData, UploadFile

from server.errors import ApiError

# C0 controls, DEL, C1 controls, and surrogates (only a lone one can reach a Python str).
_CONTROL = "\x00-\x1f\x7f-\x9f\ud800-\udfff"
TEXT_BAD = re.compile(f"[{_CONTROL}]")
VALUE_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")  # JSON values: \t \n \r allowed
# What in a raw JSON body can decode to a control character or a surrogate: escapes (\b \f \n \r
# \t, \u0000-\u001f, \u007f-\u009f, \ud800-\udfff) and raw DEL / C1 (raw C0 is invalid JSON). Also
# an escaped quote, which would hide a long string from the quote-free-run scan in `loads`.
_RAW_SUSPECT = re.compile(rb'\\[bfnrt"]|\\u00[0189]|\\u007[fF]|\\u[dD][89a-fA-F]|\x7f|\xc2[\x80-\x9f]')


def _visible(s: str, limit: int = 80) -> str:
    """The string with control characters escaped, shortened, for error messages."""
    shown = TEXT_BAD.sub(lambda m: f"\\u{ord(m.group()):04x}", s[:limit])
    return shown + ("…" if len(s) > limit else "")


def _control(field: str, value: str, match: re.Match[str], what: str) -> ApiError:
    char = f"U+{ord(match.group()):04X}"
    named = f"{what} '{_visible(value)}'" if what == "key" else what
    text = (f"{named} contains a control character ({char} at position {match.start()}); control characters "
            "are not allowed" + (" (JSON string values may hold tab, newline and carriage return)"
                                 if what == "value" and field.startswith("body") else ""))
    item: dict[str, Any] = {"field": field, "message": text, "type": "control_character", "character": char,
                            "position": match.start()}
    if what == "key":
        item["key"] = _visible(value)
    return ApiError(422, "validation_error", f"{field}: {text}", {"field": field, "errors": [item]})


def _too_long(field: str, value: str, limit: int, what: str) -> ApiError:
    named = f"{what} '{_visible(value, 40)}'" if what == "key" else what
    text = f"{named} is {len(value)} characters, over the limit of {limit} (MAX_FIELD_CHARS)"
    facts = {"setting": "MAX_FIELD_CHARS", "limit": limit, "value": len(value)}
    item = {"field": field, "message": text, "type": "string_too_long", **facts}
    return ApiError(422, "validation_error", f"{field}: {text}", {"field": field, **facts, "errors": [item]})


def check_text(value: str, field: str, limit: int, *, what: str = "text") -> None:
    """A key, name or parameter: no control characters at all, at most `limit` characters."""
    if len(value) > limit:
        raise _too_long(field, value, limit, what)
    bad = TEXT_BAD.search(value)
    if bad:
        raise _control(field, value, bad, what)


def _check_value(value: str, field: str, limit: int) -> None:
    if len(value) > limit:
        raise _too_long(field, value, limit, "value")
    bad = VALUE_BAD.search(value)
    if bad:
        raise _control(field, value, bad, "value")


def check_json(value: Any, root: str, limit: int) -> None:
    """Every key and string value of decoded JSON, at any depth (iterative: depth costs no stack).

    Paths are built only for containers and errors: a 10,000-row predict body is mostly scalars.
    """
    if isinstance(value, str):
        _check_value(value, root, limit)
        return
    stack: list[tuple[Any, str]] = [(value, root)]
    bad_value, bad_key = VALUE_BAD.search, TEXT_BAD.search
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            for k, v in node.items():
                if len(k) > limit or bad_key(k):
                    check_text(k, path, limit, what="key")
                if isinstance(v, str):
                    if len(v) > limit or bad_value(v):
                        _check_value(v, f"{path}.{k}", limit)
                elif isinstance(v, (dict, list)):
                    stack.append((v, f"{path}.{k}"))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                if isinstance(v, str):
                    if len(v) > limit or bad_value(v):
                        _check_value(v, f"{path}.{i}", limit)
                elif isinstance(v, (dict, list)):
                    stack.append((v, f"{path}.{i}"))


def _no_constant(name: str) -> Any:
    # NaN / Infinity are not JSON (RFC 8259); stored, they break PostgreSQL's json and other readers.
    raise ValueError(f"{name} is not valid JSON")


def loads(body: bytes | str, root: str, limit: int) -> Any:
    """Decode JSON and check its strings. Raises json.JSONDecodeError (FastAPI: 400) or ApiError."""
    try:
        value = json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        raise ApiError(400, "malformed_json", "request body is nested too deeply to be decoded",
                       {"field": root, "reason": "nesting depth"}) from None
    except ValueError as exc:
        if isinstance(exc, json.JSONDecodeError):
            raise
        raise ApiError(400, "malformed_json", f"request body is not valid JSON: {exc}",
                       {"field": root, "reason": str(exc)}) from None
    raw = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    # The walk is needed only if something in the raw text can decode to a control character, or
    # if a run of more than `limit` bytes without a quote exists (a string of more than `limit`
    # characters needs one). Both scans run in C; most bodies need neither.
    if _RAW_SUSPECT.search(raw) or (len(raw) > limit and _long_run(limit).search(raw)):
        check_json(value, root, limit)
    return value


@lru_cache(maxsize=8)
def _long_run(limit: int) -> re.Pattern[bytes]:
    return re.compile(rb'[^"]{%d}' % (limit + 1))


def _field_limit(request: Request) -> int:
    return int(request.app.state.settings.max_field_chars)


class CheckedRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads(await self.body(), "body", _field_limit(self))
        return self._json

    async def _get_form(self, **kwargs: Any) -> FormData:  # what `await request.form()` runs
        form = await super()._get_form(**kwargs)
        try:
            check_form(form, _field_limit(self))
        except ApiError:
            await form.close()
            raise
        return form


def check_form(form: FormData, limit: int) -> None:
    for key, value in form.multi_items():
        check_text(key, "form", limit, what="field name")
        field = f"form.{key}"
        if isinstance(value, UploadFile):
            if value.filename is not None:
                check_text(value.filename, f"{field}.filename", limit, what="file name")
            continue
        if value.lstrip()[:1] in ("{", "["):  # a field that carries JSON is checked as JSON
            try:
                decoded = json.loads(value, parse_constant=_no_constant)
            except (ValueError, RecursionError):
                pass  # not JSON after all: the plain-text rule below applies
            else:
                check_json(decoded, field, limit)
                continue
        check_text(value, field, limit, what="value")


def check_params(request: Request) -> None:
    limit = _field_limit(request)
    for key, value in request.query_params.multi_items():
        check_text(key, "query", limit, what="parameter name")
        check_text(value, f"query.{key}", limit, what="value")
    for key, value in request.path_params.items():
        if isinstance(value, str):
            check_text(value, f"path.{key}", limit, what="value")


class CheckedRoute(APIRoute):
    """The route class of every router: strings are checked before the route sees them."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            check_params(request)
            return await handler(CheckedRequest(request.scope, request.receive))

        return checked

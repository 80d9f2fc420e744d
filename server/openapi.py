"""The OpenAPI document, completed to say what the API really answers.

FastAPI documents each route's 2xx answer and a 422 in its own `{"detail": [...]}` shape. This
module rewrites that once, for every route, from what the route is made of:

- every error answer has the body the handlers in `server/errors.py` send (`ErrorBody`);
- the status codes follow from the route itself: 401 and 503 for every /api/v1 route (the token
  is checked against the database), 403 when its role is above `viewer`, 404 when it names a
  resource (a path parameter, or a `*_id` field in its body), 400 and 413 when it takes a body,
  422 when it takes any input; 409 where `CONFLICTS` says the state of a resource can refuse it;
- answers that are not JSON carry their real media types (`CONTENT`).

Statuses a route declares itself (`responses={...}` on its decorator) are kept, with `ErrorBody`
as their content when they give none: that is how a route documents an answer the rules above
can't see. Entries of `CONFLICTS` and `CONTENT` that match no route fail `describe()`, so a
renamed route cannot silently lose its documentation.
"""

from __future__ import annotations

import copy
import json
import typing
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from server import deps
from server.schemas import ErrorBody

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}}
WWW_AUTHENTICATE = {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}}

DESCRIPTIONS = {
    400: "`malformed_json`: the body is not valid JSON (or a multipart body that can't be parsed)",
    401: "`unauthorized`: the bearer token is missing, unknown or revoked",
    403: "`forbidden`: the token's role is below the one this route needs",
    404: "`not_found`: a resource named in the path or the body does not exist",
    409: "`conflict`: the resource's state refuses this request",
    413: "`payload_too_large`: the body, or a count in it, is over a limit; `details` names the setting",
    422: "`validation_error` (`details.errors` lists each field), or a value the API can't use (`details.field`)",
    503: "`database_unavailable`: the job database is unreachable; retry after `Retry-After` seconds",
}
HEADERS = {401: WWW_AUTHENTICATE, 503: RETRY_AFTER}

# 409s depend on what a resource is doing, which the route's shape can't tell.
_ARTIFACT = "the stored file no longer matches the sha256 recorded for it (the artifact store was changed)"
CONFLICTS: dict[tuple[str, str], str] = {
    ("POST", "/api/v1/jobs/{job_id}/cancel"): "the job has already finished",
    ("DELETE", "/api/v1/datasets/{dataset_id}"): "a queued or running job uses the dataset, or a registered "
                                                  "model was trained on it",
    ("DELETE", "/api/v1/tokens/{token_id}"): "the token is the one making this request",
    ("GET", "/api/v1/datasets/{dataset_id}/download"): _ARTIFACT,
    ("PATCH", "/api/v1/datasets/{dataset_id}"): _ARTIFACT,
    ("GET", "/api/v1/models/{ref}/inputs"): _ARTIFACT,
    ("POST", "/api/v1/models/{ref}/predict"): _ARTIFACT,
    ("POST", "/api/v1/models/{ref}/batch-predictions"): _ARTIFACT,
    ("POST", "/api/v1/llm/explanations"): _ARTIFACT,
}

# Successful answers that are not (only) JSON: {(method, path): {status: content}}.
CONTENT: dict[tuple[str, str], dict[int, dict[str, Any]]] = {
    ("GET", "/api/v1/datasets/{dataset_id}/download"): {200: {
        "text/csv": {"schema": {"type": "string"}},
        "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
    }},
    # OpenAPI 3.2's itemSchema: the shape of each event (tools that predate 3.2 ignore it).
    ("GET", "/api/v1/jobs/{job_id}/events"): {200: {
        "text/event-stream": {"itemSchema": {
            "type": "object", "required": ["event", "data"],
            "description": "One event: `id` (resume with Last-Event-ID), `event` (status, progress, log, ...; "
                           "`error` if the token is revoked mid-stream), `data` (a JSON object with `ts`). "
                           "`: keep-alive` comments are sent while nothing happens.",
            "properties": {
                "id": {"type": "string", "pattern": "^[0-9]+$"},
                "event": {"type": "string"},
                "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": {"type": "object"}},
            },
        }},
    }},
}

# /api/health answers 503 with its own body (which part is down), not an ErrorBody.
HEALTH = ("GET", "/api/health")


def _role_of_dependency() -> dict[Callable[..., Any], str]:
    """The role check behind each of the `Viewer`, `Operator` and `Admin` aliases."""
    out = {}
    for role, alias in (("viewer", deps.Viewer), ("operator", deps.Operator), ("admin", deps.Admin)):
        out[typing.get_args(alias)[1].dependency] = role
    return out


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for d in dependant.dependencies:
        if d.call is not None:
            yield d.call
        yield from _calls(d)


def _required_role(route: Any, roles: dict[Callable[..., Any], str]) -> str | None:
    found = [roles[c] for c in _calls(route.dependant) if c in roles]
    order = ["viewer", "operator", "admin"]
    return max(found, key=order.index) if found else None


def _body_properties(doc: dict[str, Any], op: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for media in (op.get("requestBody") or {}).get("content", {}).values():
        schema = media.get("schema") or {}
        ref = schema.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
        names |= set(schema.get("properties") or {})
    return names


def statuses(doc: dict[str, Any], route: Any, method: str, op: dict[str, Any],
             roles: dict[Callable[..., Any], str]) -> dict[int, str]:
    """Each error status this operation can answer, with what it means here."""
    out: dict[int, str] = {}
    has_body = "requestBody" in op
    params = op.get("parameters") or []
    if route.path_format.startswith("/api/v1/"):
        out[401] = DESCRIPTIONS[401]
        out[503] = DESCRIPTIONS[503]
    if _required_role(route, roles) in ("operator", "admin"):
        out[403] = DESCRIPTIONS[403]
    if any(p.get("in") == "path" for p in params) or any(n.endswith("_id") for n in _body_properties(doc, op)):
        out[404] = DESCRIPTIONS[404]
    if has_body:
        out[400] = DESCRIPTIONS[400]
        out[413] = DESCRIPTIONS[413]
    if has_body or params:
        out[422] = DESCRIPTIONS[422]
    conflict = CONFLICTS.get((method, route.path_format))
    if conflict:
        out[409] = f"`conflict`: {conflict}"
    return out


def _error_response(description: str, status: int, given: dict[str, Any] | None) -> dict[str, Any]:
    content = (given or {}).get("content") or {}
    schema = (content.get("application/json") or {}).get("schema") or {}
    if not content or schema.get("$ref", "").endswith("/HTTPValidationError"):
        content = {"application/json": {"schema": ERROR_REF}}
    # A description the route wrote itself wins over the generic one (FastAPI's default for 422 does not).
    own = (given or {}).get("description")
    response: dict[str, Any] = {"description": own if own and own != "Validation Error" else description,
                                "content": content}
    if status in HEADERS:
        response["headers"] = {**HEADERS[status], **((given or {}).get("headers") or {})}
    return response


def describe(app: FastAPI, doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` (FastAPI's document for `app`) with the real error answers and media types."""
    doc = copy.deepcopy(doc)
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(error_schema.pop("$defs", {}))
    components["ErrorBody"] = error_schema
    roles = _role_of_dependency()
    seen: set[tuple[str, str]] = set()
    # A route context is the route as mounted: its full path, and its routers' dependencies too.
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        for method in sorted(route.methods):
            op = doc["paths"].get(route.path_format, {}).get(method.lower())
            if op is None:
                continue
            key = (method, route.path_format)
            seen.add(key)
            responses = op.setdefault("responses", {})
            for status, content in CONTENT.get(key, {}).items():
                responses.setdefault(str(status), {"description": "Successful Response"})["content"] = content
            if key == HEALTH:
                ok = responses.get("200", {})
                responses["503"] = {"description": "Degraded: `problems` says which part is down",
                                    "content": copy.deepcopy(ok.get("content") or {"application/json": {"schema": {}}})}
                continue
            wanted = statuses(doc, route, method, op, roles)
            for code in [c for c in responses if c[:1] in "45" and int(c) not in wanted]:
                wanted[int(code)] = responses[code].get("description") or DESCRIPTIONS.get(int(code), "Error")
            for status, description in sorted(wanted.items()):
                responses[str(status)] = _error_response(description, status, responses.get(str(status)))
            op["responses"] = dict(sorted(responses.items()))
    missing = sorted((set(CONFLICTS) | set(CONTENT)) - seen)
    if missing:
        raise RuntimeError(f"server/openapi.py describes operations the app does not have: {missing}")
    paths = json.dumps(doc["paths"])
    for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422 shape, replaced above
        if f'"#/components/schemas/{unused}"' not in paths:
            components.pop(unused, None)
    return doc


def install(app: FastAPI) -> None:
    """Serve `describe()`'s document at /openapi.json (and /docs); built once, rebuilt if routes change."""
    generate = app.openapi
    cache: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        base = generate()
        if cache.get("base") is not base:
            cache["base"], cache["doc"] = base, describe(app, base)
        return cache["doc"]

    app.openapi = openapi  # type: ignore[method-assign]

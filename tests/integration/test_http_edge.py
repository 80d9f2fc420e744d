"""The HTTP edge (issue 12): auth before the body, strings checked once for every route, bounded page
offsets, 500s that leave the keep-alive connection usable, a health page that tells anonymous
callers statuses only, and Flower credentials that survive Flower's comma-splitting."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Platform, backend_of
from tests.helpers import Api, free_port, wait_until

BIG = 200 * 1024 * 1024  # declared, never built: the server must answer before reading it


def err(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == code, body
    return body["error"]


def raw_request(port: int, head: bytes, first_body_bytes: bytes) -> bytes:
    """Send the head and a few body bytes, then read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(head + first_body_bytes)
        data = b""
        while chunk := s.recv(65536):  # a server waiting for the body would time out here
            data += chunk
    return data


def upload_head(token: str, length: int = BIG) -> bytes:
    return (b"POST /api/v1/datasets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode() +
            b"\r\nContent-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: " + str(length).encode() +
            b"\r\n\r\n")


def revoked_token(platform: Platform) -> str:
    admin = platform.api("admin")
    created = admin.post("/api/v1/tokens", json={"name": "soon-revoked", "role": "operator"}).json()
    assert Api(platform.base_url, created["token"]).get("/api/v1/me").status_code == 200
    assert admin.client.delete(f"/api/v1/tokens/{created['id']}").status_code == 204
    return created["token"]


# ------------------------------------------------------------------------ auth before the body
@pytest.mark.parametrize("kind", ["junk", "well-formed but unknown", "revoked"])
def test_bad_token_with_a_huge_upload_is_refused_before_the_body(platform: Platform, kind: str) -> None:
    token = {"junk": "junk", "well-formed but unknown": "pm_" + "x" * 43}.get(kind) or revoked_token(platform)
    data = raw_request(platform.port, upload_head(token), b"--XyZ\r\nContent-Disposition: form-data; name=")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401"), data[:300]
    headers = head.lower()
    assert b"www-authenticate: bearer" in headers and b"connection: close" in headers
    e = json.loads(body)["error"]
    assert e["code"] == "unauthorized" and "python -m server token create" in e["message"]
    # The same upload with a valid token is refused by size instead (DATASET_MAX_BYTES): auth came first.
    data = raw_request(platform.port, upload_head(platform.tokens["operator"]), b"--XyZ\r\n")
    assert data.startswith(b"HTTP/1.1 413"), data[:300]


def test_streamed_upload_with_junk_token_is_not_consumed(platform: Platform) -> None:
    """A 200 MB multipart body from a generator (no Content-Length): the API answers 401 and closes,
    so the client stops after what the socket buffers took, far short of the body."""
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        piece = b"0123456789abcdef" * 4096  # 64 KiB, the same object each time (no memory cost)
        yield b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n\r\n"
        while sent < BIG:
            sent += len(piece)
            yield piece

    try:
        r = httpx.post(platform.base_url + "/api/v1/datasets", content=body(), timeout=30,
                       headers={"Authorization": "Bearer pm_" + "j" * 43,
                                "Content-Type": "multipart/form-data; boundary=XyZ"})
    except httpx.TransportError:
        pytest.fail(f"no 401 read back (sent {sent} bytes)")
    err(r, 401, "unauthorized")
    assert r.headers["connection"] == "close"
    assert sent < BIG // 4, f"client pushed {sent} of {BIG} bytes: the server read the body"


def test_every_api_route_needs_a_valid_token(platform: Platform) -> None:
    spec = httpx.get(platform.base_url + "/openapi.json", timeout=10).json()
    paths = [(method, path) for path, ops in spec["paths"].items() if path.startswith("/api/v1/") for method in ops]
    assert len(paths) > 20
    junk = Api(platform.base_url, "pm_" + "z" * 43)
    for method, path in paths:
        r = junk.client.request(method.upper(), path.replace("{", "").replace("}", ""))
        e = err(r, 401, "unauthorized")
        assert r.headers["www-authenticate"] == "Bearer" and "token create" in e["message"], (method, path)


# ------------------------------------------------------------------------ strings
def control_error(r: httpx.Response, field: str) -> dict[str, Any]:
    e = err(r, 422, "validation_error")
    assert e["details"]["field"] == field and e["details"]["errors"][0]["type"] == "control_character", e
    assert e["message"].startswith(field + ":")
    return e


def test_nul_and_control_characters_are_refused_everywhere(platform: Platform) -> None:
    api, viewer = platform.api(), platform.api("viewer")
    control_error(viewer.get("/api/v1/models", params={"name": "a\x00b"}), "query.name")
    control_error(viewer.get("/api/v1/llm/explanations", params={"model_id": "a\x1bb"}), "query.model_id")
    control_error(viewer.get("/api/v1/jobs", params={"unknown": "\x00"}), "query.unknown")
    control_error(viewer.get("/api/v1/models/a%00b"), "path.ref")
    control_error(viewer.get("/api/v1/datasets/x%7F"), "path.dataset_id")
    control_error(api.post("/api/v1/jobs/ping", json={"queue": "ml\x00"}), "body.queue")
    e = control_error(api.post("/api/v1/models/m/predict", json={"rows": [{"a": 1}, {"b\x00": 2}]}), "body.rows.1")
    assert e["details"]["errors"][0]["key"] == "b\\u0000"
    control_error(api.post("/api/v1/models/m/predict", json={"rows": [{"a": [{"deep": "x\x00"}]}]}),
                  "body.rows.0.a.0.deep")
    lone_surrogate = b'{"model_id": "m", "row": {"k": "\\ud800"}}'  # valid JSON text, not encodable text
    control_error(api.post("/api/v1/llm/explanations", content=lone_surrogate,
                           headers={"content-type": "application/json"}), "body.row.k")
    files = {"file": ("a.csv", b"a,b\n1,2\n", "text/csv")}
    control_error(api.post("/api/v1/datasets", data={"name": "a\x00b"}, files=files), "form.name")
    control_error(api.post("/api/v1/datasets", data={"name": "ok", "schema": json.dumps(
        {"columns": {"a": {"description": "bad\x00"}}})}, files=files), "form.schema.columns.a.description")
    # Tab/newline are fine inside JSON values (a description may span lines), not in keys or names.
    r = api.post("/api/v1/jobs/ping", json={"queue": "ml\n"})
    assert err(r, 422, "validation_error")["details"]["errors"][0]["type"] == "literal_error"
    control_error(api.post("/api/v1/jobs/ping", json={"queue": "ml", "x\ty": 1}), "body")
    control_error(api.post("/api/v1/datasets", data={"name": "two\nlines"}, files=files), "form.name")


def test_control_character_in_a_multipart_file_name(platform: Platform) -> None:
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nok\r\n"
            b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\x01.csv\"\r\n"
            b"Content-Type: text/csv\r\n\r\na,b\n1,2\n\r\n--XyZ--\r\n")
    r = platform.api().post("/api/v1/datasets", content=body,
                            headers={"Content-Type": "multipart/form-data; boundary=XyZ"})
    control_error(r, "form.file.filename")


def test_long_strings_name_the_setting(platform: Platform) -> None:
    limit = 10_000  # MAX_FIELD_CHARS default
    for r, field in [
        (platform.api("viewer").get("/api/v1/models", params={"name": "n" * (limit + 1)}), "query.name"),
        (platform.api().post("/api/v1/models/m/predict", json={"rows": [{"a": "v" * (limit + 1)}]}), "body.rows.0.a"),
        (platform.api().post("/api/v1/models/m/predict", json={"rows": [{"k" * (limit + 1): 1}]}), "body.rows.0"),
    ]:
        e = err(r, 422, "validation_error")
        assert e["details"]["field"] == field and "MAX_FIELD_CHARS" in e["message"]
        assert (e["details"]["setting"], e["details"]["limit"], e["details"]["value"]) == ("MAX_FIELD_CHARS", limit,
                                                                                           limit + 1)


def test_json_that_is_not_json(platform: Platform) -> None:
    api = platform.api()
    for raw in (b'{"queue": NaN}', b'{"queue": "ml", "sleep_s": Infinity}', b"[" * 100_000):
        err(api.post("/api/v1/jobs/ping", content=raw, headers={"content-type": "application/json"}), 400,
            "malformed_json")


# ------------------------------------------------------------------------ page offsets
@pytest.mark.parametrize("path", ["/api/v1/jobs", "/api/v1/datasets", "/api/v1/models", "/api/v1/llm/explanations"])
def test_page_offsets_are_bounded(platform: Platform, path: str) -> None:
    viewer = platform.api("viewer")
    for bad in ("1e20", str(10**20), "100001", "-1", "1.5"):
        e = err(viewer.get(path, params={"offset": bad}), 422, "validation_error")
        assert e["details"]["errors"][0]["field"] == "query.offset" and "MAX_PAGE_OFFSET" in e["message"], e
    e = err(viewer.get(path, params={"offset": 10**20}), 422, "validation_error")
    assert (e["details"]["setting"], e["details"]["limit"]) == ("MAX_PAGE_OFFSET", 100_000)
    r = viewer.get(path, params={"offset": 100_000, "limit": 1})
    assert r.status_code == 200 and r.json()["offset"] == 100_000 and r.json()["items"] == []


# ------------------------------------------------------------------------ health
def test_health_tells_anonymous_callers_statuses_only(platform: Platform) -> None:
    anon = httpx.get(platform.base_url + "/api/health", timeout=5).json()
    assert set(anon) == {"status", "database", "broker", "queues", "problems", "details"}
    assert anon["database"] == {"ok": True} and anon["broker"] == {"ok": True}
    assert all(set(q) == {"workers"} for q in anon["queues"].values())
    assert platform.tag not in json.dumps(anon)  # worker host names carry the tag
    full = platform.api("viewer").get("/api/health").json()
    assert full["queues"]["ml"]["worker_names"] and full["workers"] and "depth" in full["queues"]["ml"]
    err(Api(platform.base_url, "pm_" + "q" * 43).get("/api/health"), 401, "unauthorized")


# ------------------------------------------------------------------------ 500s and the connection
@pytest.fixture
def faulty_server(platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An app from create_app with routes that fail, under real uvicorn on loopback (in this process)."""
    import uvicorn
    from fastapi import APIRouter
    from fastapi.responses import StreamingResponse
    from sqlalchemy import text

    from core.db import session_scope
    from core.settings import Settings, get_settings
    from server.app import create_app
    from server.strings import CheckedRoute

    # celery_app, imported by create_app, reads the global settings
    for k, v in {"REDIS_URL": platform.redis_url, "DATABASE_URL": platform.db_url, "DATA_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    settings = Settings(database_url=platform.db_url, redis_url=platform.redis_url, data_dir=tmp_path)
    app = create_app(settings, maintenance=False)
    router = APIRouter(route_class=CheckedRoute)

    @router.get("/api/v1/test/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    @router.get("/api/v1/test/boom-midstream")
    def boom_midstream() -> StreamingResponse:
        def gen() -> Iterator[bytes]:
            yield b"partial"
            raise RuntimeError("a bug after the headers")
        return StreamingResponse(gen())

    @router.get("/api/v1/test/nul-to-database")
    def nul_to_database() -> None:  # what point 2 stops at the edge, sent to the database anyway
        with session_scope(platform.db_url, write=False) as s:
            s.execute(text("SELECT CAST(:v AS integer)"), {"v": "not a number"})

    app.include_router(router)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_config=None, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=20, what="uvicorn started")
    yield f"http://127.0.0.1:{server.config.port}"
    server.should_exit = True
    thread.join(10)
    get_settings.cache_clear()


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_500_leaves_the_keep_alive_connection_usable(platform: Platform, faulty_server: str) -> None:
    uvicorn_log = Records()
    logging.getLogger("uvicorn.error").addHandler(uvicorn_log)
    try:
        with httpx.Client(base_url=faulty_server, headers={"Authorization": f"Bearer {platform.tokens['viewer']}"},
                          timeout=10) as c:
            ports = set()
            for _ in range(20):
                r = c.get("/api/v1/test/boom")
                e = err(r, 500, "internal_error")
                assert e["details"] == {"error_type": "RuntimeError"} and "connection" not in r.headers
                ok = c.get("/api/v1/me")
                assert ok.status_code == 200 and ok.json()["role"] == "viewer"
                ports |= {x.extensions["network_stream"].get_extra_info("client_addr")[1] for x in (r, ok)}
            assert len(ports) == 1, "the connection was replaced"
            # A failure after the headers went out cannot become a 500: the connection is closed
            # (the client sees a broken response), and the next request works on a new one.
            with pytest.raises(httpx.RemoteProtocolError):
                c.get("/api/v1/test/boom-midstream")
            assert c.get("/api/v1/me").status_code == 200
    finally:
        logging.getLogger("uvicorn.error").removeHandler(uvicorn_log)
    assert not [m for m in uvicorn_log.messages if "Exception in ASGI application" in m], uvicorn_log.messages


def test_database_refusing_a_value_is_a_422(platform: Platform, faulty_server: str) -> None:
    if backend_of(platform.db_url) != "postgresql":
        pytest.skip("SQLite casts anything; PostgreSQL raises DataError")
    r = httpx.get(faulty_server + "/api/v1/test/nul-to-database",
                  headers={"Authorization": f"Bearer {platform.tokens['viewer']}"}, timeout=10)
    e = err(r, 422, "invalid_value")
    assert "integer" in e["message"]


# ------------------------------------------------------------------------ Flower credentials
@pytest.mark.parametrize("env, word", [({"FLOWER_PASSWORD": "pass,word-long-enough"}, "comma"),
                                       ({"FLOWER_USER": "ad,min"}, "comma"), ({"FLOWER_USER": "ad:min"}, "':'")])
def test_flower_credentials_flower_would_split_are_refused(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                                           word: str) -> None:
    from pydantic import ValidationError

    from core.settings import Settings

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValidationError) as info:
        Settings()
    text = str(info.value)
    assert word in text and next(iter(env)) in text
    assert next(iter(env.values())) not in text  # the secret is not echoed


def test_generated_flower_password_has_no_comma(tmp_path: Path) -> None:
    from core.settings import Settings

    secret = Settings(data_dir=tmp_path).flower_secret()
    assert len(secret) >= 20 and "," not in secret and ":" not in secret

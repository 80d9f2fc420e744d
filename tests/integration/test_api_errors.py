"""Bad input and missing rights get a precise JSON error: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Platform
from tests.helpers import Api


def err(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body["error"]


def test_unknown_queue_names_the_field_and_allowed_values(platform: Platform) -> None:
    e = err(platform.api().post("/api/v1/jobs/ping", json={"queue": "gpu"}), 422, "validation_error")
    item = e["details"]["errors"][0]
    assert item["field"] == "body.queue" and "gan" in str(item["allowed"])
    assert e["message"].startswith("body.queue:")


@pytest.mark.parametrize("sleep_s, bound", [(-1, "greater_than_equal"), (3601, "less_than_equal")])
def test_sleep_out_of_range(platform: Platform, sleep_s: float, bound: str) -> None:
    e = err(platform.api().post("/api/v1/jobs/ping", json={"queue": "ml", "sleep_s": sleep_s}), 422, "validation_error")
    assert e["details"]["errors"][0]["field"] == "body.sleep_s" and e["details"]["errors"][0]["type"] == bound


def test_unknown_field_is_refused(platform: Platform) -> None:
    e = err(platform.api().post("/api/v1/jobs/ping", json={"queue": "ml", "sleeps": 1}), 422, "validation_error")
    assert e["details"]["errors"][0]["field"] == "body.sleeps"


def test_malformed_json(platform: Platform) -> None:
    r = platform.api().post("/api/v1/jobs/ping", content=b'{"queue": "ml",', headers={"content-type": "application/json"})
    err(r, 400, "malformed_json")


def test_missing_and_bad_token(platform: Platform) -> None:
    anon = Api(platform.base_url, None)
    for method, path in [("GET", "/api/v1/jobs"), ("POST", "/api/v1/jobs/ping"), ("GET", "/api/v1/me"),
                         ("GET", "/api/v1/tokens")]:
        r = anon.client.request(method, path, json={"queue": "ml"} if method == "POST" else None)
        e = err(r, 401, "unauthorized")
        assert r.headers["www-authenticate"] == "Bearer" and "Authorization: Bearer" in e["message"]
    # Anonymous requests are refused before their body is read or parsed.
    r = anon.client.post("/api/v1/tokens", content=b"{not json", headers={"content-type": "application/json"})
    err(r, 401, "unauthorized")
    err(Api(platform.base_url, "pm_not-a-real-token").get("/api/v1/jobs"), 401, "unauthorized")
    err(Api(platform.base_url, "garbage").get("/api/v1/jobs"), 401, "unauthorized")


def test_viewer_cannot_start_or_cancel_jobs(platform: Platform) -> None:
    viewer = platform.api("viewer")
    e = err(viewer.post("/api/v1/jobs/ping", json={"queue": "ml"}), 403, "forbidden")
    assert e["details"] == {"required_role": "operator", "token_role": "viewer"}
    job = platform.api("operator").ping("ml")
    err(viewer.post(f"/api/v1/jobs/{job['id']}/cancel"), 403, "forbidden")
    assert viewer.get(f"/api/v1/jobs/{job['id']}").status_code == 200  # but it can read
    err(platform.api("operator").get("/api/v1/tokens"), 403, "forbidden")


def test_unknown_job_and_bad_filters(platform: Platform) -> None:
    api = platform.api("viewer")
    e = err(api.get("/api/v1/jobs/nope"), 404, "not_found")
    assert e["details"] == {"job_id": "nope"}
    err(api.get("/api/v1/jobs/nope/events"), 404, "not_found")
    err(platform.api().post("/api/v1/jobs/nope/cancel"), 404, "not_found")
    e = err(api.get("/api/v1/jobs", params={"status": "done"}), 422, "validation_error")
    assert e["details"]["errors"][0]["field"] == "query.status"
    err(api.get("/api/v1/jobs", params={"limit": 0}), 422, "validation_error")
    err(api.get("/api/v1/jobs", params={"queue": "gpu"}), 422, "validation_error")
    err(api.get("/api/v1/jobs", params={"offset": 10**20}), 422, "validation_error")
    err(api.get("/api/v1/jobs", params={"kind": "a\x00b"}), 422, "validation_error")
    e = err(api.get("/api/v1/jobs/%00"), 422, "validation_error")
    assert e["details"]["field"] == "path.job_id"
    err(api.get("/api/v1/nothing-here"), 404, "not_found")


def test_oversized_body_is_refused(platform: Platform) -> None:
    """Declared too big: refused before reading. Streamed (chunked) past the limit: refused mid-stream."""
    limit = int(platform.env["MAX_REQUEST_BYTES"])
    with socket.create_connection(("127.0.0.1", platform.port), timeout=10) as s:
        s.sendall(b"POST /api/v1/jobs/ping HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Authorization: Bearer " + platform.tokens["operator"].encode() +
                  b"\r\nContent-Length: " + str(limit * 100).encode() + b"\r\n\r\n{")
        head = s.recv(65536).decode()
    assert head.startswith("HTTP/1.1 413"), head

    def chunks() -> Iterator[bytes]:
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    r = httpx.post(platform.base_url + "/api/v1/jobs/ping", content=chunks(), timeout=30,
                   headers={"Authorization": f"Bearer {platform.tokens['operator']}", "content-type": "application/json"})
    e = err(r, 413, "payload_too_large")
    assert e["details"] == {"limit_bytes": limit, "setting": "MAX_REQUEST_BYTES"}


def test_token_management(platform: Platform) -> None:
    admin = platform.api("admin")
    r = admin.post("/api/v1/tokens", json={"name": "ci-bot", "role": "operator"})
    assert r.status_code == 201
    created = r.json()
    assert created["token"].startswith("pm_") and created["role"] == "operator" and created["created_by"] == f"admin-{platform.tag}"
    bot = Api(platform.base_url, created["token"])
    assert bot.get("/api/v1/me").json() == {"name": "ci-bot", "role": "operator", "token_id": created["id"]}
    listed = admin.get("/api/v1/tokens").json()
    assert created["id"] in {t["id"] for t in listed} and all("token" not in t for t in listed)
    err(admin.post("/api/v1/tokens", json={"name": "x", "role": "root"}), 422, "validation_error")
    e = err(admin.post("/api/v1/tokens", json={"name": "   ", "role": "viewer"}), 422, "validation_error")
    assert e["details"]["errors"][0]["field"] == "body.name"
    used = {t["id"]: t for t in admin.get("/api/v1/tokens").json()}[created["id"]]
    assert used["last_used_at"] is not None  # the bot's request above was recorded
    assert admin.client.delete(f"/api/v1/tokens/{created['id']}").status_code == 204
    err(bot.get("/api/v1/me"), 401, "unauthorized")
    err(admin.client.delete("/api/v1/tokens/unknown"), 404, "not_found")

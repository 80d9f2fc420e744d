"""Idempotency-Key on job-creating POSTs, through HTTP against the real platform and database."""

from __future__ import annotations

import threading
from datetime import timedelta

import httpx
from sqlalchemy import create_engine, text

from core.models import utcnow
from tests.conftest import Platform


def _post(platform: Platform, key: str | None, body: dict, role: str = "operator") -> httpx.Response:
    headers = {"Authorization": f"Bearer {platform.tokens[role]}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return httpx.post(platform.base_url + "/api/v1/jobs/ping", json=body, headers=headers, timeout=30)


def _jobs_total(platform: Platform) -> int:
    return platform.api("viewer").get("/api/v1/jobs", params={"limit": 1}).json()["total"]


def test_a_retry_with_the_same_key_returns_the_same_job(platform: Platform) -> None:
    first = _post(platform, "retry-1", {"queue": "ml"})
    assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers, first.text
    before = _jobs_total(platform)
    # Key order and spacing in the body don't make it another request.
    again = httpx.post(platform.base_url + "/api/v1/jobs/ping", content=b'{ "queue" : "ml" }', timeout=30,
                       headers={"Authorization": f"Bearer {platform.tokens['operator']}", "Idempotency-Key": "retry-1",
                                "Content-Type": "application/json"})
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true", again.text
    assert again.json()["id"] == first.json()["id"]
    assert _jobs_total(platform) == before
    done = platform.api().wait(first.json()["id"])
    replay = _post(platform, "retry-1", {"queue": "ml"})  # the job's current state, not a copy of the first answer
    assert replay.json()["id"] == done["id"] and replay.json()["status"] == "succeeded"


def test_the_same_key_with_another_request_is_refused(platform: Platform) -> None:
    first = _post(platform, "reuse-1", {"queue": "ml"})
    assert first.status_code == 202
    before = _jobs_total(platform)
    r = _post(platform, "reuse-1", {"queue": "gan"})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "idempotency_key_reused" and err["details"]["job_id"] == first.json()["id"]
    assert err["details"]["field"] == "header.Idempotency-Key"
    assert _jobs_total(platform) == before


def test_keys_belong_to_their_token(platform: Platform) -> None:
    a = _post(platform, "shared-key", {"queue": "ml"}, role="operator")
    b = _post(platform, "shared-key", {"queue": "ml"}, role="admin")
    assert a.status_code == b.status_code == 202 and a.json()["id"] != b.json()["id"]


def test_without_a_key_every_request_is_a_new_job(platform: Platform) -> None:
    assert _post(platform, None, {"queue": "ml"}).json()["id"] != _post(platform, None, {"queue": "ml"}).json()["id"]


def test_malformed_keys_are_refused_naming_the_header(platform: Platform) -> None:
    before = _jobs_total(platform)
    for bad in ["", "k" * 256]:
        r = _post(platform, bad, {"queue": "ml"})
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["error"]["details"]["errors"][0]["field"] == "header.Idempotency-Key"
    assert _jobs_total(platform) == before


def test_a_refused_request_stores_no_key(platform: Platform) -> None:
    bad = _post(platform, "fix-and-retry", {"queue": "nope"})
    assert bad.status_code == 422
    good = _post(platform, "fix-and-retry", {"queue": "ml"})
    assert good.status_code == 202 and "Idempotent-Replayed" not in good.headers


def test_concurrent_requests_with_one_key_create_one_job(platform: Platform) -> None:
    before = _jobs_total(platform)
    barrier = threading.Barrier(8)
    answers: list[httpx.Response] = []

    def send() -> None:
        barrier.wait()
        answers.append(_post(platform, "race-1", {"queue": "llm"}))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(answers) == 8 and all(r.status_code == 202 for r in answers), [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in answers) == 7
    assert _jobs_total(platform) == before + 1


def test_an_expired_key_starts_a_new_job_and_is_purged(platform: Platform) -> None:
    first = _post(platform, "old-key", {"queue": "ml"}).json()
    engine = create_engine(platform.env["DATABASE_URL"])
    try:
        with engine.begin() as conn:  # as if it had been sent 25 h ago (IDEMPOTENCY_TTL_HOURS is 24)
            conn.execute(text("UPDATE idempotency_keys SET created_at = :t WHERE key = 'old-key'"),
                         {"t": utcnow() - timedelta(hours=25)})
        second = _post(platform, "old-key", {"queue": "ml"})
        assert second.status_code == 202 and "Idempotent-Replayed" not in second.headers
        assert second.json()["id"] != first["id"]
        assert _post(platform, "old-key", {"queue": "ml"}).json()["id"] == second.json()["id"]

        from core import idempotency

        with engine.begin() as conn:
            conn.execute(text("UPDATE idempotency_keys SET created_at = :t WHERE key = 'old-key'"),
                         {"t": utcnow() - timedelta(hours=25)})
        assert idempotency.purge(24, platform.env["DATABASE_URL"]) >= 1
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM idempotency_keys WHERE key = 'old-key'")).scalar() == 0
    finally:
        engine.dispose()


def test_every_job_creating_route_documents_the_header(platform: Platform) -> None:
    spec = httpx.get(platform.base_url + "/openapi.json", timeout=30).json()
    posts = {path: ops["post"] for path, ops in spec["paths"].items() if "post" in ops}
    creating = {p for p, op in posts.items() if "202" in op["responses"]}
    assert {"/api/v1/jobs/ping", "/api/v1/ml/models", "/api/v1/gan/models",
            "/api/v1/llm/explanations"} <= creating
    for path in creating:
        names = {p["name"] for p in posts[path].get("parameters", []) if p["in"] == "header"}
        assert "Idempotency-Key" in names, path

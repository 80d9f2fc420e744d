"""Queues that no worker reads, and a broker that goes away and comes back empty."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Platform, new_database
from tests.helpers import RedisServer, wait_until


@pytest.fixture
def ml_only(backend: str, isolated_redis: RedisServer) -> Iterator[Platform]:
    """API + a single worker that consumes only `ml`, on a private Redis this test may kill.

    It gets its own database too: API processes sharing a job store must share the broker, or their
    outbox loops would (rightly) re-send each other's jobs to their own broker.
    """
    with new_database(backend) as url:
        p = Platform(url, isolated_redis.url(0), f"{backend}-iso", queues=("ml",)).start()
        yield p
        p.stop()


def health(p: Platform) -> tuple[int, dict]:
    r = httpx.get(p.base_url + "/api/health", timeout=10,  # with a token: depths and error texts
                  headers={"Authorization": f"Bearer {p.tokens['viewer']}"} if p.tokens else None)
    return r.status_code, r.json()


def test_ml_only_worker_never_receives_gan_jobs(ml_only: Platform) -> None:
    api = ml_only.api()
    gan = api.ping("gan")
    ml = api.wait(api.ping("ml")["id"])
    assert ml["status"] == "succeeded" and ml["worker"].startswith("ml-")
    time.sleep(1.5)
    stuck = api.job(gan["id"])
    assert stuck["status"] == "queued" and stuck["worker"] is None and stuck["started_at"] is None
    code, h = health(ml_only)
    assert code == 503 and h["status"] == "degraded"
    assert h["queues"]["gan"] == {"workers": 0, "depth": 1, "worker_names": []} and h["queues"]["ml"]["workers"] == 1
    assert "no worker is consuming queue 'gan'" in h["problems"]
    assert "Task gan.ping" not in ml_only.workers["ml"].log_path.read_text()  # never received
    assert api.post(f"/api/v1/jobs/{gan['id']}/cancel").json()["status"] == "cancelled"


def test_broker_down_jobs_wait_in_outbox_and_run_when_it_returns(ml_only: Platform, isolated_redis: RedisServer) -> None:
    api = ml_only.api()
    running = api.ping("ml", sleep_s=3)
    api.wait(running["id"], "running", timeout=30)
    waiting = api.ping("ml")  # sent to Redis; sits in the queue behind the running job
    assert waiting["dispatched"] is True

    isolated_redis.stop()  # the broker dies and loses everything it held (no persistence)
    code, h = wait_until(lambda: (r := health(ml_only))[1]["broker"]["ok"] is False and r, timeout=10, what="degraded")
    assert code == 503 and h["status"] == "degraded"
    assert any("broker unreachable" in p for p in h["problems"])

    t0 = time.monotonic()
    r = api.post("/api/v1/jobs/ping", json={"queue": "ml"})
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["status"] == "queued" and accepted["dispatched"] is False
    assert time.monotonic() - t0 < 10, "a dead broker must not hang the request"

    time.sleep(1)
    isolated_redis.start()  # same port, empty
    for job in (running, waiting, accepted):
        done = api.wait(job["id"], timeout=90)
        assert done["status"] == "succeeded", (done, ml_only.logs())
    assert api.job(waiting["id"])["attempts"] == 1 and api.job(accepted["id"])["attempts"] == 1
    wait_until(lambda: health(ml_only)[1]["broker"]["ok"], timeout=30, what="broker ok again")


def test_database_down_gives_503_and_health_says_why(backend: str, isolated_redis: RedisServer) -> None:
    if backend != "postgresql":
        pytest.skip("a SQLite file can't be made unreachable from outside the process; covered on PostgreSQL")
    import psycopg

    from tests.conftest import PG_ADMIN_URL

    with new_database(backend) as url:
        p = Platform(url, isolated_redis.url(0), "pg-dbdown", queues=("ml",)).start()
        try:
            api = p.api()
            job = api.wait(api.ping("ml")["id"])
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:  # the database goes away
                conn.execute(f'DROP DATABASE "{url.rsplit("/", 1)[-1]}" WITH (FORCE)')
            r = api.get(f"/api/v1/jobs/{job['id']}")
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "database_unavailable" and r.headers["retry-after"] == "5"
            code, h = health(p)
            assert code == 503 and h["database"]["ok"] is False and h["status"] == "degraded"
            assert any(m.startswith("database unreachable") for m in h["problems"])
        finally:
            p.stop()

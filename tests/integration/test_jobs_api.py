"""Jobs end to end: HTTP API → job row → Celery over Redis → worker process → job row → HTTP/SSE."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
import redis

from tests.conftest import ROOT, Platform


@pytest.mark.parametrize("queue", ["gan", "ml", "llm"])
def test_ping_runs_on_the_worker_of_its_queue(platform: Platform, queue: str) -> None:
    api = platform.api()
    job = api.ping(queue)
    assert job["status"] == "queued" and job["queue"] == queue and job["task_name"] == f"{queue}.ping"
    assert job["dispatched"] is True and job["submitted_by"] == f"operator-{platform.tag}"
    done = api.wait(job["id"])
    assert done["status"] == "succeeded", done
    # Node names are "<queue>-<tag>@host": the job ran on that queue's worker and no other.
    assert done["worker"].startswith(f"{queue}-{platform.tag}@")
    assert done["result"]["pong"] is True and done["attempts"] == 1 and done["progress"] == 1.0
    assert done["started_at"] and done["finished_at"] and done["error"] is None


def test_events_stream_replays_progress_and_ends_with_terminal_event(platform: Platform) -> None:
    api = platform.api("operator")
    job = api.ping("ml", sleep_s=1.5)
    events = platform.api("viewer").events(job["id"])
    kinds = [e["event"] for e in events]
    statuses = [e["data"]["status"] for e in events if e["event"] == "status"]
    assert statuses == ["queued", "running", "succeeded"]
    progress = [e["data"]["fraction"] for e in events if e["event"] == "progress"]
    assert len(progress) >= 2 and progress == sorted(progress) and progress[-1] == 1.0
    assert kinds[-1] == "status"
    ids = [e["id"] for e in events]
    assert ids == sorted(ids)
    # A page opened late gets the same history; resuming after an id skips what was seen.
    assert [e["id"] for e in api.events(job["id"])] == ids
    resumed = api.events(job["id"], last_event_id=ids[1])
    assert [e["id"] for e in resumed] == ids[2:]


def test_cancel_queued_and_running_jobs(platform: Platform) -> None:
    api = platform.api()
    running = api.ping("gan", sleep_s=60)
    api.wait(running["id"], "running", timeout=30)
    queued = api.ping("gan", sleep_s=1)  # the only gan worker is busy: this one waits in the queue
    time.sleep(0.5)
    assert api.job(queued["id"])["status"] == "queued"

    r = api.post(f"/api/v1/jobs/{queued['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"

    t0 = time.monotonic()
    r = api.post(f"/api/v1/jobs/{running['id']}/cancel")
    assert r.status_code == 200 and r.json()["cancel_requested"] is True
    done = api.wait(running["id"], timeout=10)
    assert done["status"] == "cancelled"
    assert time.monotonic() - t0 < 5, "a running job checks for cancel every 0.5 s"
    assert done["progress"] < 1.0

    # The cancelled queued job's message is consumed later, but it never starts.
    follow = api.ping("gan")
    api.wait(follow["id"], "succeeded")
    never = api.job(queued["id"])
    assert never["status"] == "cancelled" and never["started_at"] is None and never["attempts"] == 0
    # Cancelling a finished job is a conflict, said precisely.
    r = api.post(f"/api/v1/jobs/{follow['id']}/cancel")
    assert r.status_code == 409 and r.json()["error"]["details"]["status"] == "succeeded"


def test_worker_killed_mid_job_is_rerun_exactly_once(platform: Platform) -> None:
    api = platform.api()
    job = api.ping("gan", sleep_s=4)
    api.wait(job["id"], "running", timeout=30)
    time.sleep(1.0)
    platform.workers["gan"].kill9()  # the worker and its pool child, no chance to clean up

    # The heartbeat goes silent; the reaper requeues with a new dispatch number. A new worker runs it.
    platform.workers["gan"] = platform.worker("gan", suffix="-b").start()
    done = api.wait(job["id"], timeout=120)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2 and done["worker"].startswith(f"gan-{platform.tag}-b@")
    events = api.events(job["id"])
    statuses = [e["data"]["status"] for e in events if e["event"] == "status"]
    assert statuses.count("succeeded") == 1
    assert statuses == ["queued", "running", "queued", "running", "succeeded"]
    assert "requeued" in [e for e in events if e["event"] == "status"][2]["data"]["message"]


def test_redelivered_message_for_finished_job_does_not_run_again(platform: Platform) -> None:
    from celery import Celery

    api = platform.api()
    job = api.wait(api.ping("ml")["id"])
    before = api.events(job["id"])
    # Replay the exact message Redis would redeliver after a visibility timeout.
    app = Celery(broker=platform.redis_url)
    app.conf.task_create_missing_queues = True
    app.send_task("ml.ping", args=[job["id"], 1], queue="ml", routing_key="ml")
    marker = api.wait(api.ping("ml")["id"])  # processed after the replay: one worker, FIFO
    assert marker["status"] == "succeeded"
    after = api.job(job["id"])
    assert after["attempts"] == 1 and after["finished_at"] == job["finished_at"]
    # The replay was delivered and deliberately skipped (not merely lost on the way).
    log_text = platform.workers["ml"].log_path.read_text()
    assert any('"job skipped' in line and job["id"] in line for line in log_text.splitlines())
    assert [e["id"] for e in api.events(job["id"])] == [e["id"] for e in before]


def test_listing_filters_and_paginates(platform: Platform) -> None:
    api = platform.api("viewer")
    op = platform.api("operator")
    ids = [op.ping("llm")["id"] for _ in range(3)]
    for i in ids:
        op.wait(i)
    r = api.get("/api/v1/jobs", params={"queue": "llm", "status": "succeeded", "limit": 2})
    assert r.status_code == 200
    page = r.json()
    assert page["limit"] == 2 and len(page["items"]) == 2 and page["total"] >= 3
    assert all(j["queue"] == "llm" and j["status"] == "succeeded" for j in page["items"])
    assert page["items"][0]["id"] == ids[-1]  # newest first
    nxt = api.get("/api/v1/jobs", params={"queue": "llm", "status": "succeeded", "limit": 2, "offset": 2}).json()
    assert not {j["id"] for j in nxt["items"]} & {j["id"] for j in page["items"]}
    assert api.get("/api/v1/jobs", params={"kind": "ping", "limit": 1}).json()["items"][0]["kind"] == "ping"


def test_health_reports_queues_workers_and_depth(platform: Platform) -> None:
    r = platform.api("viewer").get("/api/health", timeout=5)  # depths need a token
    assert r.status_code == 200, r.text
    h = r.json()
    assert h["status"] == "ok" and h["database"]["ok"] and h["broker"]["ok"]
    for q in ("gan", "ml", "llm"):
        assert h["queues"][q]["workers"] >= 1 and h["queues"][q]["depth"] == 0


def test_openapi_is_served(platform: Platform) -> None:
    spec = httpx.get(platform.base_url + "/openapi.json", timeout=5).json()
    assert "/api/v1/jobs/ping" in spec["paths"] and "/api/v1/jobs/{job_id}/events" in spec["paths"]
    assert httpx.get(platform.base_url + "/docs", timeout=5).status_code == 200


def test_unrouted_task_name_fails_loudly(platform: Platform) -> None:
    """A task whose name matches no route is refused at send time, never parked on a dead queue."""
    code = ("from celery_app import app\n"
            "try:\n    app.send_task('reports.build', args=[])\nexcept Exception as e:\n    print(type(e).__name__)\n")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "REDIS_URL": platform.redis_url},
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.stdout.strip() == "QueueNotFound", out.stderr
    assert redis.Redis.from_url(platform.redis_url).llen("unrouted") == 0

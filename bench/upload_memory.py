"""Memory and time of CSV dataset uploads, and /api/health latency while they run.

What it measures, in one run against a private environment it starts and tears down itself
(bench/_env.py: temp DATA_DIR, private Redis, fresh SQLite file or PostgreSQL database, the API
and one `system` worker started with `python -m server ...`):

0. Setup: for each size (default 50, 200 and 500 MB; `--smoke`: 1 and 3 MB) an AI4I-like CSV is
   written into the temp dir: the 10,000 AI4I rows (data/samples/ai4i2020.csv) tiled, UDI
   renumbered, seeded Gaussian noise (2 % of each column's std) on the sensor columns so values
   differ, written 10,000 rows at a time until the file reaches the size. The API gets
   DATASET_MAX_BYTES = 1 GiB and DATASET_MAX_CELLS = 10^9 (the 500 MB file has ~120 M cells, over
   the 10^8 default).
1. Resting: the API process's RSS (psutil, the process and its children) sampled every 50 ms for
   2 s before each upload; its median is the resting size of that upload.
2. Each upload: `POST /api/v1/datasets` (multipart, streamed from the file by httpx), timed from
   the first byte sent to the 201. During it, a thread samples the API's RSS every 50 ms (peak
   minus resting = what the upload cost) and another polls `GET /api/health` every ~100 ms on its
   own connection (latency p50 / p99 / max; a poll over 1 s is counted).

Run from the repository root:

    .venv/bin/python bench/upload_memory.py                 # 50, 200, 500 MB on SQLite
    .venv/bin/python bench/upload_memory.py --smoke         # 1 and 3 MB, seconds
    .venv/bin/python bench/upload_memory.py --sizes-mb 50 --db postgresql

A JSON summary goes to bench/results/upload_memory-<UTC timestamp>.json (git-ignored) unless
--no-json. A measurement, not a test: it exits non-zero only if the environment or an upload fails.
The CSV files live in the temp dir, which is removed at the end (kept with --keep-tmp or on failure).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
for _p in (BENCH, BENCH.parent):  # run as `python bench/upload_memory.py` from anywhere
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import httpx  # noqa: E402
from _env import (  # noqa: E402
    AI4I_CSV,
    BenchError,
    PlatformApi,
    RssSampler,
    add_env_arguments,
    machine_info,
    params_of,
    percentile,
    print_header,
    resting_rss_mb,
    run_bench,
    say,
    sigterm_as_interrupt,
    start_environment,
    write_summary,
)

MB = 1024 * 1024
SAMPLE_S = 0.05
HEALTH_EVERY_S = 0.1
NOISY = ["Air temperature [K]", "Process temperature [K]", "Rotational speed [rpm]", "Torque [Nm]", "Tool wear [min]"]
PLATFORM_ENV = {"DATASET_MAX_BYTES": str(1024 * MB), "DATASET_MAX_CELLS": str(10**9)}


def build_csv(path: Path, size_mb: float, seed: int = 0) -> dict[str, Any]:
    """AI4I rows tiled with noise until the file has `size_mb` MB; written block by block."""
    import numpy as np
    import pandas as pd

    base = pd.read_csv(AI4I_CSV)
    rng = np.random.default_rng(seed)
    std = {c: float(base[c].std()) for c in NOISY}
    target, rows, first = size_mb * MB, 0, True
    with open(path, "w", newline="") as f:
        while f.tell() < target:
            block = base.copy()
            block["UDI"] = np.arange(rows + 1, rows + len(block) + 1)
            for c in NOISY:
                noisy = block[c] + rng.normal(0, 0.02 * std[c], len(block))
                block[c] = noisy.round().clip(lower=0).astype(int) if base[c].dtype.kind == "i" else noisy.round(3)
            remaining = int((target - f.tell()) / 60) + 1  # ~60 bytes a row: stop near the size
            if remaining < len(block):
                block = block.iloc[:remaining]
            block.to_csv(f, index=False, header=first)
            first, rows = False, rows + len(block)
    return {"rows": rows, "size_mb": round(path.stat().st_size / MB, 1)}


class HealthPoller(threading.Thread):
    """GET /api/health every HEALTH_EVERY_S on its own connection; latencies in ms."""

    def __init__(self, base_url: str) -> None:
        super().__init__(daemon=True)
        self.client = httpx.Client(base_url=base_url, timeout=30)
        self.latencies: list[float] = []
        self.errors = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            t0 = time.perf_counter()
            try:
                self.client.get("/api/health")  # 503 "degraded" (queues without a worker here) still answers
                self.latencies.append((time.perf_counter() - t0) * 1000)
            except httpx.HTTPError:
                self.errors += 1
            self._stop_event.wait(max(0.0, HEALTH_EVERY_S - (time.perf_counter() - t0)))

    def stop(self) -> list[float]:
        self._stop_event.set()
        self.join(35)
        self.client.close()
        return self.latencies


def resting_rss(pid: int, seconds: float = 2.0) -> float:
    return resting_rss_mb(pid, seconds, SAMPLE_S, children=True)


def measure_upload(api: PlatformApi, pid: int, path: Path, name: str) -> dict[str, Any]:
    rest = resting_rss(pid)
    sampler, poller = RssSampler(pid, SAMPLE_S, children=True), HealthPoller(api.env.base_url)
    sampler.start()
    poller.start()
    t0 = time.perf_counter()
    try:
        ds = api.upload_dataset(path, name, timeout=1800)
    finally:
        seconds = time.perf_counter() - t0
        rss, lat = sampler.stop(), sorted(poller.stop())
    peak = max(rss) if rss else float("nan")
    return {"file_mb": round(path.stat().st_size / MB, 1), "rows": ds["rows"], "columns": len(ds["columns"]),
            "seconds": round(seconds, 2), "mb_per_s": round(path.stat().st_size / MB / seconds, 1),
            "api_rss_resting_mb": round(rest, 1), "api_rss_peak_mb": round(peak, 1),
            "api_rss_increase_mb": round(peak - rest, 1), "rss_samples": len(rss),
            "health_polls": len(lat), "health_errors": poller.errors,
            "health_p50_ms": round(percentile(lat, 50), 1), "health_p99_ms": round(percentile(lat, 99), 1),
            "health_max_ms": round(lat[-1], 1) if lat else None,
            "health_over_1s": sum(1 for x in lat if x > 1000), "dataset_id": ds["id"]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--sizes-mb", type=float, nargs="+", default=[50, 200, 500], help="CSV sizes to upload, in MB")
    p.add_argument("--smoke", action="store_true", help="tiny sizes (1 and 3 MB): checks the bench in seconds")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise")
    add_env_arguments(p)
    p.add_argument("--json-out", type=Path, help="summary path (default bench/results/upload_memory-<ts>.json)")
    p.add_argument("--no-json", action="store_true", help="do not write the JSON summary")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs, CSV files) after the run")
    args = p.parse_args(argv)
    if args.smoke:
        args.sizes_mb = [1, 3]
    if any(s <= 0 or s > 1000 for s in args.sizes_mb):
        p.error("--sizes-mb must be in (0, 1000]")
    return args


def run(args: argparse.Namespace) -> int:
    info = machine_info()

    def body(tmp: Path, stack: contextlib.ExitStack) -> None:
        env = start_environment(args, tmp, stack, queues="system", pool="solo", extra_env=PLATFORM_ENV)
        print_header("dataset upload memory benchmark", info, args, env,
                     f"AI4I-like CSV uploads of {', '.join(f'{s:g}' for s in args.sizes_mb)} MB; /api/health "
                     f"polled every {HEALTH_EVERY_S * 1000:.0f} ms during each")
        api = stack.enter_context(PlatformApi(env, timeout=1800))
        pid = env.api_pid()
        if pid is None:
            raise BenchError("no API process")
        results = []
        for size in args.sizes_mb:
            path = tmp / f"ai4i_like_{size:g}MB.csv"
            t0 = time.perf_counter()
            built = build_csv(path, size, args.seed)
            say(f"\n[{size:g} MB] built {built['rows']:,} rows ({built['size_mb']} MB) in "
                f"{time.perf_counter() - t0:.1f} s; uploading")
            r = measure_upload(api, pid, path, f"upload-bench-{size:g}MB")
            path.unlink()  # the next file needs the disk more than this one
            results.append({**built, **r})
            say(f"  {r['rows']:,} rows x {r['columns']} in {r['seconds']:.1f} s ({r['mb_per_s']} MB/s)")
            say(f"  API RSS resting {r['api_rss_resting_mb']:.0f} MB, peak {r['api_rss_peak_mb']:.0f} MB: "
                f"+{r['api_rss_increase_mb']:.0f} MB for a {r['file_mb']} MB file "
                f"({r['api_rss_increase_mb'] / r['file_mb']:.2f} x its size)")
            say(f"  /api/health during it: {r['health_polls']} polls, p50 {r['health_p50_ms']} ms, p99 "
                f"{r['health_p99_ms']} ms, max {r['health_max_ms']} ms, {r['health_over_1s']} over 1 s, "
                f"{r['health_errors']} errors")
        say("\nsummary (same run)")
        say(f"  {'file':>8} {'rows':>11} {'time':>8} {'API resting':>12} {'API peak':>9} {'increase':>9} "
            f"{'health p50/max':>15}")
        for r in results:
            say(f"  {r['file_mb']:>6} MB {r['rows']:>11,} {r['seconds']:>6.1f} s {r['api_rss_resting_mb']:>9.0f} MB "
                f"{r['api_rss_peak_mb']:>6.0f} MB {r['api_rss_increase_mb']:>+6.0f} MB "
                f"{r['health_p50_ms']:>6} / {r['health_max_ms']} ms")
        write_summary(args, "upload_memory", {"machine": info, "db": env.db_backend, "redis": env.redis_source,
                                              "params": params_of(args), "platform_env": PLATFORM_ENV,
                                              "uploads": results})

    return run_bench(args.keep_tmp, body)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with sigterm_as_interrupt():
        return run(args)


if __name__ == "__main__":
    sys.exit(main())

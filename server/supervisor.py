"""`python -m server up`: migrations, broker (embedded unless REDIS_URL), API, one worker per
queue and Flower, as child processes; restarts a child that dies; stops everything on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.files import write_private
from core.settings import PROJECT_ROOT, Settings

IS_WINDOWS = os.name == "nt"


@dataclass
class Child:
    name: str
    argv: list[str]
    where: str
    proc: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self, env: dict[str, str]) -> None:
        kwargs: dict[str, object] = {"cwd": str(PROJECT_ROOT), "env": env, "stdin": subprocess.DEVNULL}
        if IS_WINDOWS:
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
        else:
            kwargs["start_new_session"] = True  # Ctrl-C reaches us only; we stop children in order
        self.proc = subprocess.Popen(self.argv, **kwargs)  # type: ignore[call-overload]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> None:
        if self.alive():
            assert self.proc is not None
            if IS_WINDOWS:
                self.proc.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
            else:
                self.proc.terminate()

    def wait_or_kill(self, deadline: float) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def say(msg: str) -> None:
    print(f"[up] {msg}", flush=True)


def redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


def ensure_admin_token(settings: Settings) -> Path | None:
    """On a fresh database, create the first admin token into a private file (never printed to logs)."""
    from sqlalchemy import func, select

    from core import auth
    from core.db import session_scope
    from core.models import ApiToken

    with session_scope(settings.db_url) as session:
        if session.scalar(select(func.count()).select_from(ApiToken)):
            return None
        _, plaintext = auth.create_token(session, name="admin", role="admin", created_by="up")
    path = settings.data_dir / "admin-token"
    write_private(path, plaintext + "\n")
    return path


def up(settings: Settings, host: str, port: int, flower: bool = True, pool: str | None = None) -> int:
    from core.migrate import upgrade

    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    settings.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    say(f"database {redact(settings.db_url)}: applying migrations")
    upgrade(settings.db_url)
    token_file = ensure_admin_token(settings)

    embedded = None
    if settings.redis_url:
        broker = settings.redis_url
        say(f"broker {redact(broker)} (REDIS_URL)")
    else:
        from core.embedded_broker import EmbeddedRedis

        embedded = EmbeddedRedis(settings.data_dir)
        broker = embedded.start()
        write_private(settings.embedded_broker_file, broker)
        say(f"broker: embedded redis-server on 127.0.0.1:{embedded.port} (data in {embedded.dir})")

    env = {**os.environ, "REDIS_URL": broker, "DATA_DIR": str(settings.data_dir), "PYTHONUNBUFFERED": "1"}
    py = [sys.executable, "-m", "server"]
    pool_args = ["--pool", pool] if pool else []
    children = [
        Child("api", [*py, "api", "--host", host, "--port", str(port)], f"http://{host}:{port}  (dashboard: /, API docs: /docs)"),
        Child("worker-gan", [*py, "worker", "--queue", "gan", *pool_args], "queue gan"),
        Child("worker-ml", [*py, "worker", "--queue", "ml", *pool_args], "queue ml"),
        Child("worker-llm", [*py, "worker", "--queue", "llm,system", *pool_args], "queues llm, system"),
    ]
    if flower:
        children.append(Child("flower", [*py, "flower"], f"http://{settings.flower_host}:{settings.flower_port}  "
                                                         f"(user {settings.flower_user}; password: FLOWER_PASSWORD "
                                                         f"or {settings.data_dir / 'flower-password'})"))
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if IS_WINDOWS:
        signal.signal(signal.SIGBREAK, on_signal)  # type: ignore[attr-defined]
    else:
        signal.signal(signal.SIGHUP, on_signal)  # terminal closed: stop the children too
    try:
        for c in children:
            c.start(env)
        for c in children:
            say(f"{c.name:<11} pid {c.proc.pid if c.proc else '?':<7} {c.where}")
        if token_file:
            say(f"first admin token written to {token_file} (mode 0600); "
                "create more with `python -m server token create`")
        say("running; press Ctrl-C to stop everything")
        while not stopping:
            time.sleep(0.5)
            if embedded and not embedded.alive():
                say("embedded redis-server exited; restarting it (its append-only file keeps queued jobs)")
                embedded.start()
            for c in children:
                if not c.alive() and not stopping:
                    code = c.proc.returncode if c.proc else None
                    now = time.monotonic()
                    c.restarts = [t for t in c.restarts if now - t < 60] + [now]
                    if len(c.restarts) > 5:
                        say(f"{c.name} exited with {code} 5 times in a minute; stopping everything")
                        stopping = True
                        break
                    say(f"{c.name} exited with {code}; restarting")
                    c.start(env)
    finally:
        say("stopping")
        for c in reversed(children):
            c.terminate()
        deadline = time.monotonic() + 15
        for c in reversed(children):
            c.wait_or_kill(deadline)
        if embedded:
            embedded.stop()
            settings.embedded_broker_file.unlink(missing_ok=True)
        say("stopped")
    return 0

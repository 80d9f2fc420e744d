"""Small process helpers shared by the embedded broker, the tests and the benchmarks."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(pred: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.1,
               on_timeout: Callable[[], str] | None = None, error: type[Exception] = TimeoutError) -> Any:
    """Call `pred` until it returns something truthy (returned), or raise `error` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{on_timeout()}" if on_timeout else ""
            raise error(f"timed out after {timeout:g} s waiting for {what}{extra}")
        time.sleep(interval)

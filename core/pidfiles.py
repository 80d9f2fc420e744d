"""PID files that identify a process exactly (pid + start time), so `stop` never kills a stranger.

The Windows scripts (scripts/windows/*.ps1) start processes with `--pidfile` and stop them with
`python -m server stop`; all the logic lives here, in Python, where it is tested. A PID file whose
process has exited, or whose pid now belongs to another process, is removed without killing anything.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import psutil


def write_pidfile(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    me = psutil.Process()
    path.write_text(json.dumps({"pid": me.pid, "create_time": me.create_time(), "cmdline": me.cmdline()[:8]}))

    def _remove() -> None:
        try:
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()
        except (OSError, ValueError):
            pass

    atexit.register(_remove)


@dataclass
class StopResult:
    pidfile: Path
    pid: int | None
    outcome: str  # stopped | killed | not-running | not-ours | unreadable


def _ours(path: Path) -> tuple[psutil.Process | None, int | None, str | None]:
    try:
        record = json.loads(path.read_text())
        pid, created = int(record["pid"]), float(record["create_time"])
    except (OSError, ValueError, KeyError, TypeError):
        return None, None, "unreadable"
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - created) > 1.0:
            return None, pid, "not-ours"  # the pid was reused by another process
        return proc, pid, None
    except psutil.NoSuchProcess:
        return None, pid, "not-running"


def _exited(p: psutil.Process) -> bool:
    try:
        # A zombie has exited; it only waits for its parent (not us) to collect its status.
        return not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(procs: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout_s
    alive = [p for p in procs if not _exited(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if not _exited(p)]
    return alive


def stop_pidfiles(paths: list[Path], timeout_s: float = 20.0) -> list[StopResult]:
    """Stop every process named by these PID files (children first), then remove the files."""
    results: list[StopResult] = []
    targets: list[tuple[Path, psutil.Process]] = []
    for path in paths:
        proc, pid, problem = _ours(path)
        if proc is None:
            results.append(StopResult(path, pid, problem or "not-running"))
            path.unlink(missing_ok=True)
        else:
            targets.append((path, proc))
    procs: list[psutil.Process] = []
    for _, proc in targets:
        try:
            procs += [*proc.children(recursive=True), proc]
        except psutil.NoSuchProcess:
            continue
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    alive = _wait_gone(procs, timeout_s)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    _wait_gone(alive, 5)
    killed = {p.pid for p in alive}
    for path, proc in targets:
        results.append(StopResult(path, proc.pid, "killed" if proc.pid in killed else "stopped"))
        path.unlink(missing_ok=True)
    return results

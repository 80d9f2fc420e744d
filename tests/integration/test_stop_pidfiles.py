"""`python -m server stop` (what scripts/windows/stop-all.ps1 runs) stops only what was started with --pidfile."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import redis

from tests.conftest import ROOT, Platform
from tests.helpers import wait_until


def test_stop_kills_only_processes_started_with_pidfiles(platform: Platform, tmp_path: Path) -> None:
    pid_dir = tmp_path / "pids"
    worker = subprocess.Popen([sys.executable, "-m", "server", "worker", "--queue", "llm", "--pool", "solo",
                               "--name", f"llm-pidfile-{platform.tag}@%h", "--pidfile", str(pid_dir / "worker-llm.pid")],
                              cwd=ROOT, env=platform.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        wait_until(lambda: (pid_dir / "worker-llm.pid").exists(), timeout=30, what="worker pid file")
        beacons = redis.Redis.from_url(platform.redis_url)
        wait_until(lambda: any(b"llm-pidfile" in k for k in beacons.keys("pm:worker:*")), timeout=60,
                   what="worker ready")
        assert json.loads((pid_dir / "worker-llm.pid").read_text())["pid"] == worker.pid
        # A stale file whose pid now belongs to someone else, and one whose process is gone.
        (pid_dir / "reused.pid").write_text(json.dumps({"pid": stranger.pid, "create_time": time.time() - 3600}))
        (pid_dir / "gone.pid").write_text(json.dumps({"pid": 2**22 + 7, "create_time": 1.0}))
        out = subprocess.run([sys.executable, "-m", "server", "stop", "--pid-dir", str(pid_dir)], cwd=ROOT,
                             env=platform.env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        lines = dict(line.split(": ", 1) for line in out.stdout.strip().splitlines())
        assert lines["worker-llm.pid"] == f"pid {worker.pid} stopped"
        assert lines["reused.pid"].endswith("not-ours") and lines["gone.pid"].endswith("not-running")
        assert worker.wait(10) is not None
        assert stranger.poll() is None and psutil.pid_exists(stranger.pid)
        assert list(pid_dir.glob("*.pid")) == []
    finally:
        stranger.kill()
        if worker.poll() is None:
            worker.kill()

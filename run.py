#!/usr/bin/env python3
"""Bootstrap and run: creates .venv from requirements.txt when missing or stale, then runs a command.

    python3 run.py up      # the whole platform on the embedded broker (no services to install)
    python3 run.py test    # the test suite (extra arguments go to pytest)
    python3 run.py setup   # only create/refresh .venv
    python3 run.py <cmd>   # any `python -m server` command: api, worker, flower, db, token, stop

Works the same on Windows (`py run.py up`). Only the standard library is used here.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("PM_VENV", ROOT / ".venv"))
REQUIREMENTS = ROOT / "requirements.txt"
STAMP = VENV / ".requirements.sha256"
MIN_PYTHON = (3, 11)


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_venv() -> Path:
    if sys.version_info < MIN_PYTHON:
        sys.exit(f"Python {'.'.join(map(str, MIN_PYTHON))}+ is needed; this is {sys.version.split()[0]}")
    want = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    py = venv_python()
    if py.exists() and STAMP.exists() and STAMP.read_text().strip() == want:
        return py
    if not py.exists():
        print(f"[run] creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("[run] installing requirements (first run takes a few minutes)", flush=True)
    subprocess.check_call([str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                           "-r", str(REQUIREMENTS)])
    STAMP.write_text(want)
    return py


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    py = ensure_venv()
    if argv[0] == "setup":
        print(f"[run] {py} is ready")
        return 0
    if argv[0] == "test":
        cmd = [str(py), "-m", "pytest", *argv[1:]]
    else:
        cmd = [str(py), "-m", "server", *argv]
    os.chdir(ROOT)
    if os.name == "nt":
        return subprocess.call(cmd)
    os.execv(cmd[0], cmd)  # hand the terminal (and Ctrl-C) to the command itself
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

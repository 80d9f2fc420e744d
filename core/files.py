"""Writing files that hold secrets (tokens, passwords, broker URLs)."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    """Create or replace `path` readable by its owner only, from the first byte (no chmod window).

    On Windows the mode bits don't restrict reading; there, the file inherits DATA_DIR's ACL.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)

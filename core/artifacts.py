"""The artifact store: datasets and model files under ARTIFACT_ROOT (a local or shared directory).

Files are written to a temporary name and moved into place atomically, so a reader never sees a
half-written artifact, and each is identified by its SHA-256 so a loader can verify what it reads.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.settings import get_settings

CHUNK = 1024 * 1024


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


class ArtifactStore:
    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or get_settings().artifacts).resolve()

    def path(self, key: str) -> Path:
        p = (self.root / key).resolve()
        if self.root not in p.parents:
            raise ValueError(f"artifact key {key!r} escapes the store")
        return p

    @contextmanager
    def scratch(self) -> Iterator[Path]:
        """A private temporary directory inside the store (same filesystem: moves are atomic)."""
        d = self.root / "tmp" / uuid.uuid4().hex
        d.mkdir(parents=True)
        try:
            yield d
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def put(self, key: str, src: Path) -> tuple[str, int]:
        """Move `src` into the store under `key`; returns (sha256, size)."""
        dest = self.path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        digest, size = sha256_file(src), src.stat().st_size
        os.replace(src, dest)
        return digest, size

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

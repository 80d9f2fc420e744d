"""The artifact store: datasets and model files under ARTIFACT_ROOT.

ARTIFACT_ROOT is a local or shared directory (NFS/SMB), or an fsspec URL (`s3://bucket/prefix`,
`gcs://…`, `abfs://…`, `file:///…`; the protocol's fsspec package must be installed, e.g. `s3fs`)
so that API and workers on several machines see the same files.

Files are written under a temporary name and moved into place, so a reader never sees a half-written
artifact, and each is identified by its SHA-256: every read goes through `local(key, sha256)`, which
hands back a local file only after its hash matches the one the caller's record holds. With an
fsspec URL, files are downloaded once into a local cache (`<DATA_DIR>/artifact-cache`, named by
hash) and verified on every use, so a file swapped in the remote store or in the cache is refused.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from core.settings import get_settings

CHUNK = 1024 * 1024


class ArtifactMismatch(Exception):
    """The stored file is missing, or its SHA-256 is not the one recorded for it."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def is_url(root: str | Path) -> bool:
    return isinstance(root, str) and "://" in root


class ArtifactStore:
    def __init__(self, root: str | Path | None = None, local_dir: Path | None = None) -> None:
        root = root if root is not None else get_settings().artifacts
        self.url: str | None = None
        self.fs: Any = None
        if is_url(root):
            import fsspec

            self.url = str(root).rstrip("/")
            self.fs, self.base = fsspec.core.url_to_fs(self.url)
            self.base = self.base.rstrip("/")
            self.local_dir = (local_dir or get_settings().data_dir).resolve()
            self.root = self.local_dir / "artifact-cache"
        else:
            self.root = Path(root).resolve()
            self.local_dir = self.root

    def __repr__(self) -> str:
        return f"ArtifactStore({self.url or str(self.root)!r})"

    def _local_path(self, key: str) -> Path:
        p = (self.root / key).resolve()
        if self.root not in p.parents:
            raise ValueError(f"artifact key {key!r} escapes the store")
        return p

    def _remote(self, key: str) -> str:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"artifact key {key!r} escapes the store")
        return f"{self.base}/{key}"

    @contextmanager
    def scratch(self) -> Iterator[Path]:
        """A private local temporary directory (inside a local store: same filesystem, atomic moves)."""
        d = (self.root if self.url is None else self.local_dir) / "tmp" / uuid.uuid4().hex
        d.mkdir(parents=True)
        try:
            yield d
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def put(self, key: str, src: Path) -> tuple[str, int]:
        """Move `src` into the store under `key`; returns (sha256, size)."""
        digest, size = sha256_file(src), src.stat().st_size
        if self.url is None:
            dest = self._local_path(key)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest)
            return digest, size
        target = self._remote(key)
        partial = f"{target}.{uuid.uuid4().hex}.partial"
        self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        self.fs.put_file(str(src), partial)
        try:
            self.fs.mv(partial, target)
        except BaseException:
            self.fs.rm(partial)
            raise
        cached = self._cache_path(digest, key)  # the writer's own copy is the first cache entry
        cached.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, cached)
        return digest, size

    def _cache_path(self, digest: str, key: str) -> Path:
        return self.root / digest[:2] / f"{digest}{Path(key).suffix}"

    def _fetch(self, key: str, sha256: str) -> Path:
        """The local file for `key` (downloaded into the cache if needed), not yet verified."""
        if self.url is None:
            path = self._local_path(key)
            if not path.exists():
                raise ArtifactMismatch(f"{key} is missing from the artifact store")
            return path
        path = self._cache_path(sha256, key)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.partial")
            try:
                self.fs.get_file(self._remote(key), str(tmp))
            except FileNotFoundError:
                tmp.unlink(missing_ok=True)
                raise ArtifactMismatch(f"{key} is missing from the artifact store {self.url}") from None
            os.replace(tmp, path)
        return path

    def local(self, key: str, sha256: str) -> Path:
        """A local file holding the artifact, verified against `sha256`; raises ArtifactMismatch.

        For files too large to hold in memory (datasets). Whoever opens the path later reads the
        file again; for anything that is unpickled use `read_verified`."""
        path = self._fetch(key, sha256)
        if sha256_file(path) != sha256:
            raise ArtifactMismatch(f"{key} does not match the sha256 recorded for it; refusing to use it")
        return path

    def read_verified(self, key: str, sha256: str) -> bytes:
        """The artifact's bytes, read once and checked against `sha256`: the caller loads exactly
        the bytes that were hashed, so a file swapped after the check can't be slipped in."""
        data = self._fetch(key, sha256).read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ArtifactMismatch(f"{key} does not match the sha256 recorded for it; refusing to use it")
        return data

    # -- keys and housekeeping ---------------------------------------------------------------
    def list_keys(self, prefix: str) -> list[tuple[str, float]]:
        """(key, mtime as epoch seconds) of every file directly under `prefix/` (e.g. "models")."""
        out: list[tuple[str, float]] = []
        if self.url is None:
            folder = self._local_path(prefix)
            if folder.is_dir():
                for p in folder.iterdir():
                    with suppress(FileNotFoundError):
                        if p.is_file():
                            out.append((f"{prefix}/{p.name}", p.stat().st_mtime))
            return out
        try:
            entries = self.fs.ls(self._remote(prefix), detail=True)
        except FileNotFoundError:
            return out
        for info in entries:
            if info.get("type") == "file":
                mtime = _remote_mtime(info)
                if mtime is not None:
                    out.append((f"{prefix}/{info['name'].rstrip('/').rsplit('/', 1)[-1]}", mtime))
        return out

    def clean_scratch(self, older_than: float) -> int:
        """Remove scratch directories and `*.partial` files last touched before `older_than`
        (epoch seconds). Returns how many were removed. A scratch directory counts as touched when
        any file in it was, so one still being written to is kept."""
        removed = 0
        tmp_root = (self.root if self.url is None else self.local_dir) / "tmp"
        if tmp_root.is_dir():
            for d in list(tmp_root.iterdir()):
                if _newest_mtime(d) < older_than:
                    if d.is_dir():
                        shutil.rmtree(d, ignore_errors=True)
                    else:
                        d.unlink(missing_ok=True)
                    removed += 1
        # Only the fsspec cache downloads under a .partial name (a local store moves files in whole).
        if self.url is not None and self.root.is_dir():
            for p in list(self.root.rglob("*.partial")):
                with suppress(FileNotFoundError):
                    if p.stat().st_mtime < older_than:
                        p.unlink()
                        removed += 1
        if self.url is not None:
            try:
                found = self.fs.find(self.base, detail=True)
            except FileNotFoundError:
                found = {}
            for name, info in found.items():
                mtime = _remote_mtime(info)
                if name.endswith(".partial") and mtime is not None and mtime < older_than:
                    with suppress(FileNotFoundError):
                        self.fs.rm(name)
                        removed += 1
        return removed

    def delete(self, key: str) -> None:
        if self.url is None:
            self._local_path(key).unlink(missing_ok=True)
            return
        with suppress(FileNotFoundError):
            self.fs.rm(self._remote(key))


def _newest_mtime(path: Path) -> float:
    """The latest mtime of `path` and everything below it (0 if it vanished meanwhile)."""
    newest = 0.0
    with suppress(FileNotFoundError):
        newest = path.stat().st_mtime
        if path.is_dir():
            for p in path.rglob("*"):
                with suppress(FileNotFoundError):
                    newest = max(newest, p.stat().st_mtime)
    return newest


def _remote_mtime(info: dict[str, Any]) -> float | None:
    """Modification time from an fsspec `info` dict; each backend names it differently."""
    for field in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(field)
        if value is None:
            continue
        if isinstance(value, int | float):
            return float(value)
        if hasattr(value, "timestamp"):
            return float(value.timestamp())
        if isinstance(value, str):
            from datetime import datetime

            with suppress(ValueError):
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return None

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

    def local(self, key: str, sha256: str) -> Path:
        """A local file holding the artifact, verified against `sha256`; raises ArtifactMismatch."""
        if self.url is None:
            path = self._local_path(key)
            if not path.exists():
                raise ArtifactMismatch(f"{key} is missing from the artifact store")
        else:
            path = self._cache_path(sha256, key)
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.partial")
                try:
                    self.fs.get_file(self._remote(key), str(tmp))
                except FileNotFoundError:
                    raise ArtifactMismatch(f"{key} is missing from the artifact store {self.url}") from None
                os.replace(tmp, path)
        if sha256_file(path) != sha256:
            raise ArtifactMismatch(f"{key} does not match the sha256 recorded for it; refusing to use it")
        return path

    def delete(self, key: str) -> None:
        if self.url is None:
            self._local_path(key).unlink(missing_ok=True)
            return
        with suppress(FileNotFoundError):
            self.fs.rm(self._remote(key))

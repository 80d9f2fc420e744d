"""The artifact store, local and behind an fsspec URL: atomic puts, verified reads, a per-machine cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.artifacts import ArtifactMismatch, ArtifactStore, sha256_file


def _staged(tmp: Path, body: bytes) -> Path:
    p = tmp / "staged.bin"
    p.write_bytes(body)
    return p


@pytest.mark.parametrize("kind", ["directory", "fsspec-url"])
def test_put_verify_tamper_delete(kind: str, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    root = shared if kind == "directory" else f"file://{shared}"
    a = ArtifactStore(root, local_dir=tmp_path / "machine-a")
    digest, size = a.put("models/m1.joblib", _staged(tmp_path, b"model bytes"))
    assert size == 11 and (shared / "models" / "m1.joblib").read_bytes() == b"model bytes"
    assert not list(shared.rglob("*.partial"))
    assert a.local("models/m1.joblib", digest).read_bytes() == b"model bytes"
    # Another machine sees the same file through its own cache, verified.
    b = ArtifactStore(root, local_dir=tmp_path / "machine-b")
    got = b.local("models/m1.joblib", digest)
    assert sha256_file(got) == digest
    if kind == "fsspec-url":
        assert got.is_relative_to(tmp_path / "machine-b" / "artifact-cache")
    # A file swapped in the shared store is refused where it has not been cached yet.
    (shared / "models" / "m1.joblib").write_bytes(b"evil bytes!")
    c = ArtifactStore(root, local_dir=tmp_path / "machine-c")
    with pytest.raises(ArtifactMismatch, match="does not match the sha256"):
        c.local("models/m1.joblib", digest)
    # ... and so is a tampered cache entry.
    if kind == "fsspec-url":
        got.write_bytes(b"evil bytes!")
        with pytest.raises(ArtifactMismatch):
            b.local("models/m1.joblib", digest)
    a.delete("models/m1.joblib")
    with pytest.raises(ArtifactMismatch, match="missing"):
        ArtifactStore(root, local_dir=tmp_path / "machine-d").local("models/m1.joblib", digest)
    a.delete("models/m1.joblib")  # deleting twice is fine


@pytest.mark.parametrize("root", ["dir", "memory://pm-test"])
def test_keys_cannot_escape_the_store(root: str, tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "s" if root == "dir" else root, local_dir=tmp_path)
    with pytest.raises(ValueError, match="escapes"):
        store.put("../outside.bin", _staged(tmp_path, b"x"))
    with pytest.raises(ValueError, match="escapes"):
        store.local("../../etc/passwd", "0" * 64)


def test_settings_keep_urls_and_resolve_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.settings import Settings

    assert Settings(data_dir=tmp_path, artifact_root="s3://bucket/pm").artifacts == "s3://bucket/pm"
    monkeypatch.chdir(tmp_path)
    assert Settings(data_dir=tmp_path, artifact_root="rel/dir").artifacts == tmp_path / "rel" / "dir"

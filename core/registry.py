"""The model registry: versioned models per name, movable aliases, files in the artifact store.

A model file is only ever unpickled after its SHA-256 matches the one the registry recorded when
it was saved, and from the very bytes that were hashed: a file swapped or corrupted in a shared
artifact store is refused, never loaded.

A job registers its model in two steps: `stage` writes the file into the store, and the row is
inserted by `StagedModel.record` inside the transaction that marks the job succeeded
(`core.jobs.finish(..., outputs=...)`), under the same ownership check. A run that no longer owns
its job (requeued elsewhere after a long silence) registers nothing, and its file is removed.
"""

from __future__ import annotations

import importlib.metadata
import io
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import joblib
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.artifacts import ArtifactMismatch, ArtifactStore
from core.db import session_scope
from core.jobs import ID_PATTERN, JobError
from core.models import Model, ModelAlias, new_id, utcnow

log = logging.getLogger("pm.registry")

LIBRARIES = ("scikit-learn", "lightgbm", "numpy", "pandas", "sdv", "torch")


def library_versions() -> dict[str, str]:
    out = {}
    for lib in LIBRARIES:
        try:
            out[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


@dataclass
class StagedModel:
    """A model file already in the store whose registry row is not written yet.

    A `core.jobs.Output`: `record` inserts the row (allocating the next version of the name) in the
    caller's transaction; `discard` removes the file when the row was never written.
    """

    store: ArtifactStore
    id: str
    key: str
    sha256: str
    size_bytes: int
    fields: dict[str, Any] = field(default_factory=dict)
    db_url: str | None = None
    row: Model | None = None

    def record(self, session: Session) -> dict[str, Any]:
        name = self.fields["name"]
        for _ in range(5):  # two registrations of one name can race for the next version number
            version = (session.scalar(select(func.max(Model.version)).where(Model.name == name)) or 0) + 1
            row = Model(id=self.id, version=version, library_versions=library_versions(), storage_key=self.key,
                        sha256=self.sha256, size_bytes=self.size_bytes, **self.fields)
            try:
                with session.begin_nested():  # a lost race rolls back to here, not the whole finish
                    session.add(row)
            except IntegrityError:
                continue
            self.row = row
            return {"model_id": row.id, "name": row.name, "version": row.version}
        raise RuntimeError(f"could not allocate a version for model name {name!r}")

    def discard(self) -> None:
        """Remove the staged file, unless a row for it exists after all (a commit whose answer was
        lost); if the database can't be asked, leave it to the periodic orphan cleanup."""
        try:
            with session_scope(self.db_url, write=False) as session:
                if session.get(Model, self.id) is not None:
                    return
        except Exception:  # noqa: BLE001 - core/cleanup.py removes it later
            log.warning("staged model not removed (database unavailable)", extra={"model_id": self.id})
            return
        self.store.delete(self.key)


def stage(obj: Any, *, kind: str, name: str, params: dict[str, Any], metrics: dict[str, Any],
          feature_names: list[str], dataset_id: str | None, dataset_sha256: str | None, job_id: str | None,
          created_by: str | None, store: ArtifactStore, db_url: str | None = None) -> StagedModel:
    """Write the model's file into the store; its row is written by `StagedModel.record`."""
    model_id = new_id()
    key = f"models/{model_id}.joblib"
    with store.scratch() as tmp:
        staged = tmp / "model.joblib"
        joblib.dump(obj, staged, compress=3)
        digest, size = store.put(key, staged)
    return StagedModel(store=store, id=model_id, key=key, sha256=digest, size_bytes=size, db_url=db_url,
                       fields={"kind": kind, "name": name, "dataset_id": dataset_id, "dataset_sha256": dataset_sha256,
                               "params": params, "metrics": metrics, "feature_names": feature_names,
                               "job_id": job_id, "created_by": created_by})


def register(obj: Any, *, kind: str, name: str, params: dict[str, Any], metrics: dict[str, Any],
             feature_names: list[str], dataset_id: str | None, dataset_sha256: str | None, job_id: str | None,
             created_by: str | None, store: ArtifactStore, db_url: str | None = None) -> Model:
    """Stage and record in one go, outside any job (a job stages and records through `finish`)."""
    staged = stage(obj, kind=kind, name=name, params=params, metrics=metrics, feature_names=feature_names,
                   dataset_id=dataset_id, dataset_sha256=dataset_sha256, job_id=job_id, created_by=created_by,
                   store=store, db_url=db_url)
    try:
        with session_scope(db_url) as session:
            staged.record(session)
    except BaseException:
        store.delete(staged.key)
        raise
    assert staged.row is not None
    return staged.row


def resolve(session: Session, ref: str) -> Model:
    """A model by id, or by `name@alias` / `name:version`."""
    model = None
    if "@" in ref:
        name, alias = ref.rsplit("@", 1)
        link = session.get(ModelAlias, (name, alias))
        model = session.get(Model, link.model_id) if link else None
    elif ":" in ref:
        name, _, version = ref.rpartition(":")
        if version.isdigit():
            model = session.scalar(select(Model).where(Model.name == name, Model.version == int(version)))
    elif ID_PATTERN.match(ref):
        model = session.get(Model, ref)
    if model is None:
        raise JobError("not_found", f"no model {ref!r} (use its id, name@alias or name:version)", {"model": ref})
    return model


def aliases_of(session: Session, model_id: str) -> list[str]:
    return sorted(session.scalars(select(ModelAlias.alias).where(ModelAlias.model_id == model_id)))


def set_alias(model_id: str, alias: str, db_url: str | None = None) -> Model:
    with session_scope(db_url) as session:
        model = resolve(session, model_id)
        link = session.get(ModelAlias, (model.name, alias))
        if link is None:
            session.add(ModelAlias(name=model.name, alias=alias, model_id=model.id))
        else:
            link.model_id, link.updated_at = model.id, utcnow()
        return model


class ModelCache:
    """Loaded models by id, verified against the registry's sha256 before unpickling; and registry
    rows by id (a registered model's row never changes, so an id needs the database only once)."""

    def __init__(self, store: ArtifactStore, max_items: int = 8) -> None:
        self.store, self.max_items = store, max_items
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._rows: OrderedDict[str, Model] = OrderedDict()
        self._lock = threading.Lock()

    def row(self, ref: str, db_url: str | None = None) -> Model:
        """`resolve(ref)`, served from memory for plain ids (aliases can move: those always ask)."""
        with self._lock:
            if ref in self._rows:
                return self._rows[ref]
        with session_scope(db_url, write=False) as session:
            model = resolve(session, ref)
            session.expunge(model)
        if ref == model.id:
            with self._lock:
                self._rows[ref] = model
                while len(self._rows) > 1000:
                    self._rows.popitem(last=False)
        return model

    def load(self, model: Model) -> Any:
        with self._lock:
            if model.id in self._items:
                self._items.move_to_end(model.id)
                return self._items[model.id]
        try:
            # Read once, hash, and unpickle those same bytes: the file is never opened again.
            data = self.store.read_verified(model.storage_key, model.sha256)
        except ArtifactMismatch as exc:
            raise JobError("conflict", f"model {model.id}: {exc}", {"model_id": model.id}) from None
        obj = joblib.load(io.BytesIO(data))
        del data
        with self._lock:
            self._items[model.id] = obj
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return obj

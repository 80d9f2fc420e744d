"""The dataset service: store an ingested file as Parquet in the artifact store and record it.

Bad input never leaves anything behind: the file is staged in a scratch directory, and the row is
written only after the Parquet file is in place; if the row can't be written the file is removed.
A job's output dataset is staged the same way, but its row is written by `StagedDataset.record` in
the transaction that finishes the job (`core.jobs.finish(..., outputs=...)`), so a run that lost its
job writes no row and its file is removed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.artifacts import ArtifactMismatch, ArtifactStore, sha256_file
from core.db import session_scope
from core.jobs import JobError, get_by_id
from core.models import Dataset, Job, Model, new_id, utcnow
from core.settings import get_settings
from ml.datasets import ingest, reprofile
from ml.profile import profile_parquet
from ml.schema import DatasetSchema
from ml.tabular_io import TableLimits

NAME_CHARS = Dataset.__table__.c.name.type.length  # 200: the column's width
FILENAME_CHARS = Dataset.__table__.c.source_filename.type.length  # 255


def table_limits() -> TableLimits:
    s = get_settings()
    return TableLimits(max_columns=s.dataset_max_columns, max_cells=s.dataset_max_cells,
                       max_field_chars=s.max_field_chars)


def fit_name(name: str, width: int = NAME_CHARS) -> str:
    """A generated name clipped to the column's width, keeping its end (a split's `(train)`, a
    version) readable: `first part…last 40 characters`."""
    if len(name) <= width:
        return name
    tail = name[-40:]
    return name[: width - len(tail) - 1] + "\u2026" + tail

log = logging.getLogger("pm.datasets")


def create(*, upload: Path, filename: str | None, name: str, given: DatasetSchema | None, created_by: str | None,
           store: ArtifactStore, db_url: str | None = None, kind: str = "uploaded",
           lineage: dict[str, Any] | None = None, limits: TableLimits | None = None) -> Dataset:
    """Check, convert and profile an upload chunk by chunk (`ml.datasets.ingest`), then store it.
    `name` must already fit the column (the route validates users' names; generated ones are clipped)."""
    with store.scratch() as tmp:
        staged = tmp / "data.parquet"
        result = ingest(upload, staged, given, limits or table_limits())
        return _store_and_record(
            staged, store, db_url, name=fit_name(name), kind=kind, source_sha256=sha256_file(upload),
            source_filename=fit_name(filename, FILENAME_CHARS) if filename else filename,
            source_format=result.format.describe(), rows=result.rows,
            columns=result.columns, schema=result.schema.model_dump(mode="json"),
            profile=result.profile, lineage=lineage, created_by=created_by)


def register_parquet(path: Path, *, name: str, schema: DatasetSchema, kind: str, created_by: str | None,
                     store: ArtifactStore, lineage: dict[str, Any] | None = None,
                     db_url: str | None = None) -> Dataset:
    """Record a Parquet file the platform wrote itself (scored or synthetic rows). It is profiled
    one column at a time, so a file larger than memory is fine; `path` is moved into the store."""
    staged = stage_parquet(path, name=name, schema=schema, kind=kind, created_by=created_by, store=store,
                           lineage=lineage, db_url=db_url)
    return _record(staged, db_url)


def stage_parquet(path: Path, *, name: str, schema: DatasetSchema, kind: str, created_by: str | None,
                  store: ArtifactStore, lineage: dict[str, Any] | None = None,
                  db_url: str | None = None) -> StagedDataset:
    """Move a Parquet file the platform wrote itself into the store; its row is written later by
    `StagedDataset.record` (a job: in the transaction that finishes it)."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path)
    return _stage(
        path, store, db_url, name=fit_name(name), kind=kind, source_sha256=None, source_filename=None,
        source_format={"format": "parquet"}, rows=meta.metadata.num_rows,
        columns=[str(c) for c in meta.schema_arrow.names], schema=schema.model_dump(mode="json"),
        profile=profile_parquet(path, schema), lineage=lineage, created_by=created_by)


@dataclass
class StagedDataset:
    """A Parquet file already in the store whose row is not written yet (a `core.jobs.Output`)."""

    store: ArtifactStore
    row: Dataset
    db_url: str | None = None

    @property
    def id(self) -> str:
        return self.row.id

    def record(self, session: Session) -> dict[str, Any]:
        session.add(self.row)
        return {}

    def discard(self) -> None:
        """Remove the staged file unless its row exists after all; if the database can't be
        asked, leave it to the periodic orphan cleanup."""
        try:
            with session_scope(self.db_url, write=False) as session:
                if session.get(Dataset, self.row.id) is not None:
                    return
        except Exception:  # noqa: BLE001 - core/cleanup.py removes it later
            log.warning("staged dataset not removed (database unavailable)", extra={"dataset_id": self.row.id})
            return
        self.store.delete(self.row.storage_key)


def _stage(staged: Path, store: ArtifactStore, db_url: str | None, **fields: Any) -> StagedDataset:
    dataset_id = new_id()
    key = f"datasets/{dataset_id}.parquet"
    digest, size = store.put(key, staged)
    return StagedDataset(store, Dataset(id=dataset_id, storage_key=key, sha256=digest, size_bytes=size, **fields),
                         db_url)


def _record(staged: StagedDataset, db_url: str | None) -> Dataset:
    """Write a staged dataset's row on its own; if it can't be written the file is removed again."""
    try:
        with session_scope(db_url) as session:
            staged.record(session)
    except BaseException:
        staged.store.delete(staged.row.storage_key)
        raise
    return staged.row


def _store_and_record(staged: Path, store: ArtifactStore, db_url: str | None, **fields: Any) -> Dataset:
    """Move the Parquet file into the store, then write its row; if the row can't be written the
    file is removed again, so nothing is left half-made."""
    return _record(_stage(staged, store, db_url, **fields), db_url)


def get(session: Session, dataset_id: str) -> Dataset:
    return get_by_id(session, Dataset, dataset_id, "dataset")


def list_page(session: Session, *, limit: int, offset: int) -> tuple[list[Dataset], int]:
    items = list(session.scalars(select(Dataset).order_by(Dataset.created_at.desc(), Dataset.id.desc())
                                 .limit(limit).offset(offset)))
    return items, session.scalar(select(func.count()).select_from(Dataset)) or 0


def verified_path(ds: Dataset, store: ArtifactStore) -> Path:
    """The dataset's Parquet file, after checking it still has the sha256 recorded for it."""
    try:
        return store.local(ds.storage_key, ds.sha256)
    except ArtifactMismatch as exc:
        raise JobError("conflict", f"dataset {ds.id}: {exc}", {"dataset_id": ds.id}) from None


def load_frame(ds: Dataset, store: ArtifactStore) -> pd.DataFrame:
    return pd.read_parquet(verified_path(ds, store))


def update_schema(dataset_id: str, schema: DatasetSchema, store: ArtifactStore, db_url: str | None = None) -> Dataset:
    """Check the corrected schema against the stored file and re-profile it, streamed (no frame)."""
    with session_scope(db_url, write=False) as session:
        ds = get(session, dataset_id)
        path, sha = verified_path(ds, store), ds.sha256
    profile = reprofile(path, schema)
    with session_scope(db_url) as session:
        ds = get(session, dataset_id)
        if ds.sha256 != sha:
            raise JobError("conflict", f"dataset {dataset_id} changed while it was re-profiled; try again")
        ds.profile = profile
        ds.schema = schema.model_dump(mode="json")
        ds.updated_at = utcnow()
        return ds


def csv_chunks(path: Path, chunk_rows: int = 50_000) -> Iterator[bytes]:
    """A dataset's (verified) Parquet file as CSV, one record batch at a time, with formula-like
    text cells escaped (see `ml.csv_safety`)."""
    import pyarrow.parquet as pq

    from ml.csv_safety import escape_formulas

    f = pq.ParquetFile(path)
    first = True
    for b in f.iter_batches(batch_size=chunk_rows):
        part = escape_formulas(b.to_pandas())
        # CRLF (RFC 4180) also makes the writer quote a cell holding a bare CR, which "\n" would not
        yield part.to_csv(index=False, header=first, lineterminator="\r\n").encode("utf-8")
        first = False
    if first:  # no rows at all: still the header
        yield pd.DataFrame(columns=f.schema_arrow.names).to_csv(index=False, lineterminator="\r\n").encode("utf-8")


def users(session: Session, dataset_id: str) -> list[str]:
    """Ids of queued or running jobs whose parameters name this dataset."""
    rows = session.scalars(select(Job).where(Job.status.in_(("queued", "running"))))
    return [j.id for j in rows if (j.params or {}).get("dataset_id") == dataset_id]


def delete(dataset_id: str, store: ArtifactStore, db_url: str | None = None) -> None:
    with session_scope(db_url) as session:
        ds = get(session, dataset_id)
        busy = users(session, dataset_id)
        if busy:
            raise JobError("conflict", f"dataset {dataset_id} is used by {len(busy)} queued or running job(s); "
                           "cancel them or wait for them to finish", {"jobs": busy})
        trained = list(session.scalars(select(Model.id).where(Model.dataset_id == dataset_id)))
        if trained:
            raise JobError("conflict", f"dataset {dataset_id} is the training data of {len(trained)} registered "
                           "model(s); it is kept so they stay reproducible", {"models": trained})
        key = ds.storage_key
        session.delete(ds)
    store.delete(key)

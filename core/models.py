"""Persistent records: jobs, their event history, and API tokens.

Schema changes go through Alembic (core/migrations); `python -m server db upgrade` applies them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
ROLES = ("viewer", "operator", "admin")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on both backends (SQLite hands back naive values otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


JSONType = JSON().with_variant(JSONB(), "postgresql")
# SQLite needs INTEGER PRIMARY KEY (not BIGINT) to autoincrement.
EventId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(64))
    task_name: Mapped[str] = mapped_column(String(128))
    queue: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # times a worker started it (retries included)
    losses: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # workers lost while running it
    celery_task_id: Mapped[str | None] = mapped_column(String(64))
    # Each dispatch of the job carries this number; only the newest message may run it, so a
    # redelivered or duplicated message for a requeued or finished job is a no-op.
    dispatch_seq: Mapped[int] = mapped_column(Integer, default=1)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    broker_run_id: Mapped[str | None] = mapped_column(String(64))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    timeout_s: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str | None] = mapped_column(String(255))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    submitted_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index("ix_jobs_status_created", "status", "created_at"),
        Index("ix_jobs_queue_created", "queue", "created_at"),
        Index("ix_jobs_kind_created", "kind", "created_at"),
        Index("ix_jobs_created", "created_at"),
    )

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class JobEvent(Base):
    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("jobs.id", ondelete="CASCADE"))
    ts: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    type: Mapped[str] = mapped_column(String(16))  # status | progress | log
    data: Mapped[dict[str, Any]] = mapped_column(JSONType)

    __table_args__ = (Index("ix_job_events_job_id_id", "job_id", "id"),)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(128))
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16), default="uploaded")  # uploaded | synthetic | predictions
    storage_key: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))  # of the stored Parquet file
    source_sha256: Mapped[str | None] = mapped_column(String(64))  # of the file as uploaded
    source_filename: Mapped[str | None] = mapped_column(String(255))
    source_format: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    rows: Mapped[int] = mapped_column(Integer)
    columns: Mapped[list[str]] = mapped_column(JSONType)
    schema: Mapped[dict[str, Any]] = mapped_column(JSONType)
    profile: Mapped[dict[str, Any]] = mapped_column(JSONType)
    lineage: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (Index("ix_datasets_created", "created_at"),)


class Model(Base):
    """A trained model in the registry; its file lives in the artifact store under `storage_key`."""

    __tablename__ = "models"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(16))  # failure | rul | tvae
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    dataset_id: Mapped[str | None] = mapped_column(String(32))
    dataset_sha256: Mapped[str | None] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSONType)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType)
    feature_names: Mapped[list[str]] = mapped_column(JSONType)
    library_versions: Mapped[dict[str, str]] = mapped_column(JSONType)
    storage_key: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    job_id: Mapped[str | None] = mapped_column(String(32))
    created_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ux_models_name_version", "name", "version", unique=True),
                      Index("ix_models_kind_created", "kind", "created_at"))


class ModelAlias(Base):
    """`production`, `staging`…: at most one model per (name, alias)."""

    __tablename__ = "model_aliases"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_id: Mapped[str] = mapped_column(String(32), ForeignKey("models.id", ondelete="CASCADE"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Prediction(Base):
    """One scored row: its inputs, outputs and the exact model version, for explanations later."""

    __tablename__ = "predictions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    model_id: Mapped[str] = mapped_column(String(32), ForeignKey("models.id", ondelete="CASCADE"))
    model_version: Mapped[int] = mapped_column(Integer)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSONType)
    outputs: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_predictions_created", "created_at"), Index("ix_predictions_model", "model_id"))


class Explanation(Base):
    """A worded explanation of one stored prediction, with the facts it was checked against."""

    __tablename__ = "explanations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    prediction_id: Mapped[str] = mapped_column(String(32), ForeignKey("predictions.id", ondelete="CASCADE"))
    model_id: Mapped[str] = mapped_column(String(32), ForeignKey("models.id", ondelete="CASCADE"))
    model_version: Mapped[int] = mapped_column(Integer)
    provider: Mapped[str] = mapped_column(String(32))  # what was asked for: openai | template
    llm_model: Mapped[str] = mapped_column(String(200))
    prompt_version: Mapped[str] = mapped_column(String(40))
    cache_key: Mapped[str] = mapped_column(String(64))
    result: Mapped[dict[str, Any]] = mapped_column(JSONType)
    facts: Mapped[dict[str, Any]] = mapped_column(JSONType)
    job_id: Mapped[str | None] = mapped_column(String(32))
    created_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_explanations_cache", "cache_key", "created_at"),
                      Index("ix_explanations_prediction", "prediction_id", "created_at"))


class IdempotencyKey(Base):
    """A client's `Idempotency-Key` on a job-creating POST: the job it created, per token.

    The primary key makes two concurrent requests with the same key create one job: the row is
    inserted in the transaction that inserts the job, and the loser reads the winner's job.
    """

    __tablename__ = "idempotency_keys"

    token_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of method, path and canonical body
    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("jobs.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_idempotency_created", "created_at"),)

"""Request and response models of the HTTP API (they also drive the OpenAPI document at /docs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

QueueName = Literal["gan", "ml", "llm"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
Role = Literal["viewer", "operator", "admin"]


class StrictModel(BaseModel):
    """Base of every request body: JSON types as sent, unknown fields refused.

    Strict: no bool→int (`"sleep_s": false`), number→str, str→number or NaN/Infinity. An int is
    still a valid float (`1` for `1.0`), as JSON has one number type. Nested models keep their own
    config (pydantic does not pass strictness down), so they declare strict fields themselves.
    """

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


class ErrorInfo(BaseModel):
    code: str = Field(description="Machine-readable: validation_error, malformed_json, unauthorized, forbidden, "
                      "not_found, conflict, payload_too_large, database_unavailable, ...")
    message: str = Field(description="What was wrong and what to do, for a person")
    details: dict[str, Any] = Field(description="Context: the field, the limit and the setting that sets it, the "
                                    "value seen; for validation_error an `errors` list of {field, message, type}")


class ErrorBody(BaseModel):
    """The body of every error answer (any status other than 2xx)."""

    error: ErrorInfo


class PingRequest(StrictModel):
    queue: QueueName = Field(description="Queue whose worker should run the job")
    sleep_s: float = Field(default=0, ge=0, le=3600, description="Seconds the job runs; it checks for cancel every 0.5 s")


class JobError(BaseModel):
    type: str
    message: str
    code: str | None = Field(default=None, description="Stable machine-readable reason, e.g. memory_limit")
    details: dict[str, Any] | None = Field(default=None, description="For a limit: the setting, the limit and the value seen")


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    kind: str
    task_name: str
    queue: str
    status: JobStatus
    progress: float
    message: str | None
    params: dict[str, Any]
    result: dict[str, Any] | None
    metrics: dict[str, Any] | None
    error: JobError | None
    attempts: int
    cancel_requested: bool
    timeout_s: int
    celery_task_id: str | None
    worker: str | None
    submitted_by: str | None
    dispatched: bool = Field(description="False while the broker was unreachable and the job waits in the outbox")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime

    @classmethod
    def of(cls, job: Any) -> JobOut:
        data = {k: getattr(job, k) for k in cls.model_fields if k != "dispatched"}
        return cls(**data, dispatched=job.dispatched_at is not None or job.status != "queued")


class JobPage(BaseModel):
    items: list[JobOut]
    total: int
    limit: int
    offset: int


class TokenCreate(StrictModel):
    model_config = ConfigDict(str_strip_whitespace=True)
    name: str = Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f]+$")
    role: Role


class TokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str
    role: Role
    prefix: str
    created_at: datetime
    created_by: str | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="The secret; shown only in this response")


class Me(BaseModel):
    name: str
    role: Role
    token_id: str

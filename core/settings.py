"""All configuration in one place, read from environment variables and an optional `.env`.

Every subcommand of `python -m server` and every worker reads the same settings, so a worker on
another machine only needs the same `REDIS_URL`, `DATABASE_URL` and `ARTIFACT_ROOT`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

QUEUES: tuple[str, ...] = ("gan", "ml", "llm")
"""Domain queues; each kind of work runs on its own queue so it can get its own machines."""

SYSTEM_QUEUE = "system"
"""Housekeeping and diagnostic tasks (`system.*`), consumed by the `llm` worker that `up` starts."""

ALL_QUEUES: tuple[str, ...] = (*QUEUES, SYSTEM_QUEUE)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(RuntimeError):
    """A setting is missing or unsafe; the message says which and how to fix it."""


class Settings(BaseSettings):
    # hide_input_in_errors: a refused FLOWER_PASSWORD (or any secret) is never echoed in the error
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", hide_input_in_errors=True)

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Field(default=PROJECT_ROOT / "var", description="Local state: SQLite file, embedded broker, artifacts")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default sqlite:///<DATA_DIR>/platform.db")
    redis_url: str | None = Field(default=None, description="Broker and result backend; unset means the embedded broker")
    artifact_root: str | None = Field(default=None, description="Where datasets and models are stored: a directory or "
                                      "an fsspec URL (s3://bucket/prefix); default <DATA_DIR>/artifacts")

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    flower_host: str = "127.0.0.1"
    flower_port: int = Field(default=5555, ge=1, le=65535)
    flower_user: str = "admin"
    flower_password: str | None = Field(default=None, description="Flower basic-auth password; generated into DATA_DIR when unset")

    max_job_seconds: int = Field(default=6 * 3600, ge=1, description="Hard in-task deadline for any job")
    heartbeat_seconds: float = Field(default=2.0, gt=0, description="How often a running job proves it is alive")
    stale_job_seconds: float = Field(default=30.0, gt=0, description="A running job silent this long is requeued")
    max_job_attempts: int = Field(default=3, ge=1, description="Worker losses tolerated before a job fails")
    maintenance_seconds: float = Field(default=2.0, gt=0, description="Period of the reaper/outbox loop in the API")
    result_expires_seconds: int = Field(default=24 * 3600, ge=60)
    token_cache_seconds: float = Field(default=5.0, ge=0, description="How long the API trusts a verified token before re-reading it")
    worker_max_memory_mb: int = Field(default=4096, ge=64, description="A running job whose process passes this "
                                     "resident size is stopped and failed (memory_limit); prefork also replaces a "
                                     "pool child above it after its job")
    dataset_max_bytes: int = Field(default=512 * 1024**2, ge=1024, description="Largest accepted dataset upload")
    prediction_retention_days: int = Field(default=90, ge=1, description="Stored predictions older than this are purged")
    max_request_bytes: int = Field(default=16 * 1024**2, ge=1024, description="Largest accepted request body")
    log_level: str = "INFO"

    # Limits on what one request or job may cost (issue 12). Each breach is a 413/422 naming the
    # setting and the value; each is checked before the expensive step.
    max_page_offset: int = Field(default=100_000, ge=0, description="Largest `offset` of any paged list")
    max_field_chars: int = Field(default=10_000, ge=16, description="Longest string accepted anywhere: "
                                 "JSON values and keys, query and form fields, file headers and cells")
    max_predict_rows: int = Field(default=10_000, ge=1, description="Rows per online predict request")
    max_predict_keys: int = Field(default=2_000, ge=1, description="Distinct keys across the rows of one predict request")
    dataset_max_columns: int = Field(default=2_000, ge=1, description="Columns per dataset")
    dataset_max_cells: int = Field(default=100_000_000, ge=1, description="Rows x columns per dataset (from Parquet "
                                   "metadata before reading; counted while streaming a CSV)")
    dataset_max_derived: int = Field(default=50, ge=0, description="Derived-feature expressions per schema")
    tvae_max_layer: int = Field(default=2_048, ge=2, description="Widest TVAE layer (compress/decompress dims, embedding)")
    tvae_max_epochs: int = Field(default=10_000, ge=1, description="Most TVAE epochs per job")
    tvae_max_batch: int = Field(default=50_000, ge=10, description="Largest TVAE batch size")
    gan_max_sample_rows: int = Field(default=5_000_000, ge=1, description="Most rows one sampling job may write")
    db_connect_timeout_seconds: float = Field(default=5.0, gt=0, description="PostgreSQL connect timeout")
    db_statement_timeout_seconds: float = Field(default=30.0, gt=0, description="PostgreSQL statement timeout")
    scratch_max_age_hours: float = Field(default=24.0, gt=0, description="Scratch and partial files older than this "
                                         "(left by killed jobs or uploads) are removed by the maintenance loop")
    idempotency_ttl_hours: float = Field(default=24.0, gt=0, description="How long an Idempotency-Key returns the "
                                         "job it first created (per token)")
    tvae_max_memory_mb: int = Field(default=2_048, ge=16, description="Largest estimated training memory of the "
                                    "TVAE layers a request sets (weights, gradients, Adam state and batch "
                                    "activations: the width x width and batch x width products)")

    # Explanations (llm queue). The key is read by the llm worker only; it never enters job params,
    # logs, errors or responses.
    openai_base_url: str | None = Field(default=None, description="OpenAI-compatible endpoint, e.g. "
                                        "http://127.0.0.1:11434/v1 (Ollama) or https://api.openai.com/v1")
    openai_api_key: SecretStr | None = Field(default=None, description="API key for OPENAI_BASE_URL (optional for local servers)")
    llm_model: str = Field(default="gpt-4o-mini", description="Model name sent to the OpenAI-compatible server")
    llm_provider: Literal["openai", "template"] | None = Field(
        default=None, description="Default provider; unset means openai when OPENAI_BASE_URL is set, else template")
    llm_timeout_seconds: float = Field(default=60.0, gt=0, description="Per-request timeout to the LLM server")
    llm_max_attempts: int = Field(default=4, ge=1, le=10, description="Attempts on 429/5xx/timeouts before a job fails")
    llm_backoff_seconds: float = Field(default=1.0, ge=0, description="First retry wait (doubles each retry) "
                                       "when the server gives no Retry-After")
    llm_stream: bool = Field(default=True, description="Stream tokens from the LLM server into the job's events")

    @field_validator("data_dir", mode="after")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @field_validator("flower_user", "flower_password", mode="after")
    @classmethod
    def _flower_credential(cls, v: str | None, info: ValidationInfo) -> str | None:
        # Flower's --basic_auth (FLOWER_BASIC_AUTH) is a comma-separated list of user:password
        # pairs: a comma would split one credential into two, and a colon in the user ends it early.
        name = (info.field_name or "").upper()
        if v is not None and "," in v:
            raise ValueError(f"{name} must not contain a comma: Flower splits its basic-auth setting on commas "
                             "(one credential would become two); choose another character")
        if name == "FLOWER_USER" and v is not None and (":" in v or not v):
            raise ValueError("FLOWER_USER must be non-empty and must not contain ':' (it separates user and password)")
        return v

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        if self.stale_job_seconds <= self.heartbeat_seconds * 2:
            raise ValueError("STALE_JOB_SECONDS must be more than twice HEARTBEAT_SECONDS")
        if self.environment == "production":
            if not self.database_url or self.database_url.startswith("sqlite"):
                raise ValueError("ENVIRONMENT=production needs DATABASE_URL to point at PostgreSQL")
            if not self.redis_url:
                raise ValueError("ENVIRONMENT=production needs REDIS_URL (the embedded broker is one machine only)")
            if not self.flower_password or len(self.flower_password) < 12:
                raise ValueError("ENVIRONMENT=production needs FLOWER_PASSWORD of at least 12 characters")
        return self

    # Derived values -------------------------------------------------------------------------
    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'platform.db'}"

    @property
    def artifacts(self) -> str | Path:
        """The artifact store root: an absolute directory, or an fsspec URL as given."""
        if not self.artifact_root:
            return self.data_dir / "artifacts"
        if "://" in self.artifact_root:
            return self.artifact_root
        return Path(self.artifact_root).expanduser().resolve()

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def embedded_broker_file(self) -> Path:
        """Written by `up` while its embedded broker runs, so `worker`/`api` on this machine find it."""
        return self.run_dir / "embedded-redis.url"

    @property
    def visibility_timeout(self) -> int:
        # Above the longest allowed job, else Redis hands a running job's message to a second worker.
        return self.max_job_seconds + 3600

    @property
    def default_llm_provider(self) -> str:
        return self.llm_provider or ("openai" if self.openai_base_url else "template")

    def broker_url(self) -> str:
        if self.redis_url:
            return self.redis_url
        if self.embedded_broker_file.exists():
            return self.embedded_broker_file.read_text().strip()
        raise ConfigError(
            "REDIS_URL is not set and no embedded broker is running: start everything with "
            "`python -m server up` (it runs an embedded broker), or set REDIS_URL=redis://host:6379/0"
        )

    def flower_secret(self) -> str:
        """Flower's password: from settings, else generated once into DATA_DIR (never logged)."""
        if self.flower_password:
            return self.flower_password
        path = self.data_dir / "flower-password"
        if not path.exists():
            import secrets

            from core.files import write_private

            write_private(path, secrets.token_urlsafe(18))  # urlsafe: never a comma
        secret = path.read_text().strip()
        if "," in secret:
            raise ConfigError(f"{path} holds a comma, which Flower's basic auth would split into two "
                              "credentials; delete the file to generate a new password, or set FLOWER_PASSWORD")
        return secret


@lru_cache
def get_settings() -> Settings:
    return Settings()

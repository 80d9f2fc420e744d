"""Settings validation, routing rules, token hashing and log redaction: pure functions, no services."""

from __future__ import annotations

import json
import logging

import pytest
from pydantic import ValidationError

from core.auth import Principal, hash_token
from core.logs import JsonFormatter
from core.settings import ConfigError, Settings


def test_production_refuses_unsafe_defaults(tmp_path) -> None:
    with pytest.raises(ValidationError, match="DATABASE_URL"):
        Settings(environment="production", data_dir=tmp_path, redis_url="redis://x:6379/0", flower_password="x" * 20)
    with pytest.raises(ValidationError, match="REDIS_URL"):
        Settings(environment="production", data_dir=tmp_path, database_url="postgresql://u@h/db", flower_password="x" * 20)
    with pytest.raises(ValidationError, match="FLOWER_PASSWORD"):
        Settings(environment="production", data_dir=tmp_path, database_url="postgresql://u@h/db", redis_url="redis://x")
    ok = Settings(environment="production", data_dir=tmp_path, database_url="postgresql://u@h/db",
                  redis_url="redis://x:6379/0", flower_password="x" * 20)
    assert ok.visibility_timeout > ok.max_job_seconds


def test_defaults_live_under_data_dir_and_broker_is_explained(tmp_path) -> None:
    s = Settings(data_dir=tmp_path, redis_url=None)
    assert s.db_url == f"sqlite:///{tmp_path / 'platform.db'}" and s.artifacts == tmp_path / "artifacts"
    assert s.api_host == "127.0.0.1"
    with pytest.raises(ConfigError, match="python -m server up"):
        s.broker_url()
    s.run_dir.mkdir()
    s.embedded_broker_file.write_text("redis://:pw@127.0.0.1:1234/0")
    assert s.broker_url() == "redis://:pw@127.0.0.1:1234/0"
    with pytest.raises(ValidationError, match="twice"):
        Settings(data_dir=tmp_path, heartbeat_seconds=10, stale_job_seconds=15)


def test_flower_password_is_generated_once_and_private(tmp_path) -> None:
    s = Settings(data_dir=tmp_path)
    pw = s.flower_secret()
    assert len(pw) >= 20 and s.flower_secret() == pw
    assert oct((tmp_path / "flower-password").stat().st_mode & 0o777) == "0o600"


def test_route_for_prefixes() -> None:
    from core.routing import route_for

    assert [route_for(n) for n in ("gan.train", "ml.ping", "llm.explain", "system.noop")] == ["gan", "ml", "llm", "system"]
    assert route_for("reports.build") is None and route_for("ml") is None and route_for("ml.") is None


def test_roles_are_ordered_and_tokens_hashed() -> None:
    op = Principal(token_id="1", name="n", role="operator")
    assert op.has("viewer") and op.has("operator") and not op.has("admin")
    assert hash_token("pm_abc") != "pm_abc" and len(hash_token("pm_abc")) == 64


def test_json_logs_carry_fields_and_hide_secrets() -> None:
    rec = logging.LogRecord("pm.jobs", logging.INFO, __file__, 1, "job started", None, None)
    rec.job_id, rec.attempt, rec.api_key, rec.password = "abc", 2, "sk-live-123", "hunter2"
    out = json.loads(JsonFormatter().format(rec))
    assert out["msg"] == "job started" and out["job_id"] == "abc" and out["attempt"] == 2
    assert out["api_key"] == "***" and out["password"] == "***"

"""Stored predictions: each scored row is kept (inputs, outputs, model version) under an id, so it
can be looked up and explained later; rows older than PREDICTION_RETENTION_DAYS are purged."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, insert
from sqlalchemy.orm import Session

from core.db import session_scope
from core.jobs import get_by_id
from core.models import Prediction, new_id, utcnow


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    # Inputs come from users' JSON but may carry NaN/Infinity: store those as null.
    return json.loads(json.dumps(row, default=str), parse_constant=lambda _: None)


def store(model_id: str, model_version: int, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]],
          created_by: str | None, db_url: str | None = None) -> list[str]:
    ids = [new_id() for _ in inputs]
    now = utcnow()
    rows = [{"id": i, "model_id": model_id, "model_version": model_version, "inputs": _jsonable(x), "outputs": y,
             "created_by": created_by, "created_at": now} for i, x, y in zip(ids, inputs, outputs, strict=True)]
    with session_scope(db_url) as session:
        session.execute(insert(Prediction), rows)
    return ids


def get(session: Session, prediction_id: str) -> Prediction:
    return get_by_id(session, Prediction, prediction_id, "prediction")


def purge(retention_days: int, db_url: str | None = None) -> int:
    cutoff = utcnow() - timedelta(days=retention_days)
    with session_scope(db_url) as session:
        return session.execute(delete(Prediction).where(Prediction.created_at < cutoff)).rowcount or 0

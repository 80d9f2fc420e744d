"""Stored explanations: their cache key and their API shape (shared by the llm task and the API)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from core.models import Explanation


def cache_key(inputs: dict[str, Any], model_id: str, version: int, provider: str, llm_model: str,
              prompt_version: str) -> str:
    """Same readings + model version + provider (and its model) + prompt version = same key."""
    blob = json.dumps({"inputs": inputs, "model": model_id, "version": version, "provider": provider,
                       "llm_model": llm_model, "prompt": prompt_version}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def to_api(e: Explanation, cached: bool = False) -> dict[str, Any]:
    return {"id": e.id, "prediction_id": e.prediction_id, "model_id": e.model_id, "model_version": e.model_version,
            "requested_provider": e.provider, "created_at": e.created_at.isoformat(), "cached": cached, **e.result}

"""Stored explanations: their cache key and their API shape (shared by the llm task and the API)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from core.models import Explanation


def cache_key(prediction_id: str, model_id: str, version: int, provider: str, llm_model: str,
              endpoint: str | None, prompt_version: str) -> str:
    """Same prediction + model version + provider (its endpoint and model) + prompt version = same key."""
    blob = json.dumps({"prediction": prediction_id, "model": model_id, "version": version, "provider": provider,
                       "endpoint": endpoint, "llm_model": llm_model, "prompt": prompt_version}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def to_api(e: Explanation, cached: bool = False) -> dict[str, Any]:
    return {"id": e.id, "prediction_id": e.prediction_id, "model_id": e.model_id, "model_version": e.model_version,
            "requested_provider": e.provider, "created_at": e.created_at.isoformat(), "cached": cached, **e.result}

"""Fixtures shared by the integration modules: one trained AI4I failure model per backend."""

from __future__ import annotations

import pytest

from core.settings import PROJECT_ROOT
from tests.conftest import Platform
from tests.integration.test_datasets_api import upload

AI4I = PROJECT_ROOT / "data" / "samples" / "ai4i2020.csv"


@pytest.fixture(scope="session")
def trained(platform: Platform) -> dict:
    ds = upload(platform, AI4I.read_bytes(), "ai4i2020.csv", "AI4I 2020").json()
    api = platform.api()
    r = api.post("/api/v1/ml/models", json={"dataset_id": ds["id"], "task": "failure", "cv_folds": 3})
    assert r.status_code == 202, r.text
    job = api.wait(r.json()["id"], timeout=300)
    assert job["status"] == "succeeded", (job, platform.logs())
    assert job["queue"] == "ml" and job["worker"].startswith("ml-")
    return {"dataset": ds, "job": job, "model_id": job["result"]["model_id"]}

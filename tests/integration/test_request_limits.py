"""Bounded work per request (issue 12), through HTTP against the running platform: predict rows and
keys, TVAE layer sizes, epochs, batch and estimated memory, sample rows; and a sampling job that
can't reach its failure mix is still cancellable.

The API is a separate process, so a regression here would blow up that process, not this one: each
hostile request is small in memory (a 50,000-key row is ~0.7 MB of JSON), and the API's resident
memory is read right after it and must not have grown by more than 500 MB.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import pytest

from tests.conftest import Platform
from tests.helpers import wait_until

GROWTH_LIMIT = 500 * 2**20


def _rss(platform: Platform) -> int:
    assert platform.api_proc.proc is not None
    root = psutil.Process(platform.api_proc.proc.pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])


@contextmanager
def bounded_api_memory(platform: Platform) -> Iterator[None]:
    before = _rss(platform)
    yield
    grown = _rss(platform) - before
    assert grown < GROWTH_LIMIT, f"API grew {grown / 2**20:.0f} MB on one request"


def _limit(r, setting: str, limit: int | None = None) -> dict:  # noqa: ANN001
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "limit_exceeded" and setting in err["message"], err
    assert err["details"]["setting"] == setting and "value" in err["details"], err
    if limit is not None:
        assert err["details"]["limit"] == limit
    return err


def test_predict_refuses_too_many_keys_cheaply(platform: Platform, trained: dict) -> None:
    api = platform.api()
    path = f"/api/v1/models/{trained['model_id']}/predict"
    rows = [{f"k{i}": 0 for i in range(50_000)}, *([{}] * 9_999)]  # 19.5 GB before (rows x union of keys)
    with bounded_api_memory(platform):
        r = api.post(path, json={"rows": rows})
    err = _limit(r, "MAX_PREDICT_KEYS", 2_000)
    assert err["details"]["value"] > 2_000 and err["details"]["field"] == "body.rows"
    assert api.get("/api/health").status_code == 200  # still up


def test_predict_refuses_too_many_rows_before_walking_them(platform: Platform, trained: dict) -> None:
    api = platform.api()
    with bounded_api_memory(platform):
        r = api.post(f"/api/v1/models/{trained['model_id']}/predict", json={"rows": [{}] * 10_001})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert "MAX_PREDICT_ROWS" in err["message"] and "10,001" in err["message"]
    item = err["details"]["errors"][0]
    assert item["field"] == "body.rows" and item["allowed"]["setting"] == "MAX_PREDICT_ROWS"
    assert item["allowed"]["limit"] == 10_000 and item["allowed"]["value"] == 10_001


def _reading(platform: Platform, model_id: str) -> dict:
    inputs = platform.api("viewer").get(f"/api/v1/models/{model_id}/inputs").json()["inputs"]
    return {i["name"]: i["typical"] for i in inputs}


def test_predict_refuses_nested_values_and_lists_ignored_keys_briefly(platform: Platform, trained: dict) -> None:
    api = platform.api()
    path = f"/api/v1/models/{trained['model_id']}/predict"
    row = _reading(platform, trained["model_id"])
    for bad in ([1, 2], {"a": 1}):
        r = api.post(path, json={"rows": [row, {**row, "Torque [Nm]": bad}]})
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["details"]["field"] == "body.rows[1].Torque [Nm]" and err["details"]["row"] == 1, err
        assert "row 1" in err["message"] and "Torque [Nm]" in err["message"]
    r = api.post(path, json={"rows": [row, {**row, "note": {"nested": True}}]})  # also in keys the model ignores
    assert r.status_code == 422 and r.json()["error"]["details"]["key"] == "note"
    extra = {f"x{i:02d}": i for i in range(30)}
    r = api.post(path, json={"rows": [{**row, **extra}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["rows"] == 1 and len(body["predictions"]) == 1
    (warning,) = body["warnings"]
    assert "x00" in warning and "x19" in warning and "x20" not in warning and "(and 10 more)" in warning


def test_predict_missing_features_are_still_named(platform: Platform, trained: dict) -> None:
    row = _reading(platform, trained["model_id"])
    del row["Torque [Nm]"]
    r = platform.api().post(f"/api/v1/models/{trained['model_id']}/predict", json={"rows": [row, {}]})
    assert r.status_code == 422 and r.json()["error"]["details"]["missing"] == ["Torque [Nm]"], r.text


@pytest.mark.parametrize(("change", "setting", "field"), [
    ({"decompress_dims": [867513]}, "TVAE_MAX_LAYER", "body.decompress_dims[0]"),
    ({"compress_dims": [128, 4096]}, "TVAE_MAX_LAYER", "body.compress_dims[1]"),
    ({"embedding_dim": 5000}, "TVAE_MAX_LAYER", "body.embedding_dim"),
    ({"epochs": 10_001}, "TVAE_MAX_EPOCHS", "body.epochs"),
    ({"batch_size": 50_001}, "TVAE_MAX_BATCH", "body.batch_size"),
    ({"compress_dims": [2048] * 6, "decompress_dims": [2048] * 6, "batch_size": 50_000}, "TVAE_MAX_MEMORY_MB", "body"),
])
def test_tvae_limits_are_checked_at_submit(platform: Platform, trained: dict, change: dict, setting: str,
                                           field: str) -> None:
    r = platform.api().post("/api/v1/gan/models", json={"dataset_id": trained["dataset"]["id"], "epochs": 1, **change})
    err = _limit(r, setting)
    assert err["details"]["field"] == field


@pytest.mark.parametrize("dims", [[-5], [0], [1], [128, -1]])
def test_tvae_layers_must_have_units(platform: Platform, trained: dict, dims: list[int]) -> None:
    r = platform.api().post("/api/v1/gan/models", json={"dataset_id": trained["dataset"]["id"], "decompress_dims": dims})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["details"]["field"] == f"body.decompress_dims[{len(dims) - 1}]" and err["details"]["minimum"] == 2


@pytest.fixture(scope="module")
def quick_generator(platform: Platform, trained: dict) -> str:
    """A generator trained briefly: its failures are a few percent of what it generates, so
    failure_rate 1.0 makes sampling search through many batches."""
    api = platform.api()
    r = api.post("/api/v1/gan/models", json={"dataset_id": trained["dataset"]["id"], "epochs": 30, "seed": 0})
    assert r.status_code == 202, r.text
    job = api.wait(r.json()["id"], timeout=400)
    assert job["status"] == "succeeded", (job, platform.logs())
    return job["result"]["model_id"]


def test_sample_rows_limit(platform: Platform, quick_generator: str) -> None:
    r = platform.api().post(f"/api/v1/gan/models/{quick_generator}/samples", json={"rows": 5_000_001})
    _limit(r, "GAN_MAX_SAMPLE_ROWS", 5_000_000)


def test_cancel_stops_a_large_rejection_sampling_job(platform: Platform, quick_generator: str) -> None:
    api = platform.api()
    r = api.post(f"/api/v1/gan/models/{quick_generator}/samples", json={"rows": 5_000_000, "failure_rate": 1.0})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    wait_until(lambda: "generated" in (api.job(job_id).get("message") or ""), timeout=120,
               what="sampling under way", on_timeout=lambda: str(api.job(job_id)))
    assert api.post(f"/api/v1/jobs/{job_id}/cancel").status_code in (200, 202)
    job = api.wait(job_id, timeout=60)  # before: up to 200 x 5,000,000 generated rows, cancel never seen
    assert job["status"] == "cancelled", job


def test_sampling_draws_are_bounded(platform: Platform, quick_generator: str) -> None:
    """200 rows of failures only: at most max(200 x rows, 2 batches of 10,000) = 40,000 rows are
    generated; the job either has its failures within that or fails saying how many it drew."""
    api = platform.api()
    r = api.post(f"/api/v1/gan/models/{quick_generator}/samples", json={"rows": 200, "failure_rate": 1.0})
    job = api.wait(r.json()["id"], timeout=300)
    if job["status"] == "succeeded":
        assert job["result"]["rows"] == 200 and job["result"]["sampling"]["generated_rows"] <= 40_000
    else:
        assert job["status"] == "failed" and job["error"]["type"] == "SamplingBudgetExceeded", job
        assert "after 40,000 generated rows" in job["error"]["message"]

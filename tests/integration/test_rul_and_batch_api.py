"""RUL models and batch scoring end to end: upload simulated run-to-failure histories, train on the
ml worker, predict partial histories per unit, score whole datasets as jobs that write new datasets."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from ml.simulate import simulate_run_to_failure
from tests.conftest import Platform
from tests.integration.test_datasets_api import upload


@pytest.fixture(scope="module")
def rul(platform: Platform) -> dict:
    fleet, _ = simulate_run_to_failure(24, conditions=6, seed=11)
    ds = upload(platform, fleet.to_csv(index=False).encode(), "fleet.csv", "fleet").json()
    assert ds["schema"]["unit"] == "unit" and ds["schema"]["time"] == "cycle"
    api = platform.api()
    r = api.post("/api/v1/ml/models", json={"dataset_id": ds["id"], "task": "rul", "cv_folds": 3,
                                            "windows": [5, 10, 20], "rul_cap": 125})
    assert r.status_code == 202, r.text
    job = api.wait(r.json()["id"], timeout=300)
    assert job["status"] == "succeeded", (job, platform.logs())
    assert job["queue"] == "ml" and job["kind"] == "train_rul"
    return {"dataset": ds, "job": job, "model_id": job["result"]["model_id"]}


def test_rul_model_inputs_name_unit_time_settings_and_sensors(platform: Platform, rul: dict) -> None:
    spec = platform.api("viewer").get(f"/api/v1/models/{rul['model_id']}/inputs").json()
    kinds = {c["name"]: c["kind"] for c in spec["inputs"]}
    assert kinds["unit"] == "unit" and kinds["cycle"] == "time"
    assert kinds["setting_1"] == "numeric" and kinds["s2"] == "numeric" and "s1" not in kinds  # s1 is dropped
    assert spec["unit_column"] == "unit" and spec["time_column"] == "cycle" and spec["rul_cap"] == 125
    assert "threshold" not in spec


def test_rul_training_registers_a_model_with_unit_grouped_metrics(platform: Platform, rul: dict) -> None:
    m = platform.api("viewer").get(f"/api/v1/models/{rul['model_id']}").json()
    assert m["kind"] == "rul" and m["name"] == "fleet-rul" and m["params"]["windows"] == [5, 10, 20]
    met = m["metrics"]
    assert {"rmse", "mae", "nasa_score", "protocol", "curves", "units"} <= set(met)
    assert "group k-fold by 'unit'" in met["protocol"] and met["units"] == 24
    assert 0 < met["mae"] < met["rmse"] < 35
    assert met["operating_conditions"] == 6 and "s1" in met["dropped_sensors"]
    assert "s2 slope (last 20)" in m["feature_names"]
    listed = platform.api("viewer").get("/api/v1/models", params={"kind": "rul"}).json()
    assert rul["model_id"] in [x["id"] for x in listed["items"]]


def test_rul_predict_returns_one_item_per_unit_from_its_history(platform: Platform, rul: dict) -> None:
    test, truth = simulate_run_to_failure(3, conditions=6, seed=12, truncate=True, unit_offset=900)
    rows = test.sample(frac=1.0, random_state=0).to_dict("records")  # order in the request does not matter
    r = platform.api().post(f"/api/v1/models/{rul['model_id']}/predict", json={"rows": rows})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model"]["kind"] == "rul" and out["rows"] == len(rows)
    got = {p["unit"]: p for p in out["predictions"]}
    assert set(got) == {901, 902, 903}
    for u, item in got.items():
        assert 0 <= item["rul"] <= 125 and item["rows"] == int((test["unit"] == u).sum())
        assert item["last_time"] == test.loc[test["unit"] == u, "cycle"].max()
    stored = platform.api("viewer").get(f"/api/v1/predictions/{out['predictions'][0]['prediction_id']}").json()
    assert stored["outputs"]["rul"] == out["predictions"][0]["rul"] and len(stored["inputs"]["rows"]) > 0


def test_bad_rul_requests(platform: Platform, rul: dict) -> None:
    api = platform.api()
    ds_id = rul["dataset"]["id"]
    r = api.post("/api/v1/ml/models", json={"dataset_id": ds_id, "task": "rul", "algorithm": "logistic_regression"})
    assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "body.algorithm"
    r = api.post("/api/v1/ml/models", json={"dataset_id": ds_id, "task": "rul", "windows": [1]})
    assert r.status_code == 422 and r.json()["error"]["details"]["errors"][0]["field"] == "body.windows"
    r = api.post("/api/v1/ml/models", json={"dataset_id": ds_id, "task": "rul", "settings": ["altitude"]})
    assert r.status_code == 422 and r.json()["error"]["details"]["unknown"] == ["altitude"]
    pred = f"/api/v1/models/{rul['model_id']}/predict"
    row = simulate_run_to_failure(1, seed=3)[0].iloc[0].to_dict()
    r = api.post(pred, json={"rows": [{k: v for k, v in row.items() if k != "unit"}]})
    assert r.status_code == 422 and "unit" in r.json()["error"]["details"]["missing"]
    r = api.post(pred, json={"rows": [row | {"cycle": "yesterday-ish"}]})
    assert r.status_code == 422 and "cycle" in r.json()["error"]["message"]


def _scored(platform: Platform, job: dict) -> pd.DataFrame:
    r = platform.api("viewer").get(f"/api/v1/datasets/{job['result']['dataset_id']}/download", params={"format": "csv"})
    assert r.status_code == 200
    return pd.read_csv(io.BytesIO(r.content))


def test_batch_predictions_for_a_failure_model(platform: Platform, trained: dict) -> None:
    api = platform.api()
    r = api.post(f"/api/v1/models/{trained['model_id']}/batch-predictions",
                 json={"dataset_id": trained["dataset"]["id"], "chunk_rows": 3000})
    assert r.status_code == 202, r.text
    job = api.wait(r.json()["id"], timeout=120)
    assert job["status"] == "succeeded", (job, platform.logs())
    assert job["queue"] == "ml" and job["kind"] == "batch_predict"
    res = job["result"]
    assert res["rows"] == 10_000 and res["chunks"] == 4 and res["peak_rss_mb"] > 0
    progress = [e for e in api.events(job["id"]) if e["event"] == "progress"]
    assert any("of 10,000 rows" in (e["data"]["message"] or "") for e in progress)  # per chunk, throttled to 4/s
    ds = platform.api("viewer").get(f"/api/v1/datasets/{res['dataset_id']}").json()
    assert ds["kind"] == "predictions" and ds["rows"] == 10_000
    assert ds["lineage"]["model_id"] == trained["model_id"] and ds["lineage"]["source_dataset_id"] == trained["dataset"]["id"]
    assert "predicted_failure_probability" in ds["schema"]["ignore"]  # never a feature for a later model
    assert ds["profile"]["columns"]["predicted_failure_probability"]["kind"] == "numeric"
    df = _scored(platform, job)
    assert df["predicted_failure_probability"].between(0, 1).all() and "predicted_TWF_probability" in df.columns
    # Failures score higher than healthy rows on average.
    assert df.groupby("Machine failure")["predicted_failure_probability"].mean().diff().iloc[-1] > 0.3
    # The online endpoint gives the same score for the same row.
    row = df.drop(columns=[c for c in df.columns if c.startswith("predicted_")]).iloc[[7]].to_dict("records")
    online = api.post(f"/api/v1/models/{trained['model_id']}/predict", json={"rows": row}).json()
    assert online["predictions"][0]["failure_probability"] == pytest.approx(df["predicted_failure_probability"][7])


def test_batch_predictions_for_a_rul_model_and_bad_requests(platform: Platform, rul: dict,
                                                            trained: dict) -> None:
    api = platform.api()
    r = api.post(f"/api/v1/models/{rul['model_id']}/batch-predictions",
                 json={"dataset_id": rul["dataset"]["id"], "chunk_rows": 1000})
    job = api.wait(r.json()["id"], timeout=120)
    assert job["status"] == "succeeded", (job, platform.logs())
    df = _scored(platform, job)
    assert df["predicted_rul"].between(0, 125).all() and len(df) == rul["dataset"]["rows"]
    # Wrong data for the model: AI4I has none of the fleet's sensors.
    r = api.post(f"/api/v1/models/{rul['model_id']}/batch-predictions", json={"dataset_id": trained["dataset"]["id"]})
    assert r.status_code == 422 and "unit" in r.json()["error"]["details"]["missing"]
    r = api.post(f"/api/v1/models/{rul['model_id']}/batch-predictions", json={"dataset_id": "0" * 32})
    assert r.status_code == 404
    r = api.post(f"/api/v1/models/{rul['model_id']}/batch-predictions",
                 json={"dataset_id": rul["dataset"]["id"], "chunk_rows": 5})
    assert r.status_code == 422 and r.json()["error"]["details"]["errors"][0]["field"] == "body.chunk_rows"
    assert platform.api("viewer").post(f"/api/v1/models/{rul['model_id']}/batch-predictions",
                                       json={"dataset_id": rul["dataset"]["id"]}).status_code == 403

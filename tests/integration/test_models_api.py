"""Failure models end to end: upload AI4I, train on the ml worker, read metrics, alias, predict."""

from __future__ import annotations

import pandas as pd

from core.settings import PROJECT_ROOT
from tests.conftest import Platform

AI4I = PROJECT_ROOT / "data" / "samples" / "ai4i2020.csv"


def test_training_job_registers_a_model_with_honest_metrics(platform: Platform, trained: dict) -> None:
    m = platform.api("viewer").get(f"/api/v1/models/{trained['model_id']}").json()
    assert m["kind"] == "failure" and m["name"] == "AI4I-2020-failure" and m["version"] >= 1
    assert m["dataset_id"] == trained["dataset"]["id"] and m["dataset_sha256"] == trained["dataset"]["sha256"]
    met = m["metrics"]
    for key in ("f1", "precision", "recall", "pr_auc", "roc_auc", "balanced_accuracy", "brier", "confusion_matrix",
                "threshold", "protocol", "per_mode"):
        assert key in met
    assert 0.6 < met["f1"] < 0.99 and "out-of-fold" in met["protocol"]
    assert set(met["per_mode"]) == {"TWF", "HDF", "PWF", "OSF", "RNF"}
    assert "Rotational speed [rpm] × Torque [Nm]" in m["feature_names"]
    assert not {"TWF", "Machine failure", "UDI"} & set(m["feature_names"])
    assert m["library_versions"]["lightgbm"] and len(m["sha256"]) == 64
    progress = [e for e in platform.api().events(trained["job"]["id"]) if e["event"] == "progress"]
    assert any("fold 3/3" in (e["data"]["message"] or "") for e in progress)


def test_alias_and_predict(platform: Platform, trained: dict) -> None:
    api = platform.api()
    r = api.post(f"/api/v1/models/{trained['model_id']}/aliases", json={"alias": "production"})
    assert r.status_code == 200 and "production" in r.json()["aliases"]
    assert api.get("/api/v1/models/AI4I-2020-failure@production").json()["id"] == trained["model_id"]
    df = pd.read_csv(AI4I)
    rows = [df[df["Machine failure"] == 1].iloc[0].to_dict(), df[df["Machine failure"] == 0].iloc[0].to_dict()]
    r = api.post("/api/v1/models/AI4I-2020-failure@production/predict", json={"rows": rows})
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out["predictions"]) == 2 and out["model"]["id"] == trained["model_id"]
    assert set(out["predictions"][0]["mode_probabilities"]) == {"TWF", "HDF", "PWF", "OSF", "RNF"}
    assert out["predictions"][0]["failure_probability"] > out["predictions"][1]["failure_probability"]
    assert "Machine failure" in out["warnings"][0]  # whole rows from the file are fine; extras are listed
    stored = platform.api("viewer").get(f"/api/v1/predictions/{out['predictions'][0]['prediction_id']}").json()
    assert stored["model_id"] == trained["model_id"] and stored["inputs"]["Torque [Nm]"] == rows[0]["Torque [Nm]"]
    assert stored["outputs"]["failure_probability"] == out["predictions"][0]["failure_probability"]
    assert platform.api("viewer").get("/api/v1/predictions/" + "0" * 32).status_code == 404


def test_bad_training_and_prediction_requests(platform: Platform, trained: dict) -> None:
    api = platform.api()
    ds_id = trained["dataset"]["id"]
    r = api.post("/api/v1/ml/models", json={"dataset_id": ds_id, "task": "survival"})
    assert r.status_code == 422 and r.json()["error"]["details"]["errors"][0]["field"] == "body.task"
    r = api.post("/api/v1/ml/models", json={"dataset_id": ds_id, "task": "rul"})  # AI4I has no unit histories
    assert r.status_code == 422 and r.json()["error"]["details"]["role"] == "unit", r.text
    r = api.post("/api/v1/ml/models", json={"dataset_id": ds_id, "task": "failure", "cv_folds": 1})
    assert r.status_code == 422
    r = api.post("/api/v1/ml/models", json={"dataset_id": "0" * 32, "task": "failure"})
    assert r.status_code == 404
    assert platform.api("viewer").post("/api/v1/ml/models", json={"dataset_id": ds_id, "task": "failure"}).status_code == 403
    pred = f"/api/v1/models/{trained['model_id']}/predict"
    r = api.post(pred, json={"rows": [{"Type": "L", "Torque [Nm]": 40}]})
    assert r.status_code == 422 and "Air temperature [K]" in r.json()["error"]["details"]["missing"]
    row = pd.read_csv(AI4I).iloc[0].to_dict() | {"Torque [Nm]": "forty"}
    r = api.post(pred, json={"rows": [row]})
    assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "body.rows[0].Torque [Nm]"
    assert api.post(pred, json={"rows": []}).status_code == 422
    assert api.get("/api/v1/models/nope@production").status_code == 404


def test_training_data_of_a_model_cannot_be_deleted(platform: Platform, trained: dict) -> None:
    r = platform.api().client.delete(f"/api/v1/datasets/{trained['dataset']['id']}")
    assert r.status_code == 409 and trained["model_id"] in r.json()["error"]["details"]["models"]

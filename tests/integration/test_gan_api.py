"""TVAE generators end to end: train on the gan worker with per-epoch progress, read the report,
sample synthetic datasets with lineage, cancel a training run, refuse bad requests."""

from __future__ import annotations

import pytest

from tests.conftest import Platform
from tests.helpers import wait_until


@pytest.fixture(scope="session")
def generator(platform: Platform, trained: dict) -> dict:
    api = platform.api()
    r = api.post("/api/v1/gan/models", json={"dataset_id": trained["dataset"]["id"], "epochs": 30, "seed": 0})
    assert r.status_code == 202, r.text
    job = api.wait(r.json()["id"], timeout=400)
    assert job["status"] == "succeeded", (job, platform.logs())
    assert job["queue"] == "gan" and job["kind"] == "train_tvae"
    return {"job": job, "model_id": job["result"]["model_id"], "dataset": trained["dataset"]}


def test_training_reports_each_epoch_and_registers_a_generator_with_its_report(platform: Platform,
                                                                              generator: dict) -> None:
    viewer = platform.api("viewer")
    m = viewer.get(f"/api/v1/models/{generator['model_id']}").json()
    assert m["kind"] == "tvae" and m["dataset_sha256"] == generator["dataset"]["sha256"]
    assert m["params"]["epochs"] == 30 and m["params"]["columns_left_out"] == ["UDI", "Product ID"]
    met = m["metrics"]
    assert {"quality", "failure_rate", "tstr", "privacy", "loss_curve"} <= set(met) and "histograms" not in met
    assert len(met["loss_curve"]) == 30 and 0.5 < met["quality"]["overall"] <= 1
    assert met["failure_rate"]["synthetic"]["overall"] == pytest.approx(met["failure_rate"]["real"]["overall"], abs=1e-3)
    assert met["tstr"]["f1_real"] > 0 and "ratio" in met["tstr"] and met["privacy"]["exact_copies"] >= 0
    epochs = [e["data"]["metrics"]["epoch"] for e in platform.api().events(generator["job"]["id"])
              if e["event"] == "progress" and (e["data"].get("metrics") or {}).get("epoch")]
    assert epochs and epochs == sorted(epochs) and epochs[-1] == 30  # real epochs, throttled to ~4 events/s
    rep = viewer.get(f"/api/v1/models/{generator['model_id']}/report").json()
    h = rep["histograms"]["Air temperature [K]"]
    assert h["kind"] == "numeric" and len(h["edges"]) == len(h["real"]) + 1 == len(h["synthetic"]) + 1


def test_sampling_writes_synthetic_datasets_with_lineage(platform: Platform, generator: dict) -> None:
    api = platform.api()
    r = api.post(f"/api/v1/gan/models/{generator['model_id']}/samples",
                 json={"rows": 2000, "failure_rate": 0.2, "seed": 1, "split": {"train": 0.7, "val": 0.15, "test": 0.15}})
    assert r.status_code == 202, r.text
    job = api.wait(r.json()["id"], timeout=120)
    assert job["status"] == "succeeded", (job, platform.logs())
    ids = job["result"]["dataset_ids"]
    assert set(ids) == {"train", "val", "test"}
    sizes = {}
    for name, ds_id in ids.items():
        ds = platform.api("viewer").get(f"/api/v1/datasets/{ds_id}").json()
        assert ds["kind"] == "synthetic" and ds["lineage"]["generator_model_id"] == generator["model_id"]
        assert ds["lineage"]["source_dataset_id"] == generator["dataset"]["id"] and ds["lineage"]["split"] == name
        assert ds["schema"]["target"] == "Machine failure" and "UDI" not in ds["columns"]
        sizes[name] = ds["rows"]
        if name == "train":
            train_positives = ds["profile"]["class_balance"]["positives"]
    assert sizes == {"train": 1400, "val": 300, "test": 300}
    assert 200 < train_positives < 360  # 400 failures over the three parts, shuffled
    r = api.post(f"/api/v1/gan/models/{generator['model_id']}/samples", json={"rows": 500, "seed": 2})
    one = api.wait(r.json()["id"], timeout=120)
    assert one["status"] == "succeeded" and one["result"]["rows"] == 500 and "dataset_id" in one["result"]


def test_bad_gan_requests(platform: Platform, generator: dict, trained: dict) -> None:
    api = platform.api()
    path = f"/api/v1/gan/models/{generator['model_id']}/samples"
    for body, field in (({"rows": 0}, "body.rows"), ({"rows": 10, "failure_rate": 1.5}, "body.failure_rate"),
                        ({"rows": 10, "split": {"a": 0.5, "b": 0.4}}, "body")):
        r = api.post(path, json=body)
        assert r.status_code == 422 and r.json()["error"]["details"]["errors"][0]["field"] == field, r.text
    r = api.post(path, json={"rows": 10, "mode_counts": {"XYZ": 2}})
    assert r.status_code == 422 and r.json()["error"]["details"]["unknown"] == ["XYZ"]
    r = api.post(f"/api/v1/gan/models/{trained['model_id']}/samples", json={"rows": 10})
    assert r.status_code == 422 and "not a TVAE generator" in r.json()["error"]["message"]
    assert api.post("/api/v1/gan/models", json={"dataset_id": "0" * 32}).status_code == 404
    assert platform.api("viewer").post(path, json={"rows": 10}).status_code == 403


def test_cancel_stops_training_within_an_epoch(platform: Platform, trained: dict) -> None:
    api = platform.api()
    r = api.post("/api/v1/gan/models", json={"dataset_id": trained["dataset"]["id"], "epochs": 2000})
    job_id = r.json()["id"]
    wait_until(lambda: (api.get(f"/api/v1/jobs/{job_id}").json().get("progress") or 0) > 0.02, timeout=120,
               what="training under way")
    assert api.post(f"/api/v1/jobs/{job_id}/cancel").status_code in (200, 202)
    job = api.wait(job_id, timeout=30)
    assert job["status"] == "cancelled", job

"""Datasets over HTTP: upload, inferred schema, profile, correction, download, delete, and bad input
that leaves nothing behind."""

from __future__ import annotations

import csv
import hashlib
import io
import json

import pandas as pd
import pytest

from core import jobs
from core.settings import PROJECT_ROOT
from tests.conftest import Platform

AI4I = PROJECT_ROOT / "data" / "samples" / "ai4i2020.csv"


def upload(platform: Platform, content: bytes, filename: str = "data.csv", name: str = "plant A",
           schema: dict | str | None = None, role: str = "operator"):
    data = {"name": name}
    if schema is not None:
        data["schema"] = schema if isinstance(schema, str) else json.dumps(schema)
    return platform.api(role).post("/api/v1/datasets", files={"file": (filename, content)}, data=data)


def stored_files(platform: Platform) -> set[str]:
    root = platform.dir / "artifacts"
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def total(platform: Platform) -> int:
    return platform.api("viewer").get("/api/v1/datasets", params={"limit": 1}).json()["total"]


def test_upload_ai4i_infers_schema_profiles_and_round_trips(platform: Platform) -> None:
    r = upload(platform, AI4I.read_bytes(), "ai4i2020.csv", "AI4I 2020")
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["rows"] == 10000 and ds["columns"][3] == "Air temperature [K]" and ds["kind"] == "uploaded"
    s = ds["schema"]
    assert s["target"] == "Machine failure" and s["failure_modes"] == ["TWF", "HDF", "PWF", "OSF", "RNF"]
    assert set(s["ignore"]) == {"UDI", "Product ID"} and s["columns"]["Torque [Nm]"]["unit"] == "Nm"
    assert ds["profile"]["class_balance"]["positives"] == 339 and ds["profile"]["failure_modes"]["RNF"] == 19
    assert ds["source_format"] == {"kind": "csv", "encoding": "utf-8", "delimiter": "comma", "decimal": "."}
    viewer = platform.api("viewer")
    assert viewer.get(f"/api/v1/datasets/{ds['id']}").json()["profile"] == ds["profile"]
    assert ds["id"] in {d["id"] for d in viewer.get("/api/v1/datasets").json()["items"]}

    pq = viewer.get(f"/api/v1/datasets/{ds['id']}/download", params={"format": "parquet"})
    assert pq.status_code == 200 and hashlib.sha256(pq.content).hexdigest() == ds["sha256"]
    back = pd.read_csv(io.BytesIO(viewer.get(f"/api/v1/datasets/{ds['id']}/download").content))
    pd.testing.assert_frame_equal(back, pd.read_csv(AI4I))


def test_messy_european_export_is_accepted(platform: Platform) -> None:
    with open(AI4I, newline="") as f:
        rows = list(csv.reader(f))
    text = "\r\n".join(";".join(c.replace(".", ",") for c in row) for row in rows[:500]) + "\r\n"
    r = upload(platform, b"\xef\xbb\xbf" + text.encode(), "export.csv")
    assert r.status_code == 201, r.text
    assert r.json()["source_format"]["decimal"] == "," and r.json()["schema"]["target"] == "Machine failure"


@pytest.mark.parametrize("content, code", [
    (b"", "empty_file"), (b"a;b;c\r\n", "no_rows"), (b"a,b,a\n1,2,3\n", "duplicate_columns"),
    (bytes(range(256)) * 20, "undecodable"),
])
def test_broken_files_get_precise_errors_and_leave_nothing(platform: Platform, content: bytes, code: str) -> None:
    before_rows, before_files = total(platform), stored_files(platform)
    r = upload(platform, content)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == code and r.json()["error"]["details"]["field"] == "file"
    assert total(platform) == before_rows and stored_files(platform) == before_files


def test_bad_schemas_name_the_field(platform: Platform) -> None:
    before = total(platform)
    content = AI4I.read_bytes()
    r = upload(platform, content, schema={"target": "Failure"})
    assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "schema.target"
    assert "not in the file" in r.json()["error"]["message"]
    r = upload(platform, content, schema={"target": "Type"})
    assert r.status_code == 422 and "binary" in r.json()["error"]["message"]
    r = upload(platform, content, schema="{not json")
    assert r.status_code == 422 and r.json()["error"]["details"]["errors"][0]["field"] == "form.schema"
    r = upload(platform, content, schema={"colums": {}})
    assert r.status_code == 422 and r.json()["error"]["details"]["errors"][0]["field"] == "form.schema.colums"
    assert total(platform) == before


def test_upload_over_the_limit_is_413_and_leaves_nothing(platform: Platform) -> None:
    before_rows, before_files = total(platform), stored_files(platform)
    big = AI4I.read_bytes() * 5  # 2.5 MB > DATASET_MAX_BYTES (2 MiB in the test platform)
    r = upload(platform, big)
    assert r.status_code == 413 and r.json()["error"]["details"]["setting"] == "DATASET_MAX_BYTES"
    assert total(platform) == before_rows and stored_files(platform) == before_files


def test_schema_correction_reprofiles(platform: Platform) -> None:
    ds = upload(platform, AI4I.read_bytes()).json()
    schema = {**ds["schema"], "target": "HDF", "failure_modes": [], "ignore": ["UDI", "Product ID", "Machine failure",
                                                                                 "TWF", "PWF", "OSF", "RNF"]}
    r = platform.api().client.patch(f"/api/v1/datasets/{ds['id']}", json={"schema": schema})
    assert r.status_code == 200, r.text
    assert r.json()["schema"]["target"] == "HDF" and r.json()["profile"]["class_balance"]["positives"] == 115
    r = platform.api().client.patch(f"/api/v1/datasets/{ds['id']}", json={"schema": {"target": "Nope"}})
    assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "schema.target"
    assert platform.api("viewer").client.patch(f"/api/v1/datasets/{ds['id']}", json={"schema": schema}).status_code == 403


def test_delete_is_refused_while_a_job_uses_the_dataset(platform: Platform) -> None:
    ds = upload(platform, AI4I.read_bytes()).json()
    job = jobs.submit(task_name="ml.ping", queue="ml", kind="train", params={"dataset_id": ds["id"]},
                      submitted_by="test", dispatcher=None, db_url=platform.db_url)  # waits, never sent
    api = platform.api()
    r = api.client.delete(f"/api/v1/datasets/{ds['id']}")
    assert r.status_code == 409 and r.json()["error"]["details"]["jobs"] == [job.id]
    api.post(f"/api/v1/jobs/{job.id}/cancel")
    assert api.client.delete(f"/api/v1/datasets/{ds['id']}").status_code == 204
    assert api.get(f"/api/v1/datasets/{ds['id']}").status_code == 404
    assert f"datasets/{ds['id']}.parquet" not in stored_files(platform)


def test_roles(platform: Platform) -> None:
    assert upload(platform, AI4I.read_bytes(), role="viewer").status_code == 403
    from tests.helpers import Api

    r = Api(platform.base_url, None).post("/api/v1/datasets", files={"file": ("a.csv", b"a\n1\n")}, data={"name": "x"})
    assert r.status_code == 401

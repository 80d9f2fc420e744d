"""Dataset uploads against hostile and oversized input, over HTTP: each limit is a 413 or 422 that
names its setting and the value seen, checked before the expensive step; control characters are
refused where they would reach PostgreSQL; generated names fit their column; CSV downloads escape
formula cells.

Every hostile input here is small in memory (a 40,000-column header is ~300 KB, the Parquet files of
zeros are ~1 MB). The zeros files are sent to a platform of their own with DATASET_MAX_CELLS
lowered to 2,000,000, so that even a regression that read everything at once would cost the API a
few hundred MB, not the GBs the default limit allows.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.settings import PROJECT_ROOT
from tests.conftest import Platform, backend_of
from tests.integration.test_datasets_api import stored_files, total, upload

AI4I = PROJECT_ROOT / "data" / "samples" / "ai4i2020.csv"
SMALL = b"x,fail\n1,0\n2,1\n3,0\n"


def parquet_bytes(table: pa.Table, **kw: object) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, **kw)
    return buf.getvalue()


def zeros(rows: int) -> bytes:
    """`rows` float zeros in one zstd row group: ~4 KB per million rows on disk."""
    return parquet_bytes(pa.table({"x": pa.array(np.zeros(rows))}), compression="zstd", row_group_size=rows)


def refused(r, status: int, setting: str | None = None, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    if setting:
        assert err["details"]["setting"] == setting and setting in err["message"], err
        assert err["details"]["limit"] < err["details"]["value"], err
    if code:
        assert err["code"] == code, err
    return err


@pytest.fixture(scope="module")
def limited(db_url: str, redis_base: tuple[str, list[int]]) -> Iterator[Platform]:
    """An API alone (no workers) with low dataset limits."""
    base, dbs = redis_base
    env = {"DATASET_MAX_CELLS": "2000000", "DATASET_MAX_COLUMNS": "50", "MAX_FIELD_CHARS": "100",
           "DATASET_MAX_DERIVED": "3", "DATASET_MAX_BYTES": str(8 * 1024 * 1024)}
    p = Platform(db_url, f"{base}/{dbs[2] if backend_of(db_url) == 'sqlite' else dbs[3]}",
                 f"{backend_of(db_url)}-limits", queues=(), extra_env=env).start()
    yield p
    p.stop()


# ----------------------------------------------------------------------------------- size-like: 413
def test_a_40000_column_header_is_413_naming_dataset_max_columns(platform: Platform) -> None:
    before_rows, before_files = total(platform), stored_files(platform)
    header = ",".join(f"c{i}" for i in range(40_000))
    err = refused(upload(platform, (header + "\n" + ",".join(["1"] * 40_000) + "\n").encode()), 413,
                  "DATASET_MAX_COLUMNS", "too_many_columns")
    assert err["details"]["limit"] == 2000 and err["details"]["field"] == "file"
    assert total(platform) == before_rows and stored_files(platform) == before_files


def test_parquet_cells_are_checked_from_metadata_before_reading(limited: Platform) -> None:
    err = refused(upload(limited, zeros(3_000_000), "zeros.parquet"), 413, "DATASET_MAX_CELLS", "too_many_cells")
    assert err["details"]["value"] == 3_000_000 and err["details"]["rows"] == 3_000_000


def test_a_large_legal_parquet_of_zeros_is_accepted_in_batches(limited: Platform) -> None:
    # one row group of 1.5 M rows: read in bounded record batches, not as one table
    r = upload(limited, zeros(1_500_000), "zeros.parquet", name="zeros")
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["rows"] == 1_500_000 and ds["columns"] == ["x"]
    x = ds["profile"]["columns"]["x"]
    assert x["min"] == x["max"] == 0.0 and x["histogram"]["counts"] == [1_500_000] and x["distinct"] == 1
    assert ds["profile"]["sample"]["rows"] < 1_500_000  # percentiles from the bounded sample, said so
    back = limited.api("viewer").get(f"/api/v1/datasets/{ds['id']}/download", params={"format": "parquet"})
    f = pq.ParquetFile(io.BytesIO(back.content))
    assert f.metadata.num_rows == 1_500_000 and f.metadata.num_row_groups > 1  # stored in bounded row groups


def test_csv_cells_are_counted_while_streaming(limited: Platform) -> None:
    row = ",".join(["0"] * 20) + "\n"
    content = (",".join(f"c{i}" for i in range(20)) + "\n" + row * 110_000).encode()  # 2.2 M cells, 4.4 MB
    err = refused(upload(limited, content), 413, "DATASET_MAX_CELLS", "too_many_cells")
    assert err["details"]["columns"] == 20


def test_parquet_columns_over_the_limit_are_413(limited: Platform) -> None:
    table = pa.table({f"c{i}": pa.array([0, 1]) for i in range(60)})
    err = refused(upload(limited, parquet_bytes(table), "wide.parquet"), 413, "DATASET_MAX_COLUMNS")
    assert err["details"]["value"] == 60


def test_derived_features_over_the_limit_at_upload_and_on_patch(limited: Platform) -> None:
    derived = {f"d{i}": "`x` * 2" for i in range(4)}
    err = refused(upload(limited, SMALL, schema={"target": "fail", "derived": derived}), 413, "DATASET_MAX_DERIVED")
    assert err["details"]["value"] == 4 and err["details"]["field"] == "form.schema.derived"
    ds = upload(limited, SMALL, schema={"target": "fail"}).json()
    r = limited.api().client.patch(f"/api/v1/datasets/{ds['id']}",
                                   json={"schema": {**ds["schema"], "derived": derived}})
    assert refused(r, 413, "DATASET_MAX_DERIVED")["details"]["field"] == "schema.derived"
    three = dict(list(derived.items())[:3])
    r = limited.api().client.patch(f"/api/v1/datasets/{ds['id']}", json={"schema": {**ds["schema"], "derived": three}})
    assert r.status_code == 200, r.text


# ----------------------------------------------------------------------------------- field length: 422
def test_a_200000_character_field_is_422_naming_max_field_chars(platform: Platform) -> None:
    err = refused(upload(platform, b"a,b\n1," + b"x" * 200_000 + b"\n2,y\n"), 422, "MAX_FIELD_CHARS", "field_too_long")
    assert err["details"]["value"] == 200_000
    err = refused(upload(platform, b"a," + b"x" * 200_000 + b"\n1,2\n"), 422, "MAX_FIELD_CHARS")


def test_long_fields_past_the_sniffed_block_and_in_parquet(limited: Platform) -> None:
    content = b"a,b\n" + b"1,y\n" * 70_000 + b'2,"' + b"z" * 101 + b'"\n'  # past the first 256 KB
    err = refused(upload(limited, content), 422, "MAX_FIELD_CHARS")
    assert err["details"]["column"] == "b" and err["details"]["row"] == 70_001
    table = pa.table({"a": pa.array([1, 2]), "b": pa.array(["ok", "w" * 101])})
    err = refused(upload(limited, parquet_bytes(table), "t.parquet"), 422, "MAX_FIELD_CHARS")
    assert err["details"]["column"] == "b"
    table = pa.table({"n" * 101: pa.array([1, 2]), "b": pa.array([0, 1])})
    refused(upload(limited, parquet_bytes(table), "t.parquet"), 422, "MAX_FIELD_CHARS")
    refused(upload(limited, SMALL, schema={"columns": {"x": {"description": "d" * 101}}}), 422, "MAX_FIELD_CHARS")


# ----------------------------------------------------------------------------------- control characters
@pytest.mark.parametrize("content, code", [
    (b"a,b\x00c\n1,2\n", "control_character"),   # NUL in a header reached PostgreSQL: 500 before
    (b"a,b\x07\n1,2\n", "control_character"),
    (b"a,b\n1,x\x00y\n", "nul_character"),        # the C parser would silently cut the cell at the NUL
])
def test_control_characters_in_csv_headers_and_nul_in_cells(platform: Platform, content: bytes, code: str) -> None:
    before = total(platform)
    err = refused(upload(platform, content), 422, code=code)
    assert err["details"]["field"] == "file"
    assert total(platform) == before


def test_control_characters_in_parquet_names_and_nul_in_parquet_cells(platform: Platform) -> None:
    table = pa.table({"a\x00b": pa.array([1, 2]), "c": pa.array([0, 1])})
    refused(upload(platform, parquet_bytes(table), "t.parquet"), 422, code="control_character")
    table = pa.table({"a": pa.array([1, 2]), "c": pa.array(["ok", "x\x00y"])})
    assert refused(upload(platform, parquet_bytes(table), "t.parquet"), 422, code="nul_character")["details"]["column"] == "c"


def test_other_control_characters_in_cells_are_stored_as_they_are(platform: Platform) -> None:
    content = b"x,note,fail\n1,a\x07b,0\n2,tab\there,1\n3,plain,0\n"
    r = upload(platform, content, schema={"target": "fail"})
    assert r.status_code == 201, r.text
    assert {t["value"] for t in r.json()["profile"]["columns"]["note"]["top"]} == {"a\x07b", "tab\there", "plain"}
    back = platform.api("viewer").get(f"/api/v1/datasets/{r.json()['id']}/download", params={"format": "parquet"})
    assert pd.read_parquet(io.BytesIO(back.content))["note"].tolist() == ["a\x07b", "tab\there", "plain"]


@pytest.mark.parametrize("schema, field", [
    ({"columns": {"x": {"description": "bad\x00desc"}}}, "form.schema.columns.x.description"),
    ({"columns": {"x": {"unit": "K\x01"}}}, "form.schema.columns.x.unit"),
    ({"ignore": ["x\x00"]}, "form.schema.ignore.0"),
    ({"derived": {"p\x00": "`x` * 2"}}, "form.schema.derived"),
])
def test_control_characters_in_the_schema_form_field(platform: Platform, schema: dict, field: str) -> None:
    err = refused(upload(platform, SMALL, schema=schema), 422, code="validation_error")
    assert err["details"]["field"] == field and err["details"]["errors"][0]["type"] == "control_character"


def test_control_characters_in_name_and_filename(platform: Platform) -> None:
    assert refused(upload(platform, SMALL, name="a\x00b"), 422)["details"]["field"] == "form.name"
    # httpx percent-encodes control characters in filenames; a raw client need not
    body = (b'--B\r\nContent-Disposition: form-data; name="name"\r\n\r\nplant\r\n--B\r\nContent-Disposition: '
            b'form-data; name="file"; filename="d\x00.csv"\r\nContent-Type: text/csv\r\n\r\n' + SMALL + b"\r\n--B--\r\n")
    r = platform.api().client.post("/api/v1/datasets", content=body,
                                   headers={"Content-Type": "multipart/form-data; boundary=B"})
    assert refused(r, 422)["details"]["field"] == "form.file.filename"


# ----------------------------------------------------------------------------------- names
def test_user_names_must_fit_the_column(platform: Platform) -> None:
    assert upload(platform, SMALL, name="n" * 201).status_code == 422
    r = upload(platform, SMALL, name="n" * 200, filename="f" * 300 + ".csv")
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "n" * 200 and len(r.json()["source_filename"]) == 255


def test_generated_names_are_clipped_to_the_column(platform: Platform, trained: dict) -> None:
    """A batch-scored dataset is named "<dataset> scored by <model> v<n>": over 200 characters when
    the source's name is long (on PostgreSQL that failed the job with a DataError)."""
    ds = upload(platform, AI4I.read_bytes(), name="long " + "n" * 195).json()
    api = platform.api()
    r = api.post(f"/api/v1/models/{trained['model_id']}/batch-predictions", json={"dataset_id": ds["id"]})
    assert r.status_code == 202, r.text
    job = api.wait(r.json()["id"], timeout=300)
    assert job["status"] == "succeeded", job
    scored = api.get(f"/api/v1/datasets/{job['result']['dataset_id']}").json()
    assert len(scored["name"]) == 200 and scored["name"].startswith("long nnn") and " v" in scored["name"][-40:]


# ----------------------------------------------------------------------------------- CSV downloads
def test_csv_download_escapes_formula_cells_but_not_numbers(platform: Platform) -> None:
    rows = [["x", "note", "fail"], ["-1.5", '=HYPERLINK("http://evil.example","click")', "0"],
            ["2", "+SUM(A1:A2)", "1"], ["3", "-1.5", "0"], ["4", "@cmd", "0"], ["5", "\tTAB", "0"],
            ["6", "-2+3", "0"], ["7", "plain", "0"], ["8", "\rCR", "1"]]
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    ds = upload(platform, buf.getvalue().encode(), schema={"target": "fail", "categorical": ["note"]}).json()
    body = platform.api("viewer").get(f"/api/v1/datasets/{ds['id']}/download").content.decode()
    back = list(csv.reader(io.StringIO(body)))
    notes = [r[1] for r in back[1:]]
    assert notes == ["'=HYPERLINK(\"http://evil.example\",\"click\")", "'+SUM(A1:A2)", "-1.5", "'@cmd", "'\tTAB",
                     "'-2+3", "plain", "'\rCR"]
    assert [r[0] for r in back[1:]][:2] == ["-1.5", "2.0"]  # numbers untouched
    # the stored data is the user's: only the CSV rendering is escaped
    pq_back = platform.api("viewer").get(f"/api/v1/datasets/{ds['id']}/download", params={"format": "parquet"})
    assert pd.read_parquet(io.BytesIO(pq_back.content))["note"].iloc[0].startswith("=HYPERLINK")


def test_ai4i_profile_is_unchanged_by_streaming(platform: Platform) -> None:
    """The streamed profile of AI4I is the whole-frame one (the sample is every row at 10,000)."""
    from ml.profile import profile
    from ml.schema import DatasetSchema
    from ml.tabular_io import read_table

    ds = upload(platform, AI4I.read_bytes(), "ai4i2020.csv").json()
    df, _ = read_table(AI4I)
    expected = profile(df, DatasetSchema.model_validate(ds["schema"]))
    assert json.dumps(ds["profile"], sort_keys=True) == json.dumps(expected, sort_keys=True)
    assert "sample" not in ds["profile"]

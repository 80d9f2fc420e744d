"""What the dashboard is served with and the API calls added for it: the files at / with their
security headers and compression, deployment facts, the one-click sample import, a model's input
columns, and the worker names per queue in /api/health."""

from __future__ import annotations

import gzip

import httpx

from tests.conftest import Platform
from tests.integration.test_datasets_api import AI4I, total


def test_dashboard_files_are_public_with_strict_headers_and_gzip(platform: Platform) -> None:
    r = httpx.get(platform.base_url + "/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'id="signin-token"' in r.text and '<script type="module" src="/static/js/app.js">' in r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in csp and r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "no-cache"
    # The chart library goes out gzipped (once compressed, kept), and decompresses to the vendored file.
    lib = "/static/vendor/chart.js/chart.umd.min.js"
    with httpx.Client(base_url=platform.base_url) as c:
        raw = c.get(lib, headers={"Accept-Encoding": "identity"})
        zipped = c.build_request("GET", lib, headers={"Accept-Encoding": "gzip"})
        z = c.send(zipped, stream=True)
        body = b"".join(z.iter_raw())
    assert raw.status_code == 200 and "content-encoding" not in raw.headers
    assert z.headers["content-encoding"] == "gzip" and len(body) < len(raw.content) / 2
    assert z.headers["etag"] != raw.headers["etag"]  # each representation its own validator
    again = httpx.get(platform.base_url + lib, headers={"Accept-Encoding": "gzip", "If-None-Match": z.headers["etag"]})
    assert again.status_code == 304 and again.headers["etag"] == z.headers["etag"]  # a warm reload revalidates
    assert httpx.get(platform.base_url + lib, headers={"Accept-Encoding": "identity",
                                                       "If-None-Match": z.headers["etag"]}).status_code == 200
    assert gzip.decompress(body) == raw.content
    assert raw.headers["etag"] and httpx.get(platform.base_url + lib, headers={
        "If-None-Match": raw.headers["etag"], "Accept-Encoding": "identity"}).status_code == 304
    fav = httpx.get(platform.base_url + "/favicon.ico")
    assert fav.status_code == 200 and fav.headers["content-type"] == "image/svg+xml"
    # Files outside the static folder are not served.
    for escape in ("/static/%2e%2e/core/settings.py", "/static/..%2fcore/settings.py", "/static/%2e%2e%2fREADME.md"):
        r = httpx.get(platform.base_url + escape)
        assert r.status_code == 404 and "pydantic" not in r.text and "Predictive" not in r.text, escape


def test_platform_facts_need_a_token(platform: Platform) -> None:
    assert httpx.get(platform.base_url + "/api/v1/platform").status_code == 401
    info = platform.api("viewer").get("/api/v1/platform").json()
    assert info["llm"]["default_provider"] == "template" and info["llm"]["openai_configured"] is True
    assert info["llm"]["model"] == "loopback-7b"
    assert info["limits"]["dataset_max_bytes"] == 2 * 1024 * 1024 and info["limits"]["max_predict_rows"] == 10_000
    assert info["flower"]["port"] == 5555 and info["database"] in ("sqlite", "postgresql")
    assert "OPENAI_API_KEY" not in str(info) and "sk-" not in str(info)


def test_sample_import_is_an_upload_of_the_shipped_file(platform: Platform) -> None:
    samples = platform.api("viewer").get("/api/v1/dataset-samples").json()["items"]
    assert [s["name"] for s in samples] == ["ai4i2020"] and samples[0]["size_bytes"] == AI4I.stat().st_size
    before = total(platform)
    r = platform.api("viewer").post("/api/v1/dataset-samples/ai4i2020/import")
    assert r.status_code == 403 and total(platform) == before
    r = platform.api().post("/api/v1/dataset-samples/nope/import")
    assert r.status_code == 404 and r.json()["error"]["details"]["allowed"] == ["ai4i2020"]
    r = platform.api().post("/api/v1/dataset-samples/ai4i2020/import")
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["name"] == "ai4i2020" and ds["rows"] == 10_000 and ds["source_filename"] == "ai4i2020.csv"
    assert ds["schema"]["target"] == "Machine failure" and ds["profile"]["class_balance"]["positives"] == 339
    assert total(platform) == before + 1
    assert platform.api().client.delete(f"/api/v1/datasets/{ds['id']}").status_code == 204


def test_model_inputs_describe_the_reading_form(platform: Platform, trained: dict) -> None:
    r = platform.api("viewer").get(f"/api/v1/models/{trained['model_id']}/inputs")
    assert r.status_code == 200, r.text
    spec = r.json()
    by = {c["name"]: c for c in spec["inputs"]}
    assert set(by) == {"Type", "Air temperature [K]", "Process temperature [K]", "Rotational speed [rpm]",
                       "Torque [Nm]", "Tool wear [min]"}
    torque = by["Torque [Nm]"]
    assert torque["kind"] == "numeric" and torque["unit"] == "Nm" and torque["typical"] == 40.1
    assert torque["normal_range"][0] < 40.1 < torque["normal_range"][1]
    assert by["Type"]["kind"] == "categorical" and set(by["Type"]["levels"]) == {"L", "M", "H"}
    assert by["Type"]["typical"] == "L"
    assert 0 < spec["threshold"] < 1 and set(spec["failure_modes"]) <= {"TWF", "HDF", "PWF", "OSF", "RNF"}
    assert platform.api("viewer").get("/api/v1/models/no-such-model/inputs").status_code == 404


def test_health_names_the_workers_of_each_queue(platform: Platform) -> None:
    h = platform.api("viewer").get("/api/health").json()  # worker names need a token (the dashboard sends it)
    for q in ("gan", "ml", "llm"):
        assert h["queues"][q]["workers"] == len(h["queues"][q]["worker_names"]) >= 1
        assert all(name.startswith(f"{q}-") for name in h["queues"][q]["worker_names"])

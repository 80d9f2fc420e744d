"""Schemathesis against the running API, over real HTTP, as an operator, a viewer and an admin.

It reads the API's own /openapi.json and sends what the document allows and what it doesn't
(boundary values, wrong types, missing fields, junk bodies), then checks every answer: no 5xx,
a status the document lists for that operation, a documented media type, and a body (every SSE
event too) that matches the documented schema. Zero failures are allowed.

The fuzzed platform is its own (own database, own Redis db), so nothing the fuzz creates, aliases
or deletes reaches the other tests. It is seeded through the API (datasets, a failure model, a
prediction, an explanation; no TVAE generator, as one that samples well takes over a minute to
train here, so the generator routes meet unknown refs and a failure model), and then its worker is
stopped: the fuzz may submit any job the document allows (a ping that sleeps an hour, a TVAE of
the largest documented size), and those are meant to be accepted, not run here. Their ids are
given to schemathesis as dictionaries, so a share of the generated requests reach real
resources instead of ending at 404.

Bounded: a few examples per operation, a fixed seed (FUZZ_SEED to vary it), a hard deadline on
each schemathesis run and an address-space limit on its process. Request bodies are bounded by
the platform's MAX_REQUEST_BYTES (8 MiB in tests).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from tests.conftest import Platform, backend_of, new_database
from tests.helpers import wait_until

AI4I = Path(__file__).resolve().parents[2] / "data" / "samples" / "ai4i2020.csv"
SEED = int(os.environ.get("FUZZ_SEED", "20261201"))
DEPTH = int(os.environ.get("FUZZ_DEPTH", "1"))  # multiplies the examples per operation, for a longer local run
RUN_DEADLINE_S = 150  # per schemathesis run; a healthy run takes a fraction of it
FUZZER_MAX_BYTES = 3 * 1024**3
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
# (role, max examples per operation, phases, operations). Routes are fuzzed as operator, with every
# phase (the coverage phase sends the boundary and wrong-type values); the viewer run checks what a
# read-only token gets everywhere (403s and reads); the admin run is for the admin routes, tokens.
ALL_PHASES = "examples,coverage,fuzzing,stateful"
RUNS = [("operator", 8, ALL_PHASES, None), ("viewer", 5, "examples,fuzzing", None),
        ("admin", 8, ALL_PHASES, "^/api/v1/tokens")]


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)  # strings and numbers: JSON's escapes are TOML's


def _ok(r: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return r.json()


def _api_up(p: Platform) -> bool:
    try:
        return httpx.get(p.base_url + "/api/health", timeout=2).status_code in (200, 503)
    except httpx.HTTPError:
        return False


def _seed(p: Platform) -> dict[str, list[str]]:
    """One of each resource, made through the API: their ids, by kind."""
    op = p.api("operator")
    frame = pd.read_csv(AI4I)

    def upload(rows: int, name: str) -> dict[str, Any]:
        body = frame.sample(rows, random_state=0).to_csv(index=False).encode()
        return _ok(op.post("/api/v1/datasets", files={"file": (f"{name}.csv", body)}, data={"name": name}), 201)

    train_ds = upload(1000, "fuzz-train")  # ~35 failures: enough for 2-fold CV
    spare_ds = upload(200, "fuzz-spare")  # nothing depends on it: DELETE may really delete it
    failure = _ok(op.post("/api/v1/ml/models", json={"dataset_id": train_ds["id"], "task": "failure",
                                                    "cv_folds": 2, "algorithm": "lightgbm"}), 202)
    failure = op.wait(failure["id"], timeout=300)
    assert failure["status"] == "succeeded", failure["error"]
    model_id = failure["result"]["model_id"]
    _ok(op.post(f"/api/v1/models/{model_id}/aliases", json={"alias": "production"}))
    row = {i["name"]: i["typical"] for i in _ok(op.get(f"/api/v1/models/{model_id}/inputs"))["inputs"]}
    scored = _ok(op.post(f"/api/v1/models/{model_id}/predict", json={"rows": [row]}))
    prediction_id = scored["predictions"][0]["prediction_id"]
    explain = _ok(op.post("/api/v1/llm/explanations", json={"prediction_id": prediction_id, "provider": "template"}), 202)
    explain = op.wait(explain["id"], timeout=120)
    assert explain["status"] == "succeeded", (explain, p.logs())
    explanations = _ok(op.get("/api/v1/llm/explanations", params={"prediction_id": prediction_id}))["items"]
    return {"datasets": [train_ds["id"], spare_ds["id"]],
            "failure_models": [model_id, f"{failure['result']['name']}@production"],
            "predictions": [prediction_id], "explanations": [e["id"] for e in explanations],
            "jobs": [failure["id"], explain["id"]]}


@pytest.fixture(scope="module")
def fuzz_platform(backend: str, redis_base: tuple[str, list[int]]) -> Iterator[tuple[Platform, dict]]:
    base, dbs = redis_base
    # dbs[0..3]: the shared platforms and tests/unit/test_logging_task.py (see tests/e2e/conftest.py)
    redis_url = f"{base}/{dbs[4] if backend == 'sqlite' else dbs[5]}"
    with new_database(backend) as url:
        p = Platform(url, redis_url, f"fuzz-{backend}", queues=("gan,ml,llm",), extra_env={"LLM_PROVIDER": "template"})
        p.start()
        try:
            ids = _seed(p)
            p.workers["gan,ml,llm"].stop()  # jobs the fuzz submits stay queued (see the module docstring)
            yield p, ids
        finally:
            p.stop()


def _config(ids: dict[str, list[str]], path: Path) -> Path:
    dictionaries = {name: {"values": values} for name, values in ids.items() if values}
    ops: list[dict[str, Any]] = [
        # Degraded (no worker runs: see above) is a documented answer of the health probe, not a bug.
        {"include-path": "/api/health", "checks.not_a_server_error.expected-statuses": ["2xx", "3xx", "4xx", "503"]},
        # A stream of a job that has not ended stays open (keep-alives every 15 s): read for 2 s.
        {"include-path": "/api/v1/jobs/{job_id}/events", "request-timeout": 2},
    ]

    def bind(regex: str, **params: str) -> None:
        ops.append({"include-path-regex": regex,
                    "parameters": {k.replace("__", "."): {"dictionary": v, "probability": 0.6}
                                   for k, v in params.items()}})

    bind(r"^/api/v1/jobs/\{job_id\}", path__job_id="jobs")
    bind(r"^/api/v1/datasets/\{dataset_id\}", path__dataset_id="datasets")
    bind(r"^/api/v1/models/\{ref\}(/inputs|/predict|/aliases)?$", path__ref="failure_models")
    bind(r"^/api/v1/models/\{ref\}/batch-predictions$", path__ref="failure_models", body__dataset_id="datasets")
    bind(r"^/api/v1/(ml|gan)/models$", body__dataset_id="datasets")
    bind(r"^/api/v1/predictions/", path__prediction_id="predictions")
    bind(r"^/api/v1/llm/explanations/\{", path__explanation_id="explanations")
    bind(r"^/api/v1/llm/explanations$", body__prediction_id="predictions", body__model_id="failure_models",
         query__prediction_id="predictions")
    lines = ["[generation]", 'database = "none"', "", "[dictionaries]"]
    lines += [f"{json.dumps(k)} = {_toml(v)}" for k, v in dictionaries.items()]
    for op in ops:
        lines += ["", "[[operations]]"] + [f"{json.dumps(k) if '.' not in k else k} = {_toml(v)}" for k, v in op.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (FUZZER_MAX_BYTES, FUZZER_MAX_BYTES))


def _fuzz(p: Platform, ids: dict[str, list[str]], role: str, max_examples: int, phases: str,
          include: str | None, workdir: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    reports = workdir / "reports"
    argv = [sys.executable, "-m", "schemathesis.cli", "--no-color", "--config-file",
            str(_config(ids, workdir / "schemathesis.toml")), "run", f"{p.base_url}/openapi.json",
            "--header", f"Authorization: Bearer {p.tokens[role]}", "--checks", CHECKS,
            "--max-examples", str(max_examples * DEPTH), "--phases", phases, "--seed", str(SEED), "--workers", "2",
            "--request-timeout", "20", "--suppress-health-check", "all",
            "--report", "json", "--report-dir", str(reports)]
    if include:
        argv += ["--include-path-regex", include]
    if role == "admin":
        # Revoking tokens: the fuzz would revoke the tokens it and the other runs test with (its
        # own is refused with 409, which tests/integration covers). Operator and viewer runs
        # still send it (and get 403).
        argv += ["--exclude-path", "/api/v1/tokens/{token_id}"]
    out = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, timeout=RUN_DEADLINE_S,
                         preexec_fn=_limit_memory, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    found = sorted(reports.glob("*.json"))
    report = json.loads(found[-1].read_text()) if found else {}
    return out, report


def _failures(out: subprocess.CompletedProcess[str]) -> str:
    text = out.stdout
    start = text.find("= FAILURES =")
    return (text[start:] if start >= 0 else text)[-20000:] + out.stderr[-3000:]


def test_fuzz_finds_no_server_error_and_no_schema_violation(fuzz_platform: tuple[Platform, dict],
                                                             tmp_path: Path) -> None:
    p, ids = fuzz_platform
    started = time.monotonic()
    summary = []
    for role, max_examples, phases, include in RUNS:
        workdir = tmp_path / role
        workdir.mkdir()
        out, report = _fuzz(p, ids, role, max_examples, phases, include, workdir)
        assert report, f"schemathesis wrote no report (exit {out.returncode}):\n{_failures(out)}"
        cases, ops = report["test_cases"], report["operations"]
        summary.append(f"{role}: {ops['tested']} operations, {cases['generated']} cases")
        assert out.returncode == 0 and not report["failures"] and not report["errors"], (
            f"{role} run ({backend_of(p.db_url)}): {_failures(out)}\n--- API log\n{p.api_proc.log_tail(6000)}")
        # Not vacuous: every selected operation was sent requests, and many of them.
        assert ops["tested"] == ops["selected"] > 0 and ops["errored"] == 0, ops
        assert cases["generated"] >= 3 * ops["tested"], cases
        wait_until(lambda: _api_up(p), timeout=10, what="the API after the fuzz")
    print(f"fuzz ({backend_of(p.db_url)}, seed {SEED}) in {time.monotonic() - started:.0f} s: " + "; ".join(summary))


def test_documented_error_shape_is_the_one_sent(fuzz_platform: tuple[Platform, dict]) -> None:
    """The document's error schema and statuses, against answers the fuzz can't force (a 401 here)."""
    p, ids = fuzz_platform
    doc = httpx.get(p.base_url + "/openapi.json", timeout=10).json()
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    err = doc["components"]["schemas"]["ErrorBody"]
    assert err["required"] == ["error"]
    ping = doc["paths"]["/api/v1/jobs/ping"]["post"]["responses"]
    assert set(ping) == {"202", "400", "401", "403", "413", "422", "503"}
    assert all(r["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
               for code, r in ping.items() if code != "202")
    download = doc["paths"]["/api/v1/datasets/{dataset_id}/download"]["get"]["responses"]["200"]["content"]
    assert set(download) == {"text/csv", "application/vnd.apache.parquet"}
    r = httpx.post(p.base_url + "/api/v1/jobs/ping", json={"queue": "ml"}, headers={"Authorization": "Bearer junk"})
    assert r.status_code == 401 and set(r.json()) == {"error"} and set(r.json()["error"]) == {"code", "message", "details"}
    op = p.api("operator")
    for bad in ({"queue": "ml", "sleep_s": False}, {"queue": "ml", "sleep_s": "1"}, {"queue": 1}):
        r = op.post("/api/v1/jobs/ping", json=bad)
        assert r.status_code == 422, (bad, r.text)
    assert op.post("/api/v1/jobs/ping", json={"queue": "ml", "sleep_s": 1}).status_code == 202  # int for a float
    tvae = {"dataset_id": ids["datasets"][0], "epochs": 1}
    for bad in ({"enable_gpu": 0}, {"enable_gpu": 1}, {"enable_gpu": "true"}, {"epochs": True}, {"epochs": 1.0}):
        r = op.post("/api/v1/gan/models", json={**tvae, **bad})
        assert r.status_code == 422, (bad, r.text)
    schema = {"columns": {"Torque [Nm]": {"normal_range": ["3", 70]}}}
    r = op.client.patch(f"/api/v1/datasets/{ids['datasets'][0]}", json={"schema": schema})
    assert r.status_code == 422 and "normal_range" in r.text, r.text

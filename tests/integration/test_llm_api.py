"""Explanations end to end: API -> llm worker -> attributions -> template or the loopback
OpenAI-compatible server (real HTTP, real `openai` client in the worker) -> stored, cached, listed."""

from __future__ import annotations

import json

from tests.conftest import LLM_KEY, Platform

READING = {"Type": "L", "Air temperature [K]": 302.5, "Process temperature [K]": 310.9,
           "Rotational speed [rpm]": 1320, "Torque [Nm]": 65.7, "Tool wear [min]": 190}


def test_template_explanation_of_a_stored_prediction_is_stored_cached_and_listed(platform: Platform,
                                                                                trained: dict) -> None:
    api = platform.api()
    pred = api.post(f"/api/v1/models/{trained['model_id']}/predict", json={"rows": [READING]}).json()
    pid = pred["predictions"][0]["prediction_id"]
    assert pred["predictions"][0]["failure"] is True  # torque high, speed low: a failure reading
    r = api.post("/api/v1/llm/explanations", json={"prediction_id": pid})
    assert r.status_code == 202, r.text
    job = api.wait(r.json()["id"], timeout=120)
    assert job["status"] == "succeeded", (job, platform.logs())
    assert job["queue"] == "llm" and job["kind"] == "explain" and job["result"]["cached"] is False
    e = job["result"]["explanation"]
    assert e["provider"] == "template" and e["faithfulness"]["score"] == 1.0 and e["fallback"] is None
    assert e["urgency"] in ("high", "critical") and e["likely_failure_mode"] in ("PWF", "OSF", "HDF")
    ev = {x["feature"]: x for x in e["evidence"]}
    assert "Torque [Nm]" in ev and ev["Torque [Nm]"]["value"] == 65.7 and ev["Torque [Nm]"]["unit"] == "Nm"
    assert ev["Torque [Nm]"]["status"] == "above" and ev["Torque [Nm]"]["normal_range"][1] < 65.7
    viewer = platform.api("viewer")
    got = viewer.get(f"/api/v1/llm/explanations/{job['result']['explanation_id']}").json()
    assert got["summary"] == e["summary"] and got["prediction_id"] == pid
    again = api.wait(api.post("/api/v1/llm/explanations", json={"prediction_id": pid}).json()["id"], timeout=60)
    assert again["result"]["cached"] is True and again["result"]["explanation_id"] == got["id"]
    fresh = api.wait(api.post("/api/v1/llm/explanations", json={"prediction_id": pid, "refresh": True}).json()["id"],
                     timeout=60)
    assert fresh["result"]["cached"] is False and fresh["result"]["explanation_id"] != got["id"]
    listed = viewer.get("/api/v1/llm/explanations", params={"prediction_id": pid}).json()
    assert listed["total"] == 2 and [x["id"] for x in listed["items"]] == [fresh["result"]["explanation_id"], got["id"]]


def test_openai_provider_streams_tokens_into_job_events_and_never_shows_the_key(platform: Platform,
                                                                                trained: dict, llm_server) -> None:  # noqa: ANN001
    api = platform.api()
    llm_server.then({"kind": "ok", "token_delay": 0.05})
    r = api.post("/api/v1/llm/explanations", json={"model_id": trained["model_id"], "row": READING,
                                                   "provider": "openai"})
    assert r.status_code == 202, r.text
    job = api.wait(r.json()["id"], timeout=120)
    assert job["status"] == "succeeded", (job, platform.logs())
    e = job["result"]["explanation"]
    assert e["provider"] == "openai" and e["model"] == "loopback-7b" and e["faithfulness"]["score"] == 1.0
    assert e["usage"]["total_tokens"] > 0 and e["requested_provider"] == "openai"
    events = api.events(job["id"])
    streamed = "".join(x["data"]["text"] for x in events if x["event"] == "token")
    assert json.loads(streamed)["summary"] == e["summary"]  # the tokens as the server sent them
    assert llm_server.requests[-1]["headers"]["authorization"] == f"Bearer {LLM_KEY}"
    # A failing provider: retried, then a clear job failure, and the key is nowhere.
    llm_server.then(*[{"kind": "status", "status": 503, "message": f"overloaded {LLM_KEY}"}] * 3)
    bad = api.wait(api.post("/api/v1/llm/explanations", json={"model_id": trained["model_id"], "row": READING,
                                                               "provider": "openai", "refresh": True}).json()["id"],
                   timeout=120)
    assert bad["status"] == "failed" and "HTTP 503" in bad["error"]["message"] and "gave up after 3" in bad["error"]["message"]
    seen = json.dumps([bad, job, api.events(bad["id"]), api.get(f"/api/v1/jobs/{job['id']}").json()])
    assert LLM_KEY not in seen and LLM_KEY not in platform.logs()
    for p in platform.dir.glob("*.log"):
        assert LLM_KEY not in p.read_text(errors="replace"), p


def test_bad_requests_are_precise(platform: Platform, trained: dict) -> None:
    api = platform.api()
    r = api.post("/api/v1/llm/explanations", json={"model_id": trained["model_id"]})
    assert r.status_code == 422 and "row" in r.text
    r = api.post("/api/v1/llm/explanations", json={"prediction_id": "nope"})
    assert r.status_code == 404
    r = api.post("/api/v1/llm/explanations", json={"model_id": trained["model_id"], "row": {"Type": "L"}})
    assert r.status_code == 422 and r.json()["error"]["code"] == "missing_features"
    r = api.post("/api/v1/llm/explanations", json={"prediction_id": "x", "provider": "claude"})
    assert r.status_code == 422
    viewer = platform.api("viewer")
    r = viewer.post("/api/v1/llm/explanations", json={"model_id": trained["model_id"], "row": READING})
    assert r.status_code == 403
    assert platform.api(None).get("/api/v1/llm/explanations").status_code == 401


def test_cancel_stops_an_explanation_while_the_llm_is_still_writing(platform: Platform, trained: dict,
                                                                     llm_server) -> None:  # noqa: ANN001
    from tests.helpers import wait_until

    api = platform.api()
    llm_server.then({"kind": "ok", "token_delay": 1.0})  # ~40 chunks, one a second
    before = len(llm_server.requests)
    job_id = api.post("/api/v1/llm/explanations", json={"model_id": trained["model_id"], "row": READING,
                                                        "provider": "openai", "refresh": True}).json()["id"]
    wait_until(lambda: len(llm_server.requests) > before, timeout=60, what="the LLM request")
    assert api.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 200
    job = api.wait(job_id, timeout=10)  # the stream alone would take ~40 s
    assert job["status"] == "cancelled", job


def test_a_template_fallback_is_stored_but_never_served_from_cache(platform: Platform, trained: dict,
                                                                   llm_server) -> None:  # noqa: ANN001
    api = platform.api()
    pid = api.post(f"/api/v1/models/{trained['model_id']}/predict", json={"rows": [READING]}).json()[
        "predictions"][0]["prediction_id"]
    llm_server.then({"kind": "malformed"}, {"kind": "malformed"})
    first = api.wait(api.post("/api/v1/llm/explanations", json={"prediction_id": pid, "provider": "openai"}).json()["id"],
                     timeout=120)
    e = first["result"]["explanation"]
    assert e["provider"] == "template" and e["fallback"]["requested_provider"] == "openai"
    resets = [x["data"]["reason"] for x in api.events(first["id"]) if x["event"] == "token_reset"]
    assert resets == ["repair", "fallback"]
    second = api.wait(api.post("/api/v1/llm/explanations", json={"prediction_id": pid, "provider": "openai"}).json()["id"],
                      timeout=120)
    assert second["result"]["cached"] is False and second["result"]["explanation"]["provider"] == "openai"
    third = api.wait(api.post("/api/v1/llm/explanations", json={"prediction_id": pid, "provider": "openai"}).json()["id"],
                     timeout=120)
    assert third["result"]["cached"] is True and third["result"]["explanation_id"] == second["result"]["explanation_id"]

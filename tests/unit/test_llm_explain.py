"""Explanations (llm/): exact attributions, faithful template wording, the faithfulness check, and the
OpenAI-compatible provider driven through the real `openai` client against a loopback HTTP server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from core.settings import PROJECT_ROOT
from llm import faithfulness
from llm.explain import explain, messages_for
from llm.facts import build_facts, credit_to_columns
from llm.providers import OpenAICompatible, ProviderError, retry_after
from ml.schema import infer_schema
from ml.tabular_io import read_table
from ml.training import train_failure_model
from tests.openai_server import LoopbackOpenAI

KEY = "sk-loopback-SECRET-4242"


@pytest.fixture(scope="module")
def ai4i() -> pd.DataFrame:
    return read_table(PROJECT_ROOT / "data" / "samples" / "ai4i2020.csv")[0]


@pytest.fixture(scope="module")
def schema(ai4i: pd.DataFrame):  # noqa: ANN201
    return infer_schema(ai4i)


@pytest.fixture(scope="module")
def model(ai4i: pd.DataFrame, schema):  # noqa: ANN001, ANN201
    return train_failure_model(ai4i, schema, cv_folds=3)


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackOpenAI]:
    s = LoopbackOpenAI().start()
    yield s
    s.stop()


def _row(df: pd.DataFrame, i: int) -> dict:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in df.iloc[i].to_dict().items()}


def _failure_rows(ai4i: pd.DataFrame) -> list[int]:
    return list(np.flatnonzero(ai4i["Machine failure"].to_numpy() == 1))


def test_attributions_are_exact_and_credited_to_the_columns_people_read(ai4i, schema, model) -> None:  # noqa: ANN001
    import shap

    i = _failure_rows(ai4i)[0]
    facts = build_facts(model, _row(ai4i, i), schema)
    est = model.estimator if facts.explained_model == "failure" else model.mode_estimators[facts.explained_model]
    X = model._matrix(ai4i.iloc[[i]])
    raw = est.booster_.predict(X.to_numpy(dtype="float64"), raw_score=True)[0]
    total = sum(r.contribution for r in facts.readings)
    assert facts.contribution_space == "log-odds" and abs(facts.base_value + total - raw) < 1e-4  # additive
    ours = est.booster_.predict(X.to_numpy(dtype="float64"), pred_contrib=True)[0][:-1]
    theirs = np.asarray(shap.TreeExplainer(est).shap_values(X.to_numpy(dtype="float64")))
    theirs = theirs.reshape(-1, X.shape[1])[-1]
    assert np.allclose(ours, theirs, atol=1e-6)  # LightGBM's TreeSHAP is shap's TreeExplainer
    assert {r.feature for r in facts.readings} == {"Type", "Air temperature [K]", "Process temperature [K]",
                                                    "Rotational speed [rpm]", "Torque [Nm]", "Tool wear [min]"}
    torque = next(r for r in facts.readings if r.feature == "Torque [Nm]")
    assert torque.unit == "Nm" and torque.normal_range == schema.columns["Torque [Nm]"].normal_range
    assert credit_to_columns(np.array([1.0, 0.5]), [["a", "b"], ["a", "a"]]) == {"a": 1.0, "b": 0.5}


@pytest.mark.parametrize("algorithm", ["random_forest", "logistic_regression"])
def test_other_algorithms_are_attributed_exactly_too(ai4i, schema, algorithm) -> None:  # noqa: ANN001
    small = pd.concat([ai4i[ai4i["Machine failure"] == 1], ai4i[ai4i["Machine failure"] == 0].iloc[:1500]])
    m = train_failure_model(small, schema, algorithm=algorithm, cv_folds=2)
    row = _row(small, 0)
    facts = build_facts(m, row, schema)
    est = m.estimator if facts.explained_model == "failure" else m.mode_estimators[facts.explained_model]
    X = m._matrix(small.iloc[[0]])
    total = facts.base_value + sum(r.contribution for r in facts.readings)
    if algorithm == "random_forest":
        assert facts.contribution_space == "probability"
        assert abs(total - est.predict_proba(X)[0, 1]) < 1e-3
    else:
        assert facts.contribution_space == "log-odds"
        assert abs(total - est.decision_function(X)[0]) < 1e-4


def test_template_wording_is_faithful_for_every_ai4i_failure(ai4i, schema, model) -> None:  # noqa: ANN001
    scores = []
    for i in _failure_rows(ai4i):
        out = explain(build_facts(model, _row(ai4i, i), schema), None)
        assert out["provider"] == "template" and out["summary"] and out["recommended_actions"]
        assert out["urgency"] in ("low", "medium", "high", "critical")
        scores.append(out["faithfulness"]["score"])
        assert out["faithfulness"]["unsupported"] == [], (out["summary"], out["faithfulness"])
    assert len(scores) == 339 and min(scores) == 1.0
    healthy = explain(build_facts(model, _row(ai4i, 0), schema), None)
    assert healthy["summary"].startswith("No failure expected") and healthy["urgency"] in ("low", "medium")


def test_faithfulness_fails_on_a_made_up_reading_or_an_irrelevant_feature(ai4i, schema, model) -> None:  # noqa: ANN001
    facts = build_facts(model, _row(ai4i, _failure_rows(ai4i)[0]), schema)
    good = explain(facts, None)
    top = facts.top[0]
    quoted = {**good, "summary": good["summary"] + f" {top.feature} is {top.value}."}
    assert faithfulness.check(quoted, facts)["score"] == 1.0
    made_up = {**good, "summary": good["summary"] + f" {top.feature} reached 123.4 {top.unit or ''}."}
    r = faithfulness.check(made_up, facts)
    assert r["score"] < 1.0 and {"kind": "number", "claim": "123.4", "where": "summary",
                                 "why": "matches no reading, range, probability or contribution"} in r["unsupported"]
    facts.top_k = 1  # now only one reading counts as having mattered
    second = facts.readings[1].feature
    r = faithfulness.check({**good, "summary": f"{second} drove it.", "evidence": [second]}, facts)
    assert {u["kind"] for u in r["unsupported"]} == {"feature", "evidence"}


def provider(server: LoopbackOpenAI, **kw) -> OpenAICompatible:  # noqa: ANN003
    kw = {"timeout_s": 5.0, "max_attempts": 3, "backoff_s": 0.05, **kw}
    return OpenAICompatible(server.base_url, KEY, "loopback-7b", **kw)


@pytest.mark.parametrize("stream", [True, False])
def test_openai_provider_words_the_facts_streaming_or_not(ai4i, schema, model, server, stream) -> None:  # noqa: ANN001
    facts = build_facts(model, _row(ai4i, _failure_rows(ai4i)[0]), schema)
    tokens: list[str] = []
    out = explain(facts, provider(server.then(), stream=stream), on_token=tokens.append)
    assert out["provider"] == "openai" and out["model"] == "loopback-7b" and out["fallback"] is None
    assert out["faithfulness"]["score"] == 1.0 and out["evidence"][0]["feature"] == facts.top[0].feature
    assert out["evidence"][0]["value"] == facts.top[0].value  # values come from the facts, not the model
    assert out["usage"]["total_tokens"] > 0 and out["prompt_version"] == "explain-v1"
    assert len(tokens) > (5 if stream else 0) and json.loads("".join(tokens))["summary"] == out["summary"]
    sent = server.requests[0]
    assert sent["headers"]["authorization"] == f"Bearer {KEY}" and bool(sent["body"].get("stream")) is stream
    assert sent["body"]["response_format"] == {"type": "json_object"}
    assert KEY not in json.dumps(out)


def test_retries_honour_retry_after_then_succeed(ai4i, schema, model, server) -> None:  # noqa: ANN001
    facts = build_facts(model, _row(ai4i, 1), schema)
    waits: list[float] = []
    server.then({"kind": "status", "status": 429, "retry_after": 1}, {"kind": "status", "status": 503})
    out = explain(facts, provider(server), sleep=lambda s: (waits.append(s), time.sleep(s)))
    assert out["faithfulness"]["score"] == 1.0 and len(server.requests) == 3
    assert waits[0] == 1.0 and 0 < waits[1] < 1.0  # Retry-After honoured, then our own backoff
    assert server.requests[1]["at"] - server.requests[0]["at"] >= 1.0
    assert out["attempts"][0]["http_attempts"] == 3
    assert retry_after({"retry-after-ms": "250"}) == 0.25 and retry_after({}) is None


def test_the_last_failure_is_a_clear_error_without_the_key(ai4i, schema, model, server) -> None:  # noqa: ANN001
    facts = build_facts(model, _row(ai4i, 1), schema)
    server.then(*[{"kind": "status", "status": 500, "message": f"boom {KEY}"}] * 3)
    with pytest.raises(ProviderError, match=r"HTTP 500 from the LLM server: boom \*\*\* \(gave up after 3 attempts\)") as e:
        explain(facts, provider(server), sleep=lambda s: None)
    assert KEY not in str(e.value)
    server.then({"kind": "status", "status": 401, "message": "bad key"})
    with pytest.raises(ProviderError, match="HTTP 401"):  # not retried
        explain(facts, provider(server), sleep=lambda s: None)
    assert len(server.requests) == 1
    server.then(*[{"kind": "ok", "delay": 1.5}] * 2)
    with pytest.raises(ProviderError, match="timed out .*gave up after 2 attempts"):
        explain(facts, provider(server, timeout_s=0.5, max_attempts=2), sleep=lambda s: None)


def test_malformed_or_unfaithful_answers_get_one_repair_then_the_template(ai4i, schema, model, server) -> None:  # noqa: ANN001
    facts = build_facts(model, _row(ai4i, _failure_rows(ai4i)[0]), schema)
    server.then({"kind": "malformed"})
    out = explain(facts, provider(server))
    assert out["provider"] == "openai" and out["fallback"] is None and len(server.requests) == 2
    repair = server.requests[1]["body"]["messages"][-1]["content"]
    assert "not valid JSON" in repair
    facts.top_k = 2
    server.then({"kind": "unfaithful"}, {"kind": "unfaithful"})
    notes: list[str] = []
    out = explain(facts, provider(server), on_note=notes.append)
    assert len(server.requests) == 2 and "not among the top attributions" in server.requests[1]["body"]["messages"][-1]["content"]
    assert out["provider"] == "template" and out["faithfulness"]["score"] == 1.0
    assert out["fallback"]["requested_provider"] == "openai" and len(out["fallback"]["problems"]) == 2
    assert "987.6" in out["fallback"]["problems"][0] and len(notes) == 2
    assert "987.6" not in out["summary"]


def test_the_prompt_holds_the_facts_and_no_secrets(ai4i, schema, model) -> None:  # noqa: ANN001
    facts = build_facts(model, _row(ai4i, _failure_rows(ai4i)[0]), schema)
    msgs = messages_for(facts)
    body = json.loads(msgs[1]["content"][len("FACTS:"):])
    assert body["top_features"] == [r.feature for r in facts.top]
    assert body["failure_probability_percent"] == round(facts.probability * 100)
    assert "Never invent a reading" in msgs[0]["content"]


def test_units_with_digits_and_numbers_sent_as_text(ai4i, schema, model) -> None:  # noqa: ANN001
    from llm.facts import Facts, Reading

    facts = Facts(probability=0.91, threshold=0.2, predicted_failure=True, urgency="critical", likely_failure_mode=None,
                  mode_probabilities={"BRG2": 0.8}, explained_model="failure", contribution_space="log-odds",
                  base_value=-3.0, readings=[Reading("Vibration", 3.2, "m/s2", (0.5, 2.5), "above", 2.1)])
    text = {"summary": "Vibration at 3.2 m/s2 is above its 0.5 to 2.5 m/s2 range; BRG2 is likely (91%).",
            "recommended_actions": ["Check the bearing."], "evidence": ["Vibration"]}
    assert faithfulness.check(text, facts)["score"] == 1.0
    row = {**_row(ai4i, _failure_rows(ai4i)[0])}
    row["Torque [Nm]"] = str(row["Torque [Nm]"])
    torque = next(r for r in build_facts(model, row, schema).readings if r.feature == "Torque [Nm]")
    assert isinstance(torque.value, float) and torque.status in ("below", "within", "above")


def test_numbers_are_matched_the_way_they_are_written(ai4i, schema, model) -> None:  # noqa: ANN001
    from llm.facts import Facts, Reading

    facts = Facts(probability=0.91, threshold=0.2, predicted_failure=True, urgency="critical", likely_failure_mode=None,
                  mode_probabilities={}, explained_model="failure", contribution_space="log-odds", base_value=-3.0,
                  readings=[Reading("Load", 3.0, "kN", (0.25, 2.5), "above", 1.8),
                            Reading("Count", 1284.0, None, None, "unknown", 0.4)])

    def score(text: str) -> float:
        return faithfulness.check({"summary": text, "recommended_actions": ["Check it."], "evidence": []}, facts)["score"]

    assert score("Load is 3 kN, failure risk 91%, threshold 20%, or 0.91; count 1,284.") == 1.0
    assert score("Failure risk 3%.") < 1.0  # a percentage is not the reading 3
    assert score("Load is -3 kN.") < 1.0  # signs count
    assert score("Replace it within 1.8 hours.") < 1.0  # 1.8 is a contribution: never shown, never quotable
    assert score("Risk 1.") < 1.0 and score("Load 2,5 kN.") == 1.0  # no integer rounding of 0.91; decimal comma


def test_template_wording_is_faithful_for_healthy_readings_too(ai4i, schema, model) -> None:  # noqa: ANN001
    healthy = np.flatnonzero(ai4i["Machine failure"].to_numpy() == 0)[:400]
    urgencies = set()
    for i in healthy:
        out = explain(build_facts(model, _row(ai4i, int(i)), schema), None)
        urgencies.add(out["urgency"])
        assert out["faithfulness"]["unsupported"] == [], (out["summary"], out["recommended_actions"])
    assert "low" in urgencies


def test_stream_errors_are_retried_and_void_text_is_marked(ai4i, schema, model, server) -> None:  # noqa: ANN001
    facts = build_facts(model, _row(ai4i, _failure_rows(ai4i)[0]), schema)
    resets: list[str] = []
    server.then({"kind": "stream_error"})
    out = explain(facts, provider(server), on_token=lambda t: None, on_reset=resets.append, sleep=lambda s: None)
    assert out["provider"] == "openai" and resets == ["retry"] and len(server.requests) == 2
    resets.clear()
    server.then({"kind": "malformed"}, *[{"kind": "status", "status": 500}] * 3)  # the repair call fails
    out = explain(facts, provider(server), on_reset=resets.append, sleep=lambda s: None)
    assert out["provider"] == "template" and "repair request failed" in out["fallback"]["problems"][-1]
    assert resets == ["repair", "fallback"]


def test_plain_decimals_and_the_model_that_decided_a_combined_score(ai4i, schema, model) -> None:  # noqa: ANN001
    from llm.template import fmt_value

    assert [fmt_value(v) for v in (1500000.0, 5e-05, 302.5, 1284.0)] == ["1500000", "0.00005", "302.5", "1284"]
    p_fail, modes = model.predict_with_modes(ai4i)
    from ml.training import positive_proba

    X = model._matrix(ai4i).to_numpy(dtype="float64")
    own = positive_proba(model.estimator, X)
    combined = np.flatnonzero(p_fail > own + 1e-9)  # rows whose score came from the mode models
    assert len(combined) > 0
    facts = build_facts(model, _row(ai4i, int(combined[0])), schema)
    top_mode = max(facts.mode_probabilities, key=facts.mode_probabilities.get)
    assert facts.explained_model == top_mode

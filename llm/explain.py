"""Explanations: the platform computes the facts, a provider words them, the faithfulness check
decides whether the wording may be kept.

The LLM is asked for JSON with three fields: `summary`, `evidence` (names of the readings it relies
on) and `recommended_actions`. Urgency and the likely failure mode are facts, not the model's
opinion, and the evidence table (values, units, contributions, ranges) is filled in from the facts,
so a model can choose what to say but cannot change a number. An answer that is not valid JSON of
that shape, or that cites a reading outside the top attributions or quotes a number the facts do
not hold, gets one repair request listing exactly what was wrong; if the repaired answer still
fails, the explanation falls back to the template wording and says so (`fallback`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from llm import faithfulness, template
from llm.facts import Facts
from llm.providers import Completion, OnToken, OpenAICompatible, ProviderError, Sleep

PROMPT_VERSION = "explain-v1"

SYSTEM = """You explain machine failure predictions to maintenance technicians.
You are given FACTS computed by the prediction platform. Write for a technician on the shop floor:
short, concrete, no jargon about models or SHAP.
Rules:
- Use only the facts. Never invent a reading, a unit, a range, a time or any other number.
- Quote numbers exactly as they appear in the facts; write probabilities as whole percentages.
- Name only readings listed in top_features; they are the ones that drove the prediction.
- Urgency and the likely failure mode are given; do not change them.
Answer with one JSON object and nothing else:
{"summary": "2-4 sentences: what is predicted, how sure, which readings drove it",
 "evidence": ["names of the top_features you rely on, most important first"],
 "recommended_actions": ["1-4 concrete checks or actions, most urgent first"]}"""


def prompt_facts(facts: Facts) -> dict[str, Any]:
    """What the LLM sees: the facts, rounded as a person would quote them."""
    return {
        "failure_probability_percent": round(facts.probability * 100),
        "alert_threshold_percent": round(facts.threshold * 100),
        "predicted_failure": facts.predicted_failure,
        "urgency": facts.urgency,
        "likely_failure_mode": template.mode_label(facts.likely_failure_mode),
        "mode_probability_percent": {m: round(p * 100) for m, p in facts.mode_probabilities.items()},
        "top_features": [r.feature for r in facts.top],
        "readings": [{"feature": r.feature, "value": r.value, "unit": r.unit,
                      "normal_range": list(r.normal_range) if r.normal_range else None, "status": r.status,
                      "effect": "raises risk" if r.contribution > 0 else "lowers risk" if r.contribution < 0 else "none"}
                     for r in facts.readings],
    }


def messages_for(facts: Facts) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": "FACTS:\n" + json.dumps(prompt_facts(facts), indent=1)}]


def parse_answer(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """The answer as {summary, evidence_features, recommended_actions}, or an error saying what is wrong."""
    body = text.strip()
    if body.startswith("```"):  # some servers wrap JSON in a code fence despite json mode
        body = body.strip("`").removeprefix("json").strip()
    try:
        data = json.loads(body)
    except json.JSONDecodeError as e:
        return None, f"the answer is not valid JSON ({e.msg} at character {e.pos})"
    if not isinstance(data, dict):
        return None, "the answer must be one JSON object"
    summary, evidence, actions = data.get("summary"), data.get("evidence", []), data.get("recommended_actions", [])
    if not isinstance(summary, str) or not summary.strip():
        return None, '"summary" must be a non-empty string'
    if not isinstance(evidence, list) or not all(isinstance(e, str) for e in evidence):
        return None, '"evidence" must be a list of reading names (strings)'
    if not isinstance(actions, list) or not all(isinstance(a, str) and a.strip() for a in actions) or not actions:
        return None, '"recommended_actions" must be a non-empty list of strings'
    return {"summary": summary.strip(), "evidence_features": evidence,
            "recommended_actions": [a.strip() for a in actions][:6]}, None


def evidence_table(facts: Facts, features: list[str]) -> list[dict[str, Any]]:
    by_name = {r.feature: r for r in facts.readings}
    out = []
    for f in features:
        r = by_name.get(f)
        out.append({"feature": f, "value": r.value if r else None, "unit": r.unit if r else None,
                    "contribution": r.contribution if r else None,
                    "normal_range": list(r.normal_range) if r and r.normal_range else None,
                    "status": r.status if r else "unknown"})
    return out


def _finish(facts: Facts, answer: dict[str, Any], **extra: Any) -> dict[str, Any]:
    evidence = evidence_table(facts, answer["evidence_features"])
    out = {"summary": answer["summary"], "likely_failure_mode": facts.likely_failure_mode, "urgency": facts.urgency,
           "evidence": evidence, "recommended_actions": answer["recommended_actions"],
           "prompt_version": PROMPT_VERSION, **extra}
    out["faithfulness"] = faithfulness.check({**out, "evidence": answer["evidence_features"]}, facts)
    return out


def explain(facts: Facts, provider: OpenAICompatible | None, *, on_token: OnToken | None = None,
            sleep: Sleep = time.sleep, on_note: Callable[[str], None] | None = None,
            on_reset: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The explanation of `facts`, worded by `provider` (None: the template). Raises
    `llm.providers.ProviderError` when the provider cannot give a first answer after its retries.
    `on_reset(reason)` marks that the text streamed so far is void: `retry` (an attempt failed
    mid-stream), `repair` (a second answer follows) or `fallback` (the template wording is used)."""
    started = time.perf_counter()
    if provider is None:
        return _finish(facts, template.render(facts), provider="template", model=f"template/{PROMPT_VERSION}",
                       usage=None, latency_s=round(time.perf_counter() - started, 4), fallback=None, attempts=[])
    note = on_note or (lambda m: None)
    reset = on_reset or (lambda why: None)
    messages = messages_for(facts)
    calls: list[Completion] = []
    problems: list[str] = []
    for round_ in (1, 2):
        if round_ == 2:
            reset("repair")
            try:
                done = provider.complete(messages, on_token=on_token, sleep=sleep, on_reset=reset)
            except ProviderError as e:  # the answer exists but is unusable, and the repair call failed
                problems.append(f"repair request failed: {e}")
                note(f"LLM repair request failed: {e}")
                break
        else:
            done = provider.complete(messages, on_token=on_token, sleep=sleep, on_reset=reset)
        calls.append(done)
        answer, error = parse_answer(done.text)
        if answer is not None:
            result = _finish(facts, answer, provider=provider.name, model=done.model)
            bad = result["faithfulness"]["unsupported"]
            if not bad:
                return _with_calls(result, calls, started, fallback=None)
            error = "; ".join(f'{u["where"]}: "{u["claim"]}" {u["why"]}' for u in bad)
        problems.append(f"answer {round_}: {error}")
        note(f"LLM answer {round_} rejected: {error}")
        if round_ == 1:
            messages = [*messages, {"role": "assistant", "content": done.text},
                        {"role": "user", "content": "Your answer cannot be used: " + error
                         + ". Answer again with the same JSON object, using only the facts given."}]
    reset("fallback")
    result = _finish(facts, template.render(facts), provider="template", model=f"template/{PROMPT_VERSION}")
    return _with_calls(result, calls, started, fallback={
        "requested_provider": provider.name, "requested_model": calls[-1].model,
        "reason": "the LLM's answer was malformed or unfaithful after one repair; the template wording is used",
        "problems": problems})


def _with_calls(result: dict[str, Any], calls: list[Completion], started: float,
                fallback: dict[str, Any] | None) -> dict[str, Any]:
    usage: dict[str, int] = {}
    for c in calls:
        for k, v in (c.usage or {}).items():
            usage[k] = usage.get(k, 0) + v
    result.update(usage=usage or None, latency_s=round(time.perf_counter() - started, 4), fallback=fallback,
                  attempts=[{"seconds": round(c.seconds, 4), "http_attempts": c.attempts, "waits_s": c.waits,
                             "streamed": c.streamed} for c in calls])
    return result

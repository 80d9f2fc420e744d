"""The offline provider: deterministic wording of the facts, no model, no network.

It is the default when no LLM is configured and the fallback when an LLM's answer is malformed or
unfaithful after one repair. It cites only top-attributed readings and quotes only numbers from the
facts (values as given, probabilities as whole percentages), so it passes the faithfulness check by
construction, which a test asserts over every AI4I failure.
"""

from __future__ import annotations

from typing import Any

from llm.facts import Facts, Reading

# What common failure-mode labels mean and what to check first. No numbers here: every number an
# explanation quotes must come from the facts.
# What common failure-mode labels mean and what to check first. No numbers and no reading names
# here: every number an explanation quotes must come from the facts, and every reading it names must
# be among the top attributions, which a fixed text cannot know.
MODE_GUIDE: dict[str, tuple[str, list[str]]] = {
    "twf": ("tool wear failure", ["Inspect the tool and replace it if it is near the end of its life.",
                                  "Check the tool-change schedule against how fast this machine wears tools."]),
    "hdf": ("heat dissipation failure", ["Check cooling and ventilation: heat is not being carried away from "
                                         "the process fast enough.",
                                         "Check that the spindle runs fast enough to shed heat."]),
    "pwf": ("power failure", ["Check the drive: the power drawn is outside what the process normally runs at.",
                              "Inspect the spindle motor and its supply."]),
    "osf": ("overstrain failure", ["Reduce the load or change the tool: a worn tool under heavy load is "
                                   "being overstrained.", "Check the job's cutting parameters against the tool's rating."]),
    "rnf": ("random failure", ["No specific cause is known for this mode: run the general inspection checklist."]),
}


def mode_label(mode: str | None) -> str | None:
    if mode is None:
        return None
    guide = MODE_GUIDE.get(mode.lower())
    return f"{guide[0]} ({mode})" if guide else mode


def fmt_value(value: Any) -> str:
    """A number as a person writes it: plain decimals, no exponent, no trailing zeros."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        import numpy as np

        return np.format_float_positional(value, trim="-", precision=6, fractional=False) \
            if abs(value) >= 1 else np.format_float_positional(value, trim="-", precision=6)
    return str(value)


def pct(p: float) -> str:
    return f"{round(p * 100)}%"


def _reading(r: Reading) -> str:
    unit = f" {r.unit}" if r.unit else ""
    text = f"{r.feature} at {fmt_value(r.value)}{unit}"
    if r.status in ("above", "below") and r.normal_range:
        lo, hi = (fmt_value(x) for x in r.normal_range)
        text += f" ({r.status} its normal range of {lo} to {hi}{unit})"
    elif r.status == "within":
        text += " (within its normal range)"
    return text


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def render(facts: Facts) -> dict[str, Any]:
    top = facts.top
    raising = [r for r in top if r.contribution > 0]
    lowering = [r for r in top if r.contribution < 0]
    mode = mode_label(facts.likely_failure_mode)
    if facts.predicted_failure:
        head = (f"Failure expected: the failure score is {pct(facts.probability)}, at or above the alert threshold of "
                f"{pct(facts.threshold)}, so urgency is {facts.urgency}.")
    else:
        head = (f"No failure expected: the failure score is {pct(facts.probability)}, below the alert threshold of "
                f"{pct(facts.threshold)}, so urgency is {facts.urgency}.")
    parts = [head]
    if mode:
        parts.append(f"The most likely failure mode is {mode} at {pct(facts.mode_probabilities[facts.likely_failure_mode])}.")
    if raising:
        parts.append(f"The readings that raised the score most are {_join([_reading(r) for r in raising[:3]])}.")
    if lowering:
        parts.append(f"Lowering it: {_join([_reading(r) for r in lowering[:2]])}.")
    actions: list[str] = []
    if facts.predicted_failure or facts.urgency in ("medium", "high", "critical"):
        guide = MODE_GUIDE.get((facts.likely_failure_mode or "").lower())
        if guide:
            actions += guide[1]
        elif facts.likely_failure_mode:
            actions.append(f"Inspect the machine for the {facts.likely_failure_mode} failure mode.")
    for r in raising[:3]:
        if r.out_of_range and r.normal_range:
            lo, hi = (fmt_value(x) for x in r.normal_range)
            unit = f" {r.unit}" if r.unit else ""
            actions.append(f"Find out why {r.feature} reads {fmt_value(r.value)}{unit}, {r.status} its normal range "
                           f"of {lo} to {hi}{unit}.")
        elif facts.predicted_failure:
            unit = f" {r.unit}" if r.unit else ""
            why = "although it is within its normal range" if r.status == "within" else "among the readings"
            actions.append(f"Check {r.feature} ({fmt_value(r.value)}{unit}): it raises the failure score {why}.")
            break
    if not actions:
        actions.append("No action needed beyond routine maintenance.")
    if facts.urgency == "critical":
        actions.insert(0, "Stop the machine or take it out of production until it has been inspected.")
    return {"summary": " ".join(parts), "likely_failure_mode": facts.likely_failure_mode, "urgency": facts.urgency,
            "evidence_features": [r.feature for r in top], "recommended_actions": actions}

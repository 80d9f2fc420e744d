"""Faithfulness: does an explanation say only what the facts support?

Two kinds of claim are checked in every text field (summary, recommended actions):

* a cited feature (any reading's name, or its name without the unit suffix, e.g. "Torque" for
  "Torque [Nm]") must be among the facts' top attributions;
* a quoted number must match a number in the facts (a reading, a normal-range bound, the
  probability or threshold as a fraction or a percentage, a mode probability, a contribution), to
  the precision it is written with.

Every evidence entry must name a top feature. The score is supported claims / all claims (1.0 when
nothing is claimed); `unsupported` lists each failing claim with where it was found.
"""

from __future__ import annotations

import math
import re
from typing import Any

from llm.facts import Facts

NUMBER = re.compile(r"(?<![\w.])[-−]?\d+(?:[.,]\d+)*(?:\.\d+)?(?:\s?%)?")


def _plain_name(feature: str) -> str:
    return re.sub(r"\s*[\[(].*?[\])]\s*$", "", feature).strip()


def _aliases(facts: Facts) -> dict[str, str]:
    """Lower-cased names a text may use for each reading -> the reading's feature name."""
    out: dict[str, str] = {}
    for r in facts.readings:
        for alias in {r.feature, _plain_name(r.feature)}:
            if len(alias) >= 3:
                out[alias.lower()] = r.feature
    return out


def fact_numbers(facts: Facts) -> dict[str, list[float]]:
    """The numbers an explanation may quote, by how they may be written: `percent` (written with
    %: probabilities and the threshold × 100), `fraction` (the same written as 0.91: only with a
    decimal point) and `value` (readings and normal-range bounds, written as given)."""
    probs = [facts.probability, facts.threshold, *facts.mode_probabilities.values()]
    values: list[float] = []
    for r in facts.readings:
        if isinstance(r.value, int | float) and not isinstance(r.value, bool):
            values.append(float(r.value))
        if r.normal_range:
            values += [float(r.normal_range[0]), float(r.normal_range[1])]
    keep = lambda xs: [x for x in xs if math.isfinite(x)]  # noqa: E731
    return {"percent": keep([p * 100 for p in probs]), "fraction": keep(probs), "value": keep(values)}


def _number(text: str) -> tuple[float, int] | None:
    """The value and decimals of a quoted number: "1,284" is 1284, "0,5" is 0.5 (a decimal comma)."""
    raw = text.replace("−", "-").replace("%", "").replace(" ", "")
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", raw):
        raw = raw.replace(",", "")
    elif raw.count(",") == 1 and "." not in raw:
        raw = raw.replace(",", ".")
    try:
        q = float(raw)
    except ValueError:
        return None
    return q, len(raw.split(".")[1]) if "." in raw else 0


def _matches(text: str, numbers: dict[str, list[float]]) -> bool:
    parsed = _number(text)
    if parsed is None:
        return False
    q, decimals = parsed
    tol = 0.5 * 10 ** (-decimals) + 1e-9
    if text.rstrip().endswith("%"):
        pool = numbers["percent"]
    else:
        pool = numbers["value"] + (numbers["fraction"] if decimals > 0 else [])
    return any(abs(q - n) <= tol for n in pool)


def cited_features(text: str, facts: Facts) -> tuple[list[str], str]:
    """The readings a text names, and the text with those names blanked out (a name such as
    "Sensor 12" or "OSF2" is not a quoted number)."""
    low = text.lower()
    aliases = _aliases(facts)
    found: list[str] = []
    for alias in sorted(aliases, key=len, reverse=True):  # "Process temperature" before "temperature"
        pattern = r"(?<![\w])" + re.escape(alias) + r"(?![\w])"
        if re.search(pattern, low):
            if aliases[alias] not in found:
                found.append(aliases[alias])
            low = re.sub(pattern, " ", low)
    for m in sorted(facts.mode_probabilities, key=len, reverse=True):
        low = re.sub(r"(?<![\w])" + re.escape(m.lower()) + r"(?![\w])", " ", low)
    for unit in {r.unit.lower() for r in facts.readings if r.unit and re.search(r"\d", r.unit)}:
        low = low.replace(unit, " ")  # "m/s2" is a unit, not a quoted 2
    return found, low


def check(explanation: dict[str, Any], facts: Facts) -> dict[str, Any]:
    top = {r.feature for r in facts.top}
    numbers = fact_numbers(facts)
    unsupported: list[dict[str, str]] = []
    claims = 0
    texts = [("summary", explanation.get("summary") or "")]
    texts += [(f"recommended_actions[{i}]", a) for i, a in enumerate(explanation.get("recommended_actions") or [])]
    for where, text in texts:
        features, scrubbed = cited_features(text, facts)
        for feature in features:
            claims += 1
            if feature not in top:
                unsupported.append({"kind": "feature", "claim": feature, "where": where,
                                    "why": "not among the top attributions"})
        for m in NUMBER.finditer(scrubbed):
            claims += 1
            if not _matches(m.group(0), numbers):
                unsupported.append({"kind": "number", "claim": m.group(0).strip(), "where": where,
                                    "why": "matches no reading, range, probability or contribution"})
    for i, e in enumerate(explanation.get("evidence") or []):
        claims += 1
        feature = e.get("feature") if isinstance(e, dict) else e
        if feature not in top:
            unsupported.append({"kind": "evidence", "claim": str(feature), "where": f"evidence[{i}]",
                                "why": "not among the top attributions"})
    score = 1.0 if claims == 0 else round((claims - len(unsupported)) / claims, 4)
    return {"score": score, "claims": claims, "unsupported": unsupported, "top_features": sorted(top)}

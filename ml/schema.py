"""What each column of a dataset is: the schema users give, correct, and the platform infers.

Roles: `target` (binary failure label), `failure_modes` (per-mode label columns), `unit` (asset
id), `time` (cycle or timestamp), `rul` (given remaining useful life), `categorical`, `ignore`
(ids and anything not to learn from), `derived` (named expressions over columns), plus per-column
metadata (`unit`, `normal_range`, `description`). Columns with no role are numeric features.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, field_validator

from ml.expressions import Expression, ExpressionError

if TYPE_CHECKING:
    from ml.profile import TableSummary

_UNIT_IN_NAME = re.compile(r"[\[(]\s*([^\])]{1,20}?)\s*[\])]\s*$")
_ID_NAME = re.compile(r"(^|[\s_-])(id|uid|udi|uuid|serial|product[\s_-]?id|record)$", re.IGNORECASE)
_TARGET_NAME = re.compile(r"(machine[\s_-]?failure|^failure$|^failed$|^target$|^label$|^fault$|^breakdown$)",
                          re.IGNORECASE)
_UNIT_ROLE_NAME = re.compile(r"^(unit|unit[\s_-]?(id|number|nr)|engine|engine[\s_-]?id|asset|asset[\s_-]?id|machine[\s_-]?id)$",
                             re.IGNORECASE)
_TIME_ROLE_NAME = re.compile(r"^(cycle|cycles|time|timestamp|time[\s_-]?(in[\s_-])?cycles|datetime|date)$",
                             re.IGNORECASE)
_RUL_NAME = re.compile(r"^(rul|remaining[\s_-]?useful[\s_-]?life)$", re.IGNORECASE)
MAX_CATEGORIES = 50


class SchemaError(ValueError):
    """A schema that doesn't fit the data; `field` names the schema entry to fix."""

    def __init__(self, field: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.details = field, message, details or {}


class ColumnMeta(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    unit: str | None = Field(default=None, max_length=40)
    normal_range: tuple[StrictFloat, StrictFloat] | None = None  # numbers only (not "1", not true)
    description: str | None = Field(default=None, max_length=500)

    @field_validator("normal_range")
    @classmethod
    def _ordered(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and v[0] > v[1]:
            raise ValueError("normal_range must be [low, high] with low <= high")
        return v


class DatasetSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: str | None = None
    failure_modes: list[str] = Field(default_factory=list)
    unit: str | None = None
    time: str | None = None
    rul: str | None = None
    categorical: list[str] = Field(default_factory=list)
    ignore: list[str] = Field(default_factory=list)
    derived: dict[str, str] = Field(default_factory=dict, description="name -> expression over `columns`")
    columns: dict[str, ColumnMeta] = Field(default_factory=dict)

    def label_columns(self) -> list[str]:
        return [c for c in [self.target, *self.failure_modes, self.rul] if c]

    def feature_columns(self, all_columns: list[str]) -> list[str]:
        """Raw columns a model may learn from: everything but labels, ids, unit and time."""
        excluded = set(self.label_columns()) | set(self.ignore) | {c for c in (self.unit, self.time) if c}
        return [c for c in all_columns if c not in excluded]


def unit_from_name(name: str) -> str | None:
    m = _UNIT_IN_NAME.search(name)
    return m.group(1) if m else None


def _summary(data: pd.DataFrame | TableSummary) -> TableSummary:
    from ml.profile import summarize_frame

    return summarize_frame(data) if isinstance(data, pd.DataFrame) else data


def infer_schema(data: pd.DataFrame | TableSummary, given: DatasetSchema | None = None) -> DatasetSchema:
    """Fill in roles the user did not give, where that is safe; never override what was given.
    `data` is a frame or the streamed `TableSummary` of a file (the same answers either way)."""
    t = _summary(data)
    schema = given.model_copy(deep=True) if given else DatasetSchema()
    cols = list(t.columns)
    claimed = set(schema.label_columns()) | set(schema.ignore) | set(schema.categorical) | \
        {c for c in (schema.unit, schema.time) if c}

    if schema.target is None:
        named = [c for c in cols if c not in claimed and _TARGET_NAME.search(c) and t.is_binary(c)]
        if len(named) == 1:
            schema.target = named[0]
            claimed.add(named[0])
    if schema.target and not schema.failure_modes:
        rows = max(t.rows, 1)
        positives = t.ones(schema.target)
        candidates = [c for c in cols if c not in claimed and t.is_binary(c) and c.isupper() and len(c) <= 6]
        joint = t.joint_ones(schema.target, [c for c in candidates if t.ones(c)])
        for c in candidates:
            ones = t.ones(c)
            # A mode label fires mostly together with the overall label, or is at least as rare.
            # (AI4I's RNF fires mostly *without* "Machine failure": overlap alone would miss it and
            # leave a label among the features.) Users correct the inferred schema with PATCH.
            if ones and (joint[c] >= 0.5 * ones or ones / rows <= 1.5 * positives / rows):
                schema.failure_modes.append(c)
                claimed.add(c)
    for attr, pattern in (("unit", _UNIT_ROLE_NAME), ("time", _TIME_ROLE_NAME), ("rul", _RUL_NAME)):
        if getattr(schema, attr) is None:
            named = [c for c in cols if c not in claimed and pattern.search(c.strip())]
            if len(named) == 1:
                setattr(schema, attr, named[0])
                claimed.add(named[0])
    for c in cols:
        if c in claimed:
            continue
        cs = t.col[c]
        text = cs.dtype == "object"
        # Past the distinct-value cap a text column is neither all-unique-known nor a category:
        # either way (an id or free text) it is ignored, as it would be with the exact count.
        if _ID_NAME.search(c.strip()) or (text and cs.distinct_exact and cs.distinct == t.rows - cs.missing
                                          and cs.missing == 0 and t.rows > 20):
            schema.ignore.append(c)
        elif text or cs.dtype == "bool":
            if cs.distinct_exact and cs.distinct <= MAX_CATEGORIES:
                schema.categorical.append(c)
            else:
                schema.ignore.append(c)  # free text: nothing to learn from as is
    for c in cols:
        unit = unit_from_name(c)
        if unit and (c not in schema.columns or schema.columns[c].unit is None):
            meta = schema.columns.get(c, ColumnMeta())
            schema.columns[c] = meta.model_copy(update={"unit": unit})
    _infer_normal_ranges(t, schema)
    return schema


def _significant(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def _infer_normal_ranges(t: TableSummary, schema: DatasetSchema) -> None:
    """A starting `normal_range` for each numeric feature without one: the 1st to 99th percentile
    of the rows without a failure (all rows when there is no target), to 4 significant digits, from
    the summary's row sample (every row unless the dataset is larger than the sample).
    Explanations compare readings with it; users replace it with the documented range."""
    healthy = None
    if schema.target and schema.target in t.sample:
        y = t.sample[schema.target].to_numpy()
        healthy = np.nan_to_num(y, nan=0.0) != 1
    for c in schema.feature_columns(list(t.columns)):
        if c in schema.categorical or (c in schema.columns and schema.columns[c].normal_range is not None):
            continue
        cs = t.col[c]
        if not cs.numeric or c not in t.sample:
            continue
        v = t.sample[c].to_numpy()
        if healthy is not None:
            v = v[healthy]
        if np.count_nonzero(~np.isnan(v)) < 20:
            continue
        lo, hi = (float(x) for x in pd.Series(v).quantile([0.01, 0.99]))
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo == hi:
            continue
        meta = schema.columns.get(c, ColumnMeta())
        schema.columns[c] = meta.model_copy(update={"normal_range": (_significant(lo), _significant(hi))})


def validate_schema(data: pd.DataFrame | TableSummary, schema: DatasetSchema) -> None:
    """Raise `SchemaError` naming the schema field when the schema and the data disagree."""
    t = _summary(data)
    cols = set(t.columns)
    single = {"target": schema.target, "unit": schema.unit, "time": schema.time, "rul": schema.rul}
    for role, col in single.items():
        if col is not None and col not in cols:
            raise SchemaError(role, f"column {col!r} is not in the file", {"available": sorted(cols)[:200]})
    for role in ("failure_modes", "categorical", "ignore"):
        missing = [c for c in getattr(schema, role) if c not in cols]
        if missing:
            raise SchemaError(role, f"column(s) not in the file: {', '.join(missing)}", {"missing": missing})
    for c in schema.columns:
        if c not in cols and c not in schema.derived:
            raise SchemaError(f"columns.{c}", f"metadata for column {c!r}, which is not in the file")
    if schema.target is not None and not t.is_binary(schema.target):
        values = t.preview(schema.target)
        raise SchemaError("target", f"target column {schema.target!r} must be binary (0/1); found values "
                          f"{', '.join(values)}", {"values": values})
    for c in schema.failure_modes:
        if not t.is_binary(c):
            raise SchemaError("failure_modes", f"failure-mode column {c!r} must be binary (0/1)")
    if schema.rul is not None and t.col[schema.rul].dtype == "object":
        raise SchemaError("rul", f"RUL column {schema.rul!r} must be numeric")
    roles: dict[str, str] = {}  # each column has at most one role (`categorical` is a type, not a role)
    for role, names in (("target", [schema.target]), ("failure_modes", schema.failure_modes),
                        ("unit", [schema.unit]), ("time", [schema.time]), ("rul", [schema.rul]),
                        ("ignore", schema.ignore)):
        for n in names:
            if n is None:
                continue
            if n in roles:
                raise SchemaError(role, f"column {n!r} already has role {roles[n]!r}; give it one role")
            roles[n] = role
    for name, source in schema.derived.items():
        if name in cols:
            raise SchemaError(f"derived.{name}", f"derived feature {name!r} has the name of an existing column")
        try:
            Expression(source, list(t.columns))
        except ExpressionError as exc:
            raise SchemaError(f"derived.{name}", exc.message, {"expression": source}) from exc
    features = schema.feature_columns(list(t.columns))
    all_nan = [c for c in features if t.col[c].missing == t.rows]
    if all_nan:
        raise SchemaError("ignore", f"feature column(s) with no values at all: {', '.join(all_nan)}; "
                          "add them to `ignore` or fix the file", {"columns": all_nan})
    if not features and not schema.derived:
        raise SchemaError("ignore", "no feature columns left: every column is a label, id or ignored")


class SchemaLimitError(SchemaError):
    """A schema over a limit or with text that can't be stored; `status` is 413 or 422."""

    def __init__(self, field: str, message: str, details: dict[str, Any] | None = None, status: int = 422) -> None:
        super().__init__(field, message, details)
        self.status = status


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def check_schema_text(raw: Any, *, max_field_chars: int, max_derived: int, path: str = "") -> None:
    """Refuse control characters and over-long strings anywhere in a schema (keys and values: column
    names, descriptions, units, expressions) and more derived features than DATASET_MAX_DERIVED.
    `raw` is the decoded JSON (or a model dump); `path` prefixes the field named in the error."""
    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                at = f"{where}.{k}" if where else str(k)
                if isinstance(k, str):
                    _check_text(k, at, max_field_chars)
                walk(v, at)
        elif isinstance(node, list | tuple):
            for i, v in enumerate(node):
                walk(v, f"{where}[{i}]")
        elif isinstance(node, str):
            _check_text(node, where, max_field_chars)

    def _check_text(text: str, where: str, limit: int) -> None:
        bad = sorted({f"\\x{ord(ch):02x}" for ch in _CONTROL.findall(text)})
        if bad:
            raise SchemaLimitError(where, f"contains control character(s) {', '.join(bad)}",
                                   {"characters": bad})
        if len(text) > limit:
            raise SchemaLimitError(where, f"is {len(text):,} characters long; MAX_FIELD_CHARS allows {limit:,}",
                                   {"setting": "MAX_FIELD_CHARS", "limit": limit, "value": len(text)})

    if isinstance(raw, dict):
        derived = raw.get("derived")
        if isinstance(derived, dict) and len(derived) > max_derived:
            raise SchemaLimitError("derived", f"{len(derived)} derived features; DATASET_MAX_DERIVED allows "
                                   f"{max_derived}", {"setting": "DATASET_MAX_DERIVED", "limit": max_derived,
                                                      "value": len(derived)}, status=413)
    walk(raw, path)

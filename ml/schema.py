"""What each column of a dataset is: the schema users give, correct, and the platform infers.

Roles: `target` (binary failure label), `failure_modes` (per-mode label columns), `unit` (asset
id), `time` (cycle or timestamp), `rul` (given remaining useful life), `categorical`, `ignore`
(ids and anything not to learn from), `derived` (named expressions over columns), plus per-column
metadata (`unit`, `normal_range`, `description`). Columns with no role are numeric features.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, field_validator

from ml.expressions import Expression, ExpressionError

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


def _is_binary(s: pd.Series) -> bool:
    values = set(pd.unique(s.dropna()))
    return bool(values) and values <= {0, 1}


def infer_schema(df: pd.DataFrame, given: DatasetSchema | None = None) -> DatasetSchema:
    """Fill in roles the user did not give, where that is safe; never override what was given."""
    schema = given.model_copy(deep=True) if given else DatasetSchema()
    cols = list(df.columns)
    claimed = set(schema.label_columns()) | set(schema.ignore) | set(schema.categorical) | \
        {c for c in (schema.unit, schema.time) if c}

    if schema.target is None:
        named = [c for c in cols if c not in claimed and _TARGET_NAME.search(c) and _is_binary(df[c])]
        if len(named) == 1:
            schema.target = named[0]
            claimed.add(named[0])
    if schema.target and not schema.failure_modes:
        positives = df[schema.target].fillna(0).astype(bool)
        for c in cols:
            if c in claimed or not _is_binary(df[c]) or not (c.isupper() and len(c) <= 6):
                continue
            mode = df[c].fillna(0).astype(bool)
            # A mode label fires mostly together with the overall label, or is at least as rare.
            # (AI4I's RNF fires mostly *without* "Machine failure": overlap alone would miss it and
            # leave a label among the features.) Users correct the inferred schema with PATCH.
            if mode.any() and ((mode & positives).sum() >= 0.5 * mode.sum()
                               or mode.mean() <= 1.5 * positives.mean()):
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
        s = df[c]
        if _ID_NAME.search(c.strip()) or (s.dtype == object and s.nunique(dropna=True) == len(s) and len(s) > 20):
            schema.ignore.append(c)
        elif s.dtype == object or pd.api.types.is_bool_dtype(s):
            if s.nunique(dropna=True) <= MAX_CATEGORIES:
                schema.categorical.append(c)
            else:
                schema.ignore.append(c)  # free text: nothing to learn from as is
    for c in cols:
        unit = unit_from_name(c)
        if unit and (c not in schema.columns or schema.columns[c].unit is None):
            meta = schema.columns.get(c, ColumnMeta())
            schema.columns[c] = meta.model_copy(update={"unit": unit})
    _infer_normal_ranges(df, schema)
    return schema


def _significant(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def _infer_normal_ranges(df: pd.DataFrame, schema: DatasetSchema) -> None:
    """A starting `normal_range` for each numeric feature without one: the 1st to 99th percentile
    of the rows without a failure (all rows when there is no target), to 4 significant digits.
    Explanations compare readings with it; users replace it with the documented range."""
    healthy = df
    if schema.target and schema.target in df:
        healthy = df[pd.to_numeric(df[schema.target], errors="coerce").fillna(0) != 1]
    for c in schema.feature_columns(list(df.columns)):
        if c in schema.categorical or (c in schema.columns and schema.columns[c].normal_range is not None):
            continue
        s = healthy[c]
        if not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s) or s.notna().sum() < 20:
            continue
        lo, hi = (float(v) for v in s.quantile([0.01, 0.99]))
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo == hi:
            continue
        meta = schema.columns.get(c, ColumnMeta())
        schema.columns[c] = meta.model_copy(update={"normal_range": (_significant(lo), _significant(hi))})


def validate_schema(df: pd.DataFrame, schema: DatasetSchema) -> None:
    """Raise `SchemaError` naming the schema field when the schema and the data disagree."""
    cols = set(df.columns)
    single = {"target": schema.target, "unit": schema.unit, "time": schema.time, "rul": schema.rul}
    for role, col in single.items():
        if col is not None and col not in cols:
            raise SchemaError(role, f"column {col!r} is not in the file", {"available": sorted(cols)})
    for role in ("failure_modes", "categorical", "ignore"):
        missing = [c for c in getattr(schema, role) if c not in cols]
        if missing:
            raise SchemaError(role, f"column(s) not in the file: {', '.join(missing)}", {"missing": missing})
    for c in schema.columns:
        if c not in cols and c not in schema.derived:
            raise SchemaError(f"columns.{c}", f"metadata for column {c!r}, which is not in the file")
    if schema.target is not None and not _is_binary(df[schema.target]):
        values = sorted(map(str, pd.unique(df[schema.target].dropna())))[:10]
        raise SchemaError("target", f"target column {schema.target!r} must be binary (0/1); found values "
                          f"{', '.join(values)}", {"values": values})
    for c in schema.failure_modes:
        if not _is_binary(df[c]):
            raise SchemaError("failure_modes", f"failure-mode column {c!r} must be binary (0/1)")
    if schema.rul is not None and not pd.api.types.is_numeric_dtype(df[schema.rul]):
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
            Expression(source, list(df.columns))
        except ExpressionError as exc:
            raise SchemaError(f"derived.{name}", exc.message, {"expression": source}) from exc
    features = schema.feature_columns(list(df.columns))
    all_nan = [c for c in features if df[c].isna().all()]
    if all_nan:
        raise SchemaError("ignore", f"feature column(s) with no values at all: {', '.join(all_nan)}; "
                          "add them to `ignore` or fix the file", {"columns": all_nan})
    if not features and not schema.derived:
        raise SchemaError("ignore", "no feature columns left: every column is a label, id or ignored")

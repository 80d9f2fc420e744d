"""Online scoring input: JSON rows turned into the frame a failure or RUL model reads.

The rows come from a client, so their cost is bounded before anything is built: at most
`max_rows` rows and `max_keys` distinct keys over all of them, counted in one pass that stops at
the first breach; every value must be a JSON scalar (string, number, boolean or null). The frame
then holds the model's own input columns only, one list per column, so its size is rows × the
model's columns whatever keys were sent (building it from the union of the keys sent, as
`DataFrame.from_records` does, made one row of 50,000 keys plus 9,999 empty rows cost 19.5 GB).
Keys the model does not read are reported back (at most `MAX_LISTED_KEYS` by name), not stored in
the frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ml.batch import numeric_columns, required_columns
from ml.rul import RulModel, time_values
from ml.training import FailureModel

MAX_LISTED_KEYS = 20
_SCALARS = (str, int, float, bool, type(None))


class RowsInputError(ValueError):
    """Rows a model can't score, or more than a limit allows; `code` and `details` say what."""

    def __init__(self, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details


@dataclass
class RowsFrame:
    frame: pd.DataFrame
    ignored_keys: list[str] = field(default_factory=list)  # the first MAX_LISTED_KEYS, sorted
    ignored_count: int = 0

    def warnings(self) -> list[str]:
        if not self.ignored_count:
            return []
        more = self.ignored_count - len(self.ignored_keys)
        return [f"ignored column(s) not used by the model: {', '.join(self.ignored_keys)}"
                + (f" (and {more:,} more)" if more > 0 else "")]


def limit_error(setting: str, limit: int, value: int, what: str, where: str) -> RowsInputError:
    return RowsInputError("limit_exceeded", f"{value:,} {what}; {setting} allows at most {limit:,}",
                          {"field": where, "setting": setting, "limit": limit, "value": value})


def check_row_count(rows: int, max_rows: int) -> None:
    if rows > max_rows:
        raise limit_error("MAX_PREDICT_ROWS", max_rows, rows, "rows in one request", "body.rows")


def scan_rows(rows: list[Any], needed: set[str], *, max_rows: int, max_keys: int) -> list[str]:
    """One pass over the rows, before anything is built: rows are JSON objects of scalars, at most
    `max_rows` of them and `max_keys` distinct keys over all. Returns the keys not in `needed`
    (every one of them, so at most `max_keys`)."""
    check_row_count(len(rows), max_rows)
    seen: set[str] = set()
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RowsInputError("invalid_request", f"row {i} is not a JSON object", {"field": f"body.rows[{i}]"})
        new = row.keys() - seen
        if new:
            seen |= new
            if len(seen) > max_keys:  # stop counting here: the rest of the request is not looked at
                raise limit_error("MAX_PREDICT_KEYS", max_keys, len(seen),
                                  f"distinct keys by row {i} (counting stopped there)", "body.rows")
        for k, v in row.items():
            if not isinstance(v, _SCALARS):
                raise RowsInputError("invalid_feature", f"row {i} key {k!r}: values must be a string, number, "
                                     f"boolean or null, not a JSON {'array' if isinstance(v, list) else 'object'}",
                                     {"field": f"body.rows[{i}].{k}", "row": i, "key": k})
    return sorted(seen - needed)


def rows_frame(model: FailureModel | RulModel, rows: list[Any], *, max_rows: int, max_keys: int) -> RowsFrame:
    """The frame `model` scores from JSON `rows` (its input columns only), after the checks above."""
    needed = required_columns(model)
    ignored = scan_rows(rows, set(needed), max_rows=max_rows, max_keys=max_keys)
    df = pd.DataFrame({c: [row.get(c) for row in rows] for c in needed}, index=pd.RangeIndex(len(rows)))
    missing = [c for c in needed if df[c].isna().all()]
    if missing:
        raise RowsInputError("missing_features", f"rows lack feature(s): {', '.join(missing)}",
                             {"field": "body.rows", "missing": missing, "required": needed})
    for c in numeric_columns(model):
        if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]):
            continue  # JSON numbers: nothing to check
        values = pd.to_numeric(df[c], errors="coerce")
        bad = df.index[values.isna() & df[c].notna()].tolist()
        if bad:
            raise RowsInputError("invalid_feature", f"feature {c!r} must be a number; row {bad[0]} has "
                                 f"{df[c].iloc[bad[0]]!r}", {"field": f"body.rows[{bad[0]}].{c}", "rows": bad[:20]})
        df[c] = values
    if isinstance(model, RulModel):
        for c in (model.builder.schema.unit, model.builder.schema.time):
            gaps = df.index[df[c].isna()].tolist()
            if gaps:
                raise RowsInputError("missing_features", f"every row needs {c!r} (RUL is predicted per unit from "
                                     f"its rows in time order); row {gaps[0]} has none",
                                     {"field": f"body.rows[{gaps[0]}].{c}"})
        try:
            time_values(df[model.builder.schema.time])
        except ValueError as exc:
            raise RowsInputError("invalid_feature", str(exc),
                                 {"field": f"body.rows[].{model.builder.schema.time}"}) from None
    return RowsFrame(df, ignored_keys=ignored[:MAX_LISTED_KEYS], ignored_count=len(ignored))

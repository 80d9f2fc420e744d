"""CSV downloads that are safe to open in a spreadsheet (OWASP "CSV injection").

A text cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is read by Excel,
LibreOffice and Google Sheets as a formula (`=HYPERLINK(...)`, `@SUM(...)`, `-2+3`); such a cell is
written with a leading `'`, which spreadsheets show as text and do not evaluate. Numbers are never
touched: numeric columns are written as they are, and a text cell that is itself a plain number
(`-1.5`, `+3`, `-2e-3`, `-inf`) is left alone as well, so values round-trip as numbers.
"""

from __future__ import annotations

import re

import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|infinity|nan)$", re.IGNORECASE)


def escape_cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(FORMULA_START) and not _NUMBER.match(value):
        return "'" + value
    return value


def escape_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of `df` with formula-like text cells prefixed by `'` (text columns only)."""
    out = df
    for c in df.columns:
        s = df[c]
        if s.dtype != object and not isinstance(s.dtype, pd.StringDtype):
            continue
        text = s.map(lambda v: isinstance(v, str) and v.startswith(FORMULA_START))
        if not text.any():
            continue
        if out is df:
            out = df.copy()
        out[c] = s.map(escape_cell)
    return out

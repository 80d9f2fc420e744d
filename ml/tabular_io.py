"""Reading users' sensor files: CSV in the shapes plant historians export, or Parquet.

Accepted without fuss: a UTF-8 BOM, UTF-16 with BOM, Windows-1252 text, `,` `;` tab or `|`
delimiters (sniffed), quoted headers, Windows line endings, and decimal commas where the delimiter
makes them unambiguous (`;` or tab). Refused with a precise `TableError`: empty files, a header
with no rows, duplicated or blank column names, text in no supported encoding, ragged rows.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

DELIMITERS = (",", ";", "\t", "|")
ENCODINGS = ("utf-8", "cp1252")  # BOMs (UTF-8, UTF-16) are recognised before these are tried
SNIFF_BYTES = 256 * 1024
_DECIMAL_COMMA = re.compile(r"^\s*-?\d+,\d+\s*$")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


class TableError(ValueError):
    """Input that can't become a table; `code` and `details` say what and where."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details or {}


@dataclass
class TableFormat:
    """How a file was read, so it can be reported back and read again the same way."""

    kind: str  # csv | parquet
    encoding: str | None = None
    delimiter: str | None = None
    decimal: str = "."
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind == "csv":
            out.update(encoding=self.encoding, delimiter=_DELIMITER_NAMES.get(self.delimiter or "", self.delimiter),
                       decimal=self.decimal)
        if self.notes:
            out["notes"] = self.notes
        return out


def read_table(path: Path) -> tuple[pd.DataFrame, TableFormat]:
    """Read a CSV or Parquet file into a DataFrame with the user's column names kept exactly."""
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
    if not head.strip():
        raise TableError("empty_file", "the file is empty", {"bytes": len(head)})
    if head[:4] == b"PAR1":
        return _read_parquet(path)
    encoding, text_head = _detect_encoding(head)
    fmt = TableFormat(kind="csv", encoding=encoding)
    lines = [ln for ln in text_head.splitlines() if ln.strip()]
    if len(head) == SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut mid-way
    fmt.delimiter = _sniff_delimiter(lines)
    header = next(csv.reader([lines[0]], delimiter=fmt.delimiter))
    _check_header(header)
    if len(lines) < 2:
        raise TableError("no_rows", "the file has a header but no data rows", {"columns": header})
    sample_rows = list(csv.reader(lines[1:200], delimiter=fmt.delimiter))
    if fmt.delimiter in (";", "\t") and _has_decimal_commas(sample_rows):
        fmt.decimal = ","
        fmt.notes.append("decimal commas read as decimal points")
    try:
        df = pd.read_csv(path, sep=fmt.delimiter, decimal=fmt.decimal, encoding=_pandas_encoding(encoding),
                         dtype_backend="numpy_nullable",
                         skip_blank_lines=True, on_bad_lines="error", low_memory=False)
    except pd.errors.ParserError as exc:
        raise TableError("ragged_rows", f"rows have a different number of fields than the header: {exc}",
                         {"delimiter": _DELIMITER_NAMES.get(fmt.delimiter, fmt.delimiter)}) from exc
    except UnicodeDecodeError as exc:
        raise TableError("undecodable", f"the file is not valid {encoding} past its first {SNIFF_BYTES} bytes "
                         f"(byte {exc.start}); re-export it as UTF-8", {"encoding": encoding}) from exc
    if df.empty:
        raise TableError("no_rows", "the file has a header but no data rows", {"columns": header})
    df.columns = [str(c) for c in header]  # pandas renames duplicates/blank ones; ours are checked unique
    return _to_plain_dtypes(df), fmt


def _read_parquet(path: Path) -> tuple[pd.DataFrame, TableFormat]:
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a bad file
        raise TableError("bad_parquet", f"not a readable Parquet file: {exc}") from exc
    _check_header([str(c) for c in df.columns])
    if df.empty:
        raise TableError("no_rows", "the Parquet file has no rows", {"columns": [str(c) for c in df.columns]})
    df.columns = [str(c) for c in df.columns]
    return df.reset_index(drop=True), TableFormat(kind="parquet")


def _detect_encoding(head: bytes) -> tuple[str, str]:
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig", head.decode("utf-8-sig", errors="ignore")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16", head.decode("utf-16", errors="ignore")
    for enc in ENCODINGS:
        try:
            # A multi-byte character may be cut at the end of the sniffed block.
            return enc, head.decode(enc) if len(head) < SNIFF_BYTES else head[:-4].decode(enc)
        except UnicodeDecodeError:
            continue
    tried = ["utf-8 (with or without BOM)", "utf-16 (with BOM)", *ENCODINGS[1:]]
    raise TableError("undecodable", f"the file is not text in any supported encoding (tried {', '.join(tried)}); "
                     "export it as UTF-8 CSV or Parquet", {"encodings_tried": tried})


def _pandas_encoding(encoding: str) -> str:
    return {"utf-8": "utf-8-sig"}.get(encoding, encoding)


def _sniff_delimiter(lines: list[str]) -> str:
    """The delimiter that splits the header into most fields and rows consistently with it."""
    best, best_score = None, (0, 0)
    for d in DELIMITERS:
        rows = list(csv.reader(lines[:50], delimiter=d))
        width = len(rows[0])
        if width < 2:
            continue
        consistent = sum(1 for r in rows[1:] if len(r) == width)
        score = (consistent, width)
        if score > best_score:
            best, best_score = d, score
    if best is None:
        if len(lines) and len(next(csv.reader([lines[0]]))) == 1:
            return ","  # a single-column file
        raise TableError("no_delimiter", "could not tell how columns are separated (tried comma, semicolon, tab, pipe)")
    return best


def _check_header(header: list[str]) -> None:
    blank = [i for i, h in enumerate(header) if not str(h).strip()]
    if blank:
        raise TableError("blank_column_name", f"column {blank[0] + 1} has no name; every column needs one",
                         {"positions": [i + 1 for i in blank]})
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise TableError("duplicate_columns", f"column names must be unique; repeated: {', '.join(dupes)}",
                         {"columns": dupes})


def _has_decimal_commas(rows: list[list[str]]) -> bool:
    return any(_DECIMAL_COMMA.match(cell) for row in rows for cell in row)


def _to_plain_dtypes(df: pd.DataFrame) -> pd.DataFrame:
    """numpy dtypes (float64/int64/bool/object) whatever the reader produced."""
    out = {}
    for col in df.columns:
        s = df[col]
        if pd.api.types.is_bool_dtype(s):
            out[col] = s.astype("boolean").astype(object) if s.isna().any() else s.astype(bool)
        elif pd.api.types.is_integer_dtype(s):
            out[col] = s.astype("float64") if s.isna().any() else s.astype("int64")
        elif pd.api.types.is_float_dtype(s):
            out[col] = s.astype("float64")
        else:
            out[col] = s.astype(object).where(s.notna(), None)
    return pd.DataFrame(out, index=pd.RangeIndex(len(df)))

"""Reading users' sensor files: CSV in the shapes plant historians export, or Parquet, in bounded chunks.

Accepted without fuss: a UTF-8 BOM, UTF-16 with BOM, Windows-1252 text, `,` `;` tab or `|`
delimiters (sniffed), quoted headers, Windows line endings, and decimal commas where the delimiter
makes them unambiguous (`;` or tab). Refused with a precise `TableError`: empty files, a header
with no rows, duplicated or blank column names, text in no supported encoding, ragged rows, control
characters in column names, NUL characters in cells, and anything over the `TableLimits` (columns,
cells, characters per field), each checked before the step it would make expensive.

A file is never read whole. `open_table` checks the header and scans the file once (CSV: raw bytes,
then pandas chunks to settle each column's type; Parquet: its metadata, then record batches), and
`TableSource.batches()` then yields DataFrames of at most `chunk_rows` rows with the same numpy
dtypes in every chunk (float64/int64/bool/object, as a whole-file read would give them).
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DELIMITERS = (",", ";", "\t", "|")
ENCODINGS = ("utf-8", "cp1252")  # BOMs (UTF-8, UTF-16) are recognised before these are tried
SNIFF_BYTES = 256 * 1024
SCAN_BLOCK = 4 * 1024 * 1024
CHUNK_CELLS = 1_000_000  # cells per chunk: what one chunk of a wide or a long file may cost
_DECIMAL_COMMA = re.compile(r"^\s*-?\d+,\d+\s*$")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class TableError(ValueError):
    """Input that can't become a table; `code` and `details` say what and where, `status` is the
    HTTP status it maps to (422 malformed or too long a field, 413 too big: columns, cells)."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None, status: int = 422) -> None:
        super().__init__(message)
        self.code, self.message, self.details, self.status = code, message, details or {}, status


@dataclass(frozen=True)
class TableLimits:
    """What one file may cost. Defaults match the settings' defaults; the service passes the settings."""

    max_columns: int = 2_000
    max_cells: int = 100_000_000
    max_field_chars: int = 10_000

    def columns_error(self, seen: int, exact: bool = True) -> TableError:
        return TableError("too_many_columns", f"the file has {'' if exact else 'at least '}{seen:,} columns; "
                          f"DATASET_MAX_COLUMNS allows {self.max_columns:,}",
                          {"setting": "DATASET_MAX_COLUMNS", "limit": self.max_columns, "value": seen}, status=413)

    def cells_error(self, seen: int, rows: int, columns: int, exact: bool = True) -> TableError:
        return TableError("too_many_cells", f"the file has {'' if exact else 'more than '}{seen:,} cells "
                          f"({rows:,} rows x {columns:,} columns{'' if exact else ' so far'}); "
                          f"DATASET_MAX_CELLS allows {self.max_cells:,}",
                          {"setting": "DATASET_MAX_CELLS", "limit": self.max_cells, "value": seen,
                           "rows": rows, "columns": columns}, status=413)

    def field_error(self, seen: int, where: dict[str, Any], what: str = "a field") -> TableError:
        place = ", ".join(f"{k} {v}" for k, v in where.items())
        return TableError("field_too_long", f"{what} ({place}) has {seen:,} characters; MAX_FIELD_CHARS allows "
                          f"{self.max_field_chars:,}",
                          {"setting": "MAX_FIELD_CHARS", "limit": self.max_field_chars, "value": seen, **where})

    def chunk_rows(self, columns: int) -> int:
        return max(1_000, CHUNK_CELLS // max(columns, 1))


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


class TableSource:
    """A checked file that can be read in chunks; `rows` and `columns` are known before `batches()`."""

    def __init__(self, path: Path, fmt: TableFormat, columns: list[str], rows: int, chunk_rows: int,
                 dtypes: dict[str, str] | None = None) -> None:
        self.path, self.format, self.columns, self.rows, self.chunk_rows = path, fmt, columns, rows, chunk_rows
        self._dtypes = dtypes or {}
        self._read: dict[int, Any] = {}  # CSV: the dtype each column is read with on the second pass

    def batches(self) -> Iterator[pd.DataFrame]:
        """DataFrames of at most `chunk_rows` rows, the same dtypes in each."""
        if self.format.kind == "parquet":
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(self.path)
            for b in pf.iter_batches(batch_size=self.chunk_rows, columns=self.columns, use_pandas_metadata=False):
                yield _parquet_plain(b.to_pandas(), self._dtypes)
            return
        for chunk in self._csv_chunks(dtype=self._read):
            chunk.columns = self.columns
            yield _to_dtypes(chunk, self._dtypes)

    def arrow_batches(self) -> Iterator[Any]:
        """For Parquet sources: the record batches as they are (no pandas round trip)."""
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(self.path)
        yield from pf.iter_batches(batch_size=self.chunk_rows, columns=self.columns, use_pandas_metadata=False)

    def _csv_chunks(self, dtype: Any = None) -> Iterator[pd.DataFrame]:
        fmt = self.format
        try:
            reader = pd.read_csv(self.path, sep=fmt.delimiter, decimal=fmt.decimal,
                                 encoding=_pandas_encoding(fmt.encoding or "utf-8"), dtype_backend="numpy_nullable",
                                 dtype=dtype, skip_blank_lines=True, on_bad_lines="error", low_memory=False,
                                 chunksize=self.chunk_rows)
            with reader:
                yield from reader
        except pd.errors.ParserError as exc:
            raise TableError("ragged_rows", f"rows have a different number of fields than the header: {exc}",
                             {"delimiter": _DELIMITER_NAMES.get(fmt.delimiter or "", fmt.delimiter)}) from exc
        except UnicodeDecodeError as exc:
            raise TableError("undecodable", f"the file is not valid {fmt.encoding} past its first {SNIFF_BYTES} bytes "
                             f"(byte {exc.start} of a chunk); re-export it as UTF-8",
                             {"encoding": fmt.encoding}) from exc

    def read_all(self) -> pd.DataFrame:
        parts = list(self.batches())
        df = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)
        return df


def read_table(path: Path, limits: TableLimits | None = None) -> tuple[pd.DataFrame, TableFormat]:
    """Read a CSV or Parquet file into one DataFrame with the user's column names kept exactly.
    For files that fit in memory (tests, notebooks, benchmarks); the service streams `open_table`."""
    src = open_table(path, limits)
    return src.read_all(), src.format


def open_table(path: Path, limits: TableLimits | None = None) -> TableSource:
    """Check a file (header, limits, encoding, shape) and return a source to read it in chunks."""
    limits = limits or TableLimits()
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
    if not head.strip():
        raise TableError("empty_file", "the file is empty", {"bytes": len(head)})
    if head[:4] == b"PAR1":
        return _open_parquet(path, limits)
    return _open_csv(path, head, limits)


# ----------------------------------------------------------------------------------- CSV
def _open_csv(path: Path, head: bytes, limits: TableLimits) -> TableSource:
    encoding, text_head = _detect_encoding(head)
    fmt = TableFormat(kind="csv", encoding=encoding)
    cut = len(head) == SNIFF_BYTES
    lines = [ln for ln in text_head.splitlines() if ln.strip()]
    if cut and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut mid-way
    header_complete = not cut or len(lines) > 1
    fmt.delimiter = _sniff_delimiter(lines[:50], limits, header_complete)
    _check_header_bound(lines[0], fmt.delimiter, limits, complete=header_complete)
    if not header_complete:  # one line longer than the sniffed block, but within the limits: read it whole
        lines = [_first_line(path, encoding, fmt.delimiter, limits)]
    header = _parse_rows([lines[0]], fmt.delimiter, limits, first_line=1)[0]
    _check_header(header, limits)
    if len(lines) < 2 and not cut:
        raise TableError("no_rows", "the file has a header but no data rows", {"columns": header})
    sample_rows = _parse_rows(lines[1:200], fmt.delimiter, limits, first_line=2)
    if fmt.delimiter in (";", "\t") and _has_decimal_commas(sample_rows):
        fmt.decimal = ","
        fmt.notes.append("decimal commas read as decimal points")
    _scan_bytes(path, encoding, len(header), limits)
    chunk_rows = limits.chunk_rows(len(header))
    src = TableSource(path, fmt, [str(c) for c in header], 0, chunk_rows)
    src._dtypes, src._read, src.rows = _settle_csv_types(src, limits)
    if src.rows == 0:
        raise TableError("no_rows", "the file has a header but no data rows", {"columns": header})
    return src


def _check_header_bound(first: str, delimiter: str, limits: TableLimits, *, complete: bool) -> None:
    """Columns and field length of the header from its text, before any list of names is built:
    a delimiter count outside quotes (a lower bound while the line is incomplete)."""
    fields, longest, length, quoted = 1, 0, 0, False
    for m in re.finditer(r'"|' + re.escape(delimiter), first):
        if m.group() == '"':
            quoted = not quoted
        elif not quoted:
            longest = max(longest, m.start() - length)
            length = m.end()
            fields += 1
    longest = max(longest, len(first) - length) if complete else longest
    if fields > limits.max_columns:
        raise limits.columns_error(fields, exact=complete)
    if longest > limits.max_field_chars + 2:  # +2: the quotes around a quoted name
        raise limits.field_error(longest, {"line": 1}, "a column name")


def _first_line(path: Path, encoding: str, delimiter: str, limits: TableLimits) -> str:
    """The header line of a file whose header is longer than the sniffed block: read in blocks,
    its bounds re-checked on each block so a header over the limits is never held whole."""
    decoder = codecs.getincrementaldecoder(_pandas_encoding(encoding))(errors="strict")
    text = ""
    with open(path, "rb") as f:
        while True:
            block = f.read(SCAN_BLOCK)
            try:
                text += decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                raise TableError("undecodable", f"the header is not valid {encoding}", {"encoding": encoding}) from exc
            nl = text.find("\n")
            if nl >= 0 or not block:
                line = text[:nl] if nl >= 0 else text
                _check_header_bound(line, delimiter, limits, complete=True)
                return line.rstrip("\r")
            # the partial line so far is a lower bound on the header's columns and fields
            _check_header_bound(text, delimiter, limits, complete=False)


def _parse_rows(lines: list[str], delimiter: str, limits: TableLimits, first_line: int) -> list[list[str]]:
    # The csv module refuses fields over its own limit (128 KiB by default) with a vague error; it
    # only ever sees the sniffed block or a header already bounded, so lift its limit above both and
    # report our own (MAX_FIELD_CHARS) with the real length below.
    needed = max(SNIFF_BYTES, limits.max_field_chars) + 2
    if csv.field_size_limit() < needed:
        csv.field_size_limit(needed)
    try:
        rows = list(csv.reader(lines, delimiter=delimiter))
    except csv.Error as exc:
        raise TableError("malformed_csv", f"the file is not valid CSV near line {first_line}: {exc}",
                         {"line": first_line}) from exc
    for i, row in enumerate(rows):
        for j, cell in enumerate(row):
            if len(cell) > limits.max_field_chars:
                raise limits.field_error(len(cell), {"line": first_line + i, "column": j + 1})
    return rows


def _scan_bytes(path: Path, encoding: str, columns: int, limits: TableLimits) -> None:
    """One pass over the raw bytes before pandas reads anything: NUL characters (the C parser
    silently cuts a field at one) and lines too long to hold `columns` fields of MAX_FIELD_CHARS
    (so no single row can make a chunk arbitrarily large)."""
    unit = 2 if encoding == "utf-16" else 1
    # 4 bytes a character (UTF-8), quotes doubled, a delimiter each: the longest legal line
    max_line = columns * (4 * limits.max_field_chars + 3) + 2
    run, offset, line = 0, 0, 1
    with open(path, "rb") as f:
        while block := f.read(SCAN_BLOCK):
            a = np.frombuffer(block, dtype=np.uint8)
            if unit == 1:
                nul = np.flatnonzero(a == 0)
                nl = np.flatnonzero(a == 10)
            else:  # UTF-16: code units; BOM tells the byte order, a zero unit is a NUL character
                units = np.frombuffer(block[: len(block) // 2 * 2], dtype="<u2" if _utf16_le(path) else ">u2")
                nul = np.flatnonzero(units == 0) * 2
                nl = np.flatnonzero(units == 10) * 2
            if nul.size:
                at = offset + int(nul[0])
                raise TableError("nul_character", f"the file contains a NUL character at byte {at:,} (line "
                                 f"{line + int((nl < nul[0]).sum()):,}); it is not text or is corrupt",
                                 {"byte": at, "line": line + int((nl < nul[0]).sum())})
            if nl.size:
                gaps = np.diff(nl, prepend=-1)
                gaps[0] += run
                longest = int(gaps.max()) // unit
                run = len(a) - 1 - int(nl[-1])
            else:
                longest, run = (run + len(a)) // unit, run + len(a)
            if max(longest, run // unit) > max_line:
                seen = max(longest, run // unit)
                raise TableError("field_too_long", f"the file has a line of at least {seen:,} bytes, more than "
                                 f"{columns} fields of at most {limits.max_field_chars:,} characters can take "
                                 f"(MAX_FIELD_CHARS)", {"setting": "MAX_FIELD_CHARS", "limit": limits.max_field_chars,
                                                        "value": seen, "line": line + int(nl.size)})
            line += int(nl.size)
            offset += len(block)


def _utf16_le(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\xff\xfe"


def _kind(s: pd.Series) -> str | None:
    """The type pandas gave one chunk's column; None when the chunk has no values in it."""
    if not s.notna().any():
        return None
    if pd.api.types.is_bool_dtype(s):
        return "bool"
    if pd.api.types.is_integer_dtype(s):
        return "int"
    if pd.api.types.is_float_dtype(s):
        return "float"
    return "object"


def _merge_kind(a: str | None, b: str | None) -> str | None:
    if a is None or a == b:
        return b if a is None else a
    if b is None:
        return a
    if {a, b} == {"int", "float"}:
        return "float"
    return "object"  # what pandas gives a column whose values do not share one type


def _settle_csv_types(src: TableSource, limits: TableLimits) -> tuple[dict[str, str], dict[int, Any], int]:
    """First pass over the CSV in chunks: each column's type over the whole file, the cell count
    against DATASET_MAX_CELLS as it grows, and the longest text field against MAX_FIELD_CHARS."""
    kinds: dict[str, str | None] = dict.fromkeys(src.columns)
    na: dict[str, bool] = dict.fromkeys(src.columns, False)
    rows, ncols = 0, len(src.columns)
    for chunk in src._csv_chunks():
        for i, c in enumerate(src.columns):
            s = chunk.iloc[:, i]
            k = _kind(s)
            kinds[c] = _merge_kind(kinds[c], k)
            na[c] = na[c] or bool(s.isna().any())
            if k == "object":
                lengths = s.dropna().astype(str).str.len()
                if len(lengths) and int(lengths.max()) > limits.max_field_chars:
                    at = int(lengths.idxmax())
                    raise limits.field_error(int(lengths.max()), {"column": c, "row": at + 1})
        rows += len(chunk)
        if rows * ncols > limits.max_cells:
            raise limits.cells_error(rows * ncols, rows, ncols, exact=False)
    dtypes = {}
    for c in src.columns:
        k = kinds[c]
        if k == "int":
            dtypes[c] = "float64" if na[c] else "int64"
        elif k == "float" or k is None:
            dtypes[c] = "float64"  # a column with no values at all reads as float64 NaN, as pandas gives it
        elif k == "bool":
            dtypes[c] = "object" if na[c] else "bool"
        else:
            dtypes[c] = "object"
    # numpy float64 for floats: the nullable Float64 reader ignores `decimal` (pandas 2.3)
    read = {"int": "Int64", "float": "float64", "bool": "boolean", None: "float64"}
    return dtypes, {i: read.get(kinds[c], object) for i, c in enumerate(src.columns)}, rows


def _to_dtypes(df: pd.DataFrame, dtypes: dict[str, str]) -> pd.DataFrame:
    df = df.reset_index(drop=True)  # chunks after the first are numbered on from the previous one
    out = {}
    for i, (c, d) in enumerate(dtypes.items()):
        s = df.iloc[:, i]
        if d == "int64":
            out[c] = s.astype("int64")
        elif d == "float64":
            out[c] = s.astype("float64")
        elif d == "bool":
            out[c] = s.astype(bool)
        else:
            out[c] = s.astype(object).where(s.notna(), None)
    return pd.DataFrame(out, index=pd.RangeIndex(len(df)))


# ----------------------------------------------------------------------------------- Parquet
def _open_parquet(path: Path, limits: TableLimits) -> TableSource:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a bad file
        raise TableError("bad_parquet", f"not a readable Parquet file: {exc}") from exc
    index_cols = _pandas_index_columns(schema)
    names = [n for n in schema.names if n not in index_cols]
    if len(names) > limits.max_columns:
        raise limits.columns_error(len(names))
    rows = pf.metadata.num_rows
    if rows * len(names) > limits.max_cells:  # from the metadata, before any data is read
        raise limits.cells_error(rows * len(names), rows, len(names))
    _check_header([str(c) for c in names], limits)
    nested = [n for n in names if pa.types.is_nested(schema.field(n).type)]
    if nested:
        raise TableError("unsupported_type", f"nested (list/struct/map) columns are not supported: "
                         f"{', '.join(nested[:10])}", {"columns": nested[:50]})
    if rows == 0:
        raise TableError("no_rows", "the Parquet file has no rows", {"columns": names})
    src = TableSource(path, TableFormat(kind="parquet"), [str(c) for c in names], rows, limits.chunk_rows(len(names)))
    # One pass over the batches: text cells (length, NUL) and which integer/bool columns have nulls,
    # so every chunk converts to the same dtype.
    nulls: dict[str, int] = dict.fromkeys(src.columns, 0)
    text = [n for n in src.columns if pa.types.is_string(schema.field(n).type) or
            pa.types.is_large_string(schema.field(n).type) or pa.types.is_dictionary(schema.field(n).type)]
    done = 0
    try:
        for b in src.arrow_batches():
            for n in src.columns:
                col = b.column(n)
                nulls[n] += col.null_count
                if n in text:
                    if pa.types.is_dictionary(col.type):
                        col = col.dictionary
                    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
                        continue
                    longest = pc.max(pc.utf8_length(col)).as_py()
                    if longest is not None and longest > limits.max_field_chars:
                        at = done + int(pc.index(pc.utf8_length(col), longest).as_py())
                        raise limits.field_error(longest, {"column": n, "row": at + 1})
                    if pc.any(pc.match_substring(col, "\x00")).as_py():
                        raise TableError("nul_character", f"column {n!r} has a cell with a NUL character",
                                         {"column": n})
            done += b.num_rows
    except TableError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise TableError("bad_parquet", f"not a readable Parquet file: {exc}") from exc
    dtypes = {}
    for n in src.columns:
        t = schema.field(n).type
        if pa.types.is_integer(t) and nulls[n]:
            dtypes[n] = "float64"
        elif pa.types.is_boolean(t) and nulls[n]:
            dtypes[n] = "object"
        else:
            dtypes[n] = ""  # as pyarrow converts it
    src._dtypes = dtypes
    return src


def _pandas_index_columns(schema: Any) -> set[str]:
    import json

    meta = (schema.metadata or {}).get(b"pandas")
    if not meta:
        return set()
    try:
        return {c for c in json.loads(meta).get("index_columns", []) if isinstance(c, str)}
    except (ValueError, AttributeError):
        return set()


def _parquet_plain(df: pd.DataFrame, dtypes: dict[str, str]) -> pd.DataFrame:
    for c, d in dtypes.items():
        if d == "float64" and df[c].dtype != "float64":
            df[c] = df[c].astype("float64")
        elif d == "object" and df[c].dtype != object:
            df[c] = df[c].astype(object).where(df[c].notna(), None)
    return df.reset_index(drop=True)


# ----------------------------------------------------------------------------------- shared
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


def _sniff_delimiter(lines: list[str], limits: TableLimits, complete: bool = True) -> str:
    """The delimiter that splits the header into most fields and rows consistently with it."""
    best, best_score = None, (0, 0)
    too_long: list[tuple[int, TableError]] = []
    for d in DELIMITERS:
        if lines[0].count(d) + 1 > limits.max_columns:
            # splitting would build the oversized header we refuse; quotes may hide some delimiters,
            # so the exact count is made by _check_header_bound
            _check_header_bound(lines[0], d, limits, complete=complete)
        try:
            rows = _parse_rows(lines, d, limits, first_line=1)
        except TableError as exc:
            if exc.code != "field_too_long":
                raise
            # A wide line read with the wrong delimiter is one long field: try the others first.
            too_long.append((lines[0].count(d), exc))
            continue
        width = len(rows[0]) if rows else 0
        if width < 2:
            continue
        consistent = sum(1 for r in rows[1:] if len(r) == width)
        score = (consistent, width)
        if score > best_score:
            best, best_score = d, score
    if best is None:
        if too_long:  # no delimiter reads it within the limit: the field is too long under the likeliest one
            raise max(too_long, key=lambda t: t[0])[1]
        if len(lines) and len(_parse_rows(lines[:1], ",", limits, 1)[0]) == 1:
            return ","  # a single-column file
        raise TableError("no_delimiter", "could not tell how columns are separated (tried comma, semicolon, tab, pipe)")
    return best


def control_characters(text: str) -> list[str]:
    """The control characters in `text`, as escapes (`\\x00`), for error messages."""
    return sorted({f"\\x{ord(ch):02x}" for ch in _CONTROL.findall(text)})


def _check_header(header: list[str], limits: TableLimits | None = None) -> None:
    limits = limits or TableLimits()
    if len(header) > limits.max_columns:
        raise limits.columns_error(len(header))
    for i, h in enumerate(header):
        if len(str(h)) > limits.max_field_chars:
            raise limits.field_error(len(str(h)), {"column": i + 1}, "a column name")
        bad = control_characters(str(h))
        if bad:
            raise TableError("control_character", f"column {i + 1}'s name contains control character(s) "
                             f"{', '.join(bad)}; names must be printable text",
                             {"position": i + 1, "characters": bad})
    blank = [i for i, h in enumerate(header) if not str(h).strip()]
    if blank:
        raise TableError("blank_column_name", f"column {blank[0] + 1} has no name; every column needs one",
                         {"positions": [i + 1 for i in blank]})
    seen: set[str] = set()
    dupes = sorted({h for h in header if h in seen or seen.add(h)})  # type: ignore[func-returns-value]
    if dupes:
        raise TableError("duplicate_columns", f"column names must be unique; repeated: {', '.join(dupes)}",
                         {"columns": dupes})


def _has_decimal_commas(rows: list[list[str]]) -> bool:
    return any(_DECIMAL_COMMA.match(cell) for row in rows for cell in row)

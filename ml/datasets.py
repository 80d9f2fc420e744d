"""Turning a user's file into a dataset: read in chunks, write as Parquet, infer and check the
schema, profile. Pure Python; memory is bounded by a chunk and the profile's budgets, not the file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ml.profile import TableSummary, profile_summary, release_memory, summarize_parquet
from ml.schema import DatasetSchema, infer_schema, validate_schema
from ml.tabular_io import TableFormat, TableLimits, TableSource, open_table


@dataclass
class Ingested:
    path: Path  # the Parquet file written
    rows: int
    columns: list[str]
    schema: DatasetSchema
    profile: dict[str, Any]
    format: TableFormat


def ingest(path: Path, dest: Path, given: DatasetSchema | None = None, limits: TableLimits | None = None) -> Ingested:
    """Check `path` (limits first), write it to `dest` as Parquet chunk by chunk, then infer, check
    and profile from one streamed pass over `dest`. Raises `TableError` for a file that can't be
    read or is over a limit, and `SchemaError` for a schema that doesn't fit."""
    src = open_table(path, limits)
    release_memory()
    write_parquet(src, dest)
    release_memory()
    summary = summarize_parquet(dest)
    release_memory()
    if given is not None:
        validate_schema(summary, given)  # the user's own roles must fit before anything is inferred around them
    schema = infer_schema(summary, given)
    validate_schema(summary, schema)
    return Ingested(path=dest, rows=summary.rows, columns=list(summary.columns), schema=schema,
                    profile=profile_summary(summary, schema), format=src.format)


def write_parquet(src: TableSource, dest: Path) -> int:
    """Write the source to `dest`, one row group per chunk; returns the rows written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows, writer = 0, None
    try:
        if src.format.kind == "parquet":
            for b in src.arrow_batches():
                t = pa.Table.from_batches([b]).replace_schema_metadata(None)
                if writer is None:
                    writer = pq.ParquetWriter(dest, t.schema)
                writer.write_table(t)
                rows += t.num_rows
        else:
            schema = pa.schema([(c, _arrow_type(src, i)) for i, c in enumerate(src.columns)])
            for df in src.batches():
                t = pa.Table.from_pandas(df, schema=schema, preserve_index=False).replace_schema_metadata(None)
                if writer is None:
                    writer = pq.ParquetWriter(dest, schema)
                writer.write_table(t)
                rows += t.num_rows
    finally:
        if writer is not None:
            writer.close()
    return rows


def _arrow_type(src: TableSource, i: int) -> Any:
    import pyarrow as pa

    if src._read.get(i) == "boolean":
        return pa.bool_()
    return {"int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}.get(
        list(src._dtypes.values())[i], pa.string())


def reprofile(path: Path, schema: DatasetSchema) -> dict[str, Any]:
    """Check a corrected schema against a stored Parquet file and profile it again, streamed."""
    summary: TableSummary = summarize_parquet(path)
    validate_schema(summary, schema)
    return profile_summary(summary, schema)

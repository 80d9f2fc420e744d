"""Turning a user's file into a dataset: read, infer and check the schema, profile. Pure Python."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ml.profile import profile
from ml.schema import DatasetSchema, infer_schema, validate_schema
from ml.tabular_io import TableFormat, read_table


@dataclass
class Ingested:
    frame: pd.DataFrame
    schema: DatasetSchema
    profile: dict[str, Any]
    format: TableFormat


def ingest(path: Path, given: DatasetSchema | None = None) -> Ingested:
    """Raises `TableError` for a file that can't be read and `SchemaError` for a schema that doesn't fit."""
    df, fmt = read_table(path)
    if given is not None:
        validate_schema(df, given)  # the user's own roles must fit before anything is inferred around them
    schema = infer_schema(df, given)
    validate_schema(df, schema)
    return Ingested(frame=df, schema=schema, profile=profile(df, schema), format=fmt)


def reprofile(df: pd.DataFrame, schema: DatasetSchema) -> dict[str, Any]:
    validate_schema(df, schema)
    return profile(df, schema)

"""Datasets: upload (CSV or Parquet), list, detail with schema and profile, schema correction,
download, delete."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core import datasets
from core.artifacts import ArtifactStore
from core.settings import PROJECT_ROOT, get_settings
from ml.schema import DatasetSchema, SchemaError, SchemaLimitError, check_schema_text
from ml.tabular_io import TableError
from server.deps import DbSession, Operator, Viewer
from server.errors import ApiError
from server.paging import PageOffset
from server.schemas import StrictModel
from server.strings import CheckedRoute

router = APIRouter(prefix="/api/v1/datasets", tags=["datasets"], route_class=CheckedRoute)
samples_router = APIRouter(prefix="/api/v1/dataset-samples", tags=["datasets"], route_class=CheckedRoute)
CSV_CHUNK_ROWS = 50_000
SAMPLES_DIR = PROJECT_ROOT / "data" / "samples"
SAMPLES = {"ai4i2020": ("ai4i2020.csv", "AI4I 2020 predictive maintenance (UCI, CC BY 4.0): 10,000 milling-machine "
                        "readings, 339 failures over 5 modes")}


class DatasetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str
    kind: str
    rows: int
    columns: list[str]
    schema_: dict[str, Any] = Field(alias="schema", serialization_alias="schema")
    sha256: str
    size_bytes: int
    source_filename: str | None
    source_format: dict[str, Any] | None
    lineage: dict[str, Any] | None
    created_by: str | None
    created_at: datetime
    updated_at: datetime


class DatasetDetail(DatasetOut):
    profile: dict[str, Any]


class DatasetPage(BaseModel):
    items: list[DatasetOut]
    total: int
    limit: int
    offset: int


class SchemaPatch(StrictModel):
    schema_: DatasetSchema = Field(alias="schema")


def _store(request: Request) -> ArtifactStore:
    return request.app.state.artifacts


def _schema_error(exc: SchemaError, prefix: str = "schema") -> ApiError:
    if isinstance(exc, SchemaLimitError):
        code = ("limit_exceeded" if exc.status == 413 else
                "field_too_long" if exc.details.get("setting") == "MAX_FIELD_CHARS" else "invalid_text")
        return ApiError(exc.status, code, f"{prefix}.{exc.field}: {exc.message}",
                        {"field": f"{prefix}.{exc.field}", **exc.details})
    return ApiError(422, "invalid_schema", exc.message, {"field": f"schema.{exc.field}", **exc.details})


def _check_schema_text(raw: Any, prefix: str) -> None:
    s = get_settings()
    try:
        check_schema_text(raw, max_field_chars=s.max_field_chars, max_derived=s.dataset_max_derived)
    except SchemaLimitError as exc:
        raise _schema_error(exc, prefix) from exc


def _parse_schema(raw: str | None) -> DatasetSchema | None:
    if raw is None or not raw.strip():
        return None
    try:
        decoded = json.loads(raw)
        _check_schema_text(decoded, "form.schema")
        return DatasetSchema.model_validate(decoded)
    except json.JSONDecodeError as exc:
        raise ApiError(422, "validation_error", f"schema: not valid JSON ({exc.msg} at {exc.pos})",
                       {"errors": [{"field": "form.schema", "message": exc.msg, "type": "json_invalid"}]}) from exc
    except ValidationError as exc:
        errors = [{"field": "form.schema." + ".".join(str(p) for p in e["loc"]), "message": e["msg"],
                   "type": e["type"]} for e in exc.errors()]
        raise ApiError(422, "validation_error", f"{errors[0]['field']}: {errors[0]['message']}",
                       {"errors": errors}) from exc


def _create(request: Request, who: Any, source: Any, filename: str | None, name: str,
            given: DatasetSchema | None) -> DatasetDetail:
    store = _store(request)
    with store.scratch() as tmp:
        upload_path = tmp / "upload"
        with open(upload_path, "wb") as out:
            shutil.copyfileobj(source, out, 1024 * 1024)
        try:
            ds = datasets.create(upload=upload_path, filename=filename, name=name.strip(), given=given,
                                 created_by=who.name, store=store, db_url=request.app.state.db_url)
        except TableError as exc:
            raise ApiError(exc.status, exc.code, f"file: {exc.message}", {"field": "file", **exc.details}) from exc
        except SchemaError as exc:
            raise _schema_error(exc) from exc
    return DatasetDetail.model_validate(ds)


@router.post("", status_code=201, response_model=DatasetDetail, summary="Upload a CSV or Parquet file")
def upload(request: Request, who: Operator, file: Annotated[UploadFile, File(description="CSV or Parquet")],
           name: Annotated[str, Form(min_length=1, max_length=datasets.NAME_CHARS)],
           schema: Annotated[str | None, Form(description="JSON DatasetSchema; roles not given are inferred")] = None,
           ) -> DatasetDetail:
    # A sync route: FastAPI runs it in the thread pool, so reading, checking and profiling the file
    # (chunk by chunk, ml.datasets.ingest) never blocks the event loop. Control characters and
    # over-long strings in `name`, the file name and `schema` were refused by server.strings already.
    given = _parse_schema(schema)
    # file.file is already spooled to disk by the multipart parser
    return _create(request, who, file.file, file.filename, name, given)


@samples_router.get("", summary="Sample datasets shipped with the platform")
def list_samples(_: Viewer) -> dict[str, Any]:
    return {"items": [{"name": k, "filename": f, "description": d, "size_bytes": (SAMPLES_DIR / f).stat().st_size}
                      for k, (f, d) in SAMPLES.items() if (SAMPLES_DIR / f).is_file()]}


@samples_router.post("/{sample}/import", status_code=201, response_model=DatasetDetail,
                     summary="Create a dataset from a shipped sample (same checks as an upload)")
def import_sample(sample: str, request: Request, who: Operator) -> DatasetDetail:
    if sample not in SAMPLES or not (SAMPLES_DIR / SAMPLES[sample][0]).is_file():
        raise ApiError(404, "not_found", f"no sample named {sample!r}; GET /api/v1/dataset-samples lists them",
                       {"field": "path.sample", "allowed": sorted(SAMPLES)})
    filename = SAMPLES[sample][0]
    with open(SAMPLES_DIR / filename, "rb") as f:
        return _create(request, who, f, filename, sample, None)


@router.get("", response_model=DatasetPage, summary="List datasets, newest first")
def list_datasets(session: DbSession, _: Viewer, limit: Annotated[int, Query(ge=1, le=200)] = 50,
                  *, offset: PageOffset) -> DatasetPage:
    items, total = datasets.list_page(session, limit=limit, offset=offset)
    return DatasetPage(items=[DatasetOut.model_validate(d) for d in items], total=total, limit=limit, offset=offset)


@router.get("/{dataset_id}", response_model=DatasetDetail, summary="A dataset with its schema and profile")
def get_dataset(dataset_id: str, session: DbSession, _: Viewer) -> DatasetDetail:
    return DatasetDetail.model_validate(datasets.get(session, dataset_id))


@router.patch("/{dataset_id}", response_model=DatasetDetail, summary="Correct the schema (re-checked, re-profiled)")
def patch_schema(dataset_id: str, body: SchemaPatch, request: Request, _: Operator) -> DatasetDetail:
    _check_schema_text(body.schema_.model_dump(mode="json"), "schema")
    try:
        ds = datasets.update_schema(dataset_id, body.schema_, _store(request), request.app.state.db_url)
    except SchemaError as exc:
        raise _schema_error(exc) from exc
    return DatasetDetail.model_validate(ds)


@router.get("/{dataset_id}/download", summary="Download as CSV or Parquet")
async def download(dataset_id: str, request: Request, session: DbSession, _: Viewer,
                   format: Annotated[Literal["csv", "parquet"], Query()] = "csv") -> Any:
    ds = await run_in_threadpool(datasets.get, session, dataset_id)
    store = _store(request)
    stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in ds.name)[:80] or ds.id
    if format == "parquet":
        path = await run_in_threadpool(datasets.verified_path, ds, store)
        return FileResponse(path, media_type="application/vnd.apache.parquet",
                            filename=f"{stem}.parquet")
    path = await run_in_threadpool(datasets.verified_path, ds, store)
    # streamed one record batch at a time; formula-like text cells escaped (ml/csv_safety.py)
    return StreamingResponse(datasets.csv_chunks(path, CSV_CHUNK_ROWS), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{stem}.csv"'})


@router.delete("/{dataset_id}", status_code=204, summary="Delete (refused while a job uses it)")
def delete_dataset(dataset_id: str, request: Request, _: Operator) -> None:
    datasets.delete(dataset_id, _store(request), request.app.state.db_url)

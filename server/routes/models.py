"""Models: start failure-model training, the registry (versions, aliases), online prediction."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field, field_validator
from pydantic_core import PydanticCustomError
from sqlalchemy import func, select

from core import datasets, predictions, registry
from core.models import Dataset, Model
from core.settings import get_settings
from ml.batch import numeric_columns, required_columns
from ml.online import RowsInputError, check_row_count, rows_frame
from ml.rul import RUL_ALGORITHMS, RulModel
from ml.training import ALGORITHMS, FailureModel
from server.deps import DbSession, Operator, SubmitJob, Viewer
from server.errors import ApiError
from server.paging import PageOffset
from server.schemas import JobOut, StrictModel
from server.strings import CheckedRoute

router = APIRouter(prefix="/api/v1", tags=["models"], route_class=CheckedRoute)


class TrainRequest(StrictModel):
    dataset_id: str
    task: Literal["failure", "rul"] = Field(description="failure: will it fail, and how; rul: remaining useful life "
                                             "from run-to-failure histories (the schema needs `unit` and `time`)")
    algorithm: Literal[ALGORITHMS] = Field(  # type: ignore[valid-type]
        default="lightgbm", description="rul supports lightgbm and random_forest")
    cv_folds: int = Field(default=5, ge=2, le=10)
    cost_false_alarm: float = Field(default=1.0, gt=0, le=1e6, description="failure task only")
    cost_missed_failure: float = Field(default=10.0, gt=0, le=1e6, description="failure task only")
    rul_cap: float | None = Field(default=125, gt=0, le=1e7, description="rul task: cap on the target "
                                  "(piecewise-linear RUL); null for none")
    windows: list[int] = Field(default=[5, 10, 20, 40], min_length=1, max_length=6,
                               description="rul task: rolling-window lengths in rows")
    settings: list[str] | None = Field(default=None, max_length=20, description="rul task: operating-setting "
                                       "columns (default: columns named like 'setting', 'operating', 'regime')")
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,100}$",
                             description="registry name (default: from the dataset name and task)")

    @field_validator("windows")
    @classmethod
    def _windows(cls, v: list[int]) -> list[int]:
        if any(not 2 <= w <= 1000 for w in v):
            raise ValueError("each window must be between 2 and 1000 rows")
        return sorted(set(v))


class ModelOut(BaseModel):
    id: str
    kind: str
    name: str
    version: int
    aliases: list[str]
    dataset_id: str | None
    dataset_sha256: str | None
    params: dict[str, Any]
    metrics: dict[str, Any]
    feature_names: list[str]
    library_versions: dict[str, str]
    sha256: str
    job_id: str | None
    created_at: datetime

    @classmethod
    def of(cls, m: Model, aliases: list[str]) -> ModelOut:
        out = cls(**{k: getattr(m, k) for k in cls.model_fields if k != "aliases"}, aliases=aliases)
        # A generator's per-column histograms are bulky: they are served by GET /models/{ref}/report.
        out.metrics = {k: v for k, v in out.metrics.items() if k != "histograms"}
        return out


class ModelPage(BaseModel):
    items: list[ModelOut]
    total: int
    limit: int
    offset: int


class AliasRequest(StrictModel):
    alias: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$", examples=["production"])


class PredictRequest(StrictModel):
    rows: list[dict[str, Any]] = Field(min_length=1, description="readings, one JSON object of scalars each; at "
                                       "most MAX_PREDICT_ROWS rows and MAX_PREDICT_KEYS distinct keys")

    @field_validator("rows", mode="before")
    @classmethod
    def _row_count(cls, v: Any) -> Any:
        # Before pydantic copies every row: an oversized list is refused without walking it.
        if isinstance(v, list):
            try:
                check_row_count(len(v), get_settings().max_predict_rows)
            except RowsInputError as exc:
                raise PydanticCustomError("limit_exceeded", exc.message, exc.details) from None
        return v


def _registry_name(given: str | None, dataset_name: str, suffix: str) -> str:
    return given or (re.sub(r"[^A-Za-z0-9._-]+", "-", dataset_name).strip("-")[:80] or "model") + "-" + suffix


def _needs(ds: Dataset, role: str, why: str) -> None:
    raise ApiError(422, "invalid_dataset", f"dataset {ds.id} has no {role} column: {why}; set schema.{role} with "
                   f"PATCH /api/v1/datasets/{ds.id}", {"field": "body.dataset_id", "role": role})


@router.post("/ml/models", status_code=202, response_model=JobOut, summary="Train a failure or RUL model")
def train(body: TrainRequest, session: DbSession, submit: SubmitJob) -> JobOut:
    ds = datasets.get(session, body.dataset_id)
    schema, profile = ds.schema or {}, ds.profile or {}
    if body.task == "failure":
        if not schema.get("target"):
            _needs(ds, "target", "failure models learn from the binary failure label")
        positives = (profile.get("class_balance") or {}).get("positives", 0)
        if positives < body.cv_folds:
            raise ApiError(422, "invalid_dataset", f"dataset has {positives} failures; {body.cv_folds}-fold CV needs "
                           f"at least {body.cv_folds}", {"field": "body.cv_folds", "positives": positives})
    else:
        if body.algorithm not in RUL_ALGORITHMS:
            raise ApiError(422, "invalid_request", f"algorithm {body.algorithm!r} can't fit RUL; use one of "
                           f"{', '.join(RUL_ALGORITHMS)}", {"field": "body.algorithm"})
        for role in ("unit", "time"):
            if not schema.get(role):
                _needs(ds, role, "RUL models learn from run-to-failure histories per unit, in time order")
        units = (profile.get("units") or {}).get("count", 0)
        if units < body.cv_folds:
            raise ApiError(422, "invalid_dataset", f"dataset has {units} units; {body.cv_folds}-fold group CV needs "
                           f"at least {body.cv_folds}", {"field": "body.cv_folds", "units": units})
        unknown = [c for c in body.settings or [] if c not in ds.columns]
        if unknown:
            raise ApiError(422, "invalid_request", f"settings name column(s) the dataset lacks: {', '.join(unknown)}",
                           {"field": "body.settings", "unknown": unknown})
    name = _registry_name(body.name, ds.name, body.task)
    params = {**body.model_dump(), "name": name, "submitted_by": submit.principal.name}
    session.close()
    return JobOut.of(submit(f"ml.train_{body.task}", params, kind=f"train_{body.task}"))


@router.get("/predictions/{prediction_id}", summary="A stored prediction: inputs, outputs, model version")
def get_prediction(prediction_id: str, session: DbSession, _: Viewer) -> dict[str, Any]:
    p = predictions.get(session, prediction_id)
    return {"id": p.id, "model_id": p.model_id, "model_version": p.model_version, "inputs": p.inputs,
            "outputs": p.outputs, "created_by": p.created_by, "created_at": p.created_at.isoformat()}


@router.get("/models", response_model=ModelPage, summary="The model registry, newest first")
def list_models(session: DbSession, _: Viewer, kind: Annotated[Literal["failure", "rul", "tvae"] | None, Query()] = None,
                name: Annotated[str | None, Query(max_length=200)] = None,
                limit: Annotated[int, Query(ge=1, le=200)] = 50, *, offset: PageOffset) -> ModelPage:
    q, cq = select(Model), select(func.count()).select_from(Model)
    for cond in ([Model.kind == kind] if kind else []) + ([Model.name == name] if name else []):
        q, cq = q.where(cond), cq.where(cond)
    items = session.scalars(q.order_by(Model.created_at.desc(), Model.id.desc()).limit(limit).offset(offset)).all()
    return ModelPage(items=[ModelOut.of(m, registry.aliases_of(session, m.id)) for m in items],
                     total=session.scalar(cq) or 0, limit=limit, offset=offset)


@router.get("/models/{ref}", response_model=ModelOut, summary="A model by id, name@alias or name:version")
def get_model(ref: str, session: DbSession, _: Viewer) -> ModelOut:
    m = registry.resolve(session, ref)
    return ModelOut.of(m, registry.aliases_of(session, m.id))


@router.post("/models/{ref}/aliases", response_model=ModelOut, summary="Point an alias (e.g. production) at this model")
def set_alias(ref: str, body: AliasRequest, request: Request, session: DbSession, _: Operator) -> ModelOut:
    m = registry.set_alias(ref, body.alias, request.app.state.db_url)
    return ModelOut.of(m, registry.aliases_of(session, m.id))


def frame_for(model: FailureModel | RulModel, rows: list[dict[str, Any]]) -> tuple[pd.DataFrame, list[str]]:
    """The frame `model` scores (its own input columns only) and warnings for keys it ignores;
    limits (MAX_PREDICT_ROWS, MAX_PREDICT_KEYS) and bad values are a 422 naming them."""
    s = get_settings()
    try:
        built = rows_frame(model, rows, max_rows=s.max_predict_rows, max_keys=s.max_predict_keys)
    except RowsInputError as exc:
        raise ApiError(422, exc.code, exc.message, exc.details) from None
    return built.frame, built.warnings()


@router.get("/models/{ref}/inputs", summary="The columns a failure or RUL model reads, with units, normal ranges "
            "and typical values from its training data (to build an input form)")
def model_inputs(ref: str, request: Request, session: DbSession, _: Viewer) -> dict[str, Any]:
    m = registry.resolve(session, ref)
    model = load_model(request, m)
    ds = session.get(Dataset, m.dataset_id) if m.dataset_id else None
    schema = model.builder.schema
    profile = ((ds.profile or {}).get("columns") or {}) if ds else {}
    numeric = set(numeric_columns(model))
    inputs = []
    for c in required_columns(model):
        meta = schema.columns.get(c)
        p = profile.get(c) or {}
        item: dict[str, Any] = {"name": c, "kind": "numeric" if c in numeric else "categorical",
                                "unit": meta.unit if meta else None,
                                "normal_range": list(meta.normal_range) if meta and meta.normal_range else None,
                                "description": meta.description if meta else None,
                                "typical": p.get("median") if c in numeric else ((p.get("top") or [{}])[0].get("value"))}
        if isinstance(model, RulModel) and c in (schema.unit, schema.time):
            item["kind"] = "unit" if c == schema.unit else "time"
        elif c not in numeric:  # the levels the model was fitted with (the profile's top 20 may be fewer)
            levels = getattr(model.builder, "levels_", {}).get(c)
            item["levels"] = list(levels) if levels is not None else [t["value"] for t in p.get("top") or []]
            if item["typical"] is None and item["levels"]:
                item["typical"] = item["levels"][0]
        inputs.append(item)
    out: dict[str, Any] = {"model_id": m.id, "kind": m.kind, "inputs": inputs, "dataset_id": m.dataset_id}
    if isinstance(model, RulModel):
        out.update(unit_column=schema.unit, time_column=schema.time, rul_cap=model.cap)
    else:
        out.update(threshold=model.threshold, failure_modes=list(model.mode_estimators))
    return out


def load_model(request: Request, m: Model) -> FailureModel | RulModel:
    if m.kind not in ("failure", "rul"):
        raise ApiError(422, "unsupported_model", f"model {m.id} is a {m.kind} model; only failure and RUL models "
                       "score readings", {"field": "path.ref"})
    return request.app.state.models.load(m)


def failure_outputs(model: FailureModel, df: pd.DataFrame) -> list[dict[str, Any]]:
    """What a failure model's prediction stores and returns for each row."""
    p, modes = model.predict_with_modes(df)
    return [{"failure_probability": float(p[i]), "failure": bool(p[i] >= model.threshold),
             "mode_probabilities": {name: float(v[i]) for name, v in modes.items()}} for i in range(len(df))]


def _jsonable_unit(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


@router.post("/models/{ref}/predict", summary="Score readings (up to MAX_PREDICT_ROWS rows); each result is stored with an id")
def predict(ref: str, body: PredictRequest, request: Request, who: Operator) -> Response:
    m = request.app.state.models.row(ref, request.app.state.db_url)
    model = load_model(request, m)
    df, warnings = frame_for(model, body.rows)
    info: dict[str, Any] = {"id": m.id, "name": m.name, "version": m.version, "kind": m.kind}
    if isinstance(model, RulModel):
        per_unit = model.predict_units(df)
        unit_col = model.builder.schema.unit
        out = [{"unit": _jsonable_unit(r.unit), "rul": float(r.rul), "rows": int(r.rows),
                "last_time": float(r.last_time)} for r in per_unit.itertuples(index=False)]
        by_unit: dict[Any, list[dict[str, Any]]] = {}
        for row in body.rows:
            by_unit.setdefault(row.get(unit_col), []).append(row)
        inputs = [{"unit": item["unit"], "rows": by_unit.get(item["unit"], [])} for item in out]
        info["rul_cap"] = model.cap
    else:
        out = failure_outputs(model, df)
        inputs = body.rows
        info["threshold"] = model.threshold
    ids = predictions.store(m.id, m.version, inputs, out, who.name, request.app.state.db_url)
    for pid, item in zip(ids, out, strict=True):
        item["prediction_id"] = pid
    payload = {"model": info, "predictions": out, "warnings": warnings, "rows": len(body.rows)}
    return Response(json.dumps(payload, allow_nan=False), media_type="application/json")  # plain JSON types only


class BatchRequest(StrictModel):
    dataset_id: str
    chunk_rows: int = Field(default=100_000, ge=1_000, le=1_000_000, description="rows scored per chunk (memory bound)")
    name: str | None = Field(default=None, max_length=200, description="name of the scored dataset")


@router.post("/models/{ref}/batch-predictions", status_code=202, response_model=JobOut,
             summary="Score a whole dataset in chunks; the job writes the scored rows as a new dataset")
def batch_predictions(ref: str, body: BatchRequest, request: Request, session: DbSession,
                      submit: SubmitJob) -> JobOut:
    m = registry.resolve(session, ref)
    ds = datasets.get(session, body.dataset_id)
    model = load_model(request, m)
    missing = [c for c in required_columns(model) if c not in ds.columns]
    if missing:
        raise ApiError(422, "missing_features", f"dataset {ds.id} lacks column(s) the model needs: "
                       f"{', '.join(map(str, missing))}", {"field": "body.dataset_id", "missing": missing})
    params = {"model_id": m.id, "dataset_id": ds.id, "chunk_rows": body.chunk_rows,
              "name": body.name or f"{ds.name} scored by {m.name} v{m.version}", "submitted_by": submit.principal.name}
    session.close()
    return JobOut.of(submit("ml.batch_predict", params, kind="batch_predict"))

"""Models: start failure-model training, the registry (versions, aliases), online prediction."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from core import datasets, predictions, registry
from core.models import Model
from ml.training import ALGORITHMS, FailureModel
from server.deps import DbSession, Operator, SubmitJob, Viewer
from server.errors import ApiError
from server.schemas import JobOut

router = APIRouter(prefix="/api/v1", tags=["models"])
MAX_PREDICT_ROWS = 10_000


class TrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset_id: str
    task: Literal["failure"] = Field(description="failure (RUL models are not available yet)")
    algorithm: Literal[ALGORITHMS] = "lightgbm"  # type: ignore[valid-type]
    cv_folds: int = Field(default=5, ge=2, le=10)
    cost_false_alarm: float = Field(default=1.0, gt=0, le=1e6)
    cost_missed_failure: float = Field(default=10.0, gt=0, le=1e6)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,100}$",
                             description="registry name (default: from the dataset name)")


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
        return cls(**{k: getattr(m, k) for k in cls.model_fields if k != "aliases"}, aliases=aliases)


class ModelPage(BaseModel):
    items: list[ModelOut]
    total: int
    limit: int
    offset: int


class AliasRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alias: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$", examples=["production"])


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rows: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_PREDICT_ROWS)


@router.post("/ml/models", status_code=202, response_model=JobOut, summary="Train a failure-prediction model")
def train(body: TrainRequest, session: DbSession, submit: SubmitJob) -> JobOut:
    ds = datasets.get(session, body.dataset_id)
    schema = ds.schema or {}
    if not schema.get("target"):
        raise ApiError(422, "invalid_dataset", f"dataset {ds.id} has no target column: set schema.target with "
                       f"PATCH /api/v1/datasets/{ds.id}", {"field": "body.dataset_id"})
    positives = (ds.profile.get("class_balance") or {}).get("positives", 0)
    if positives < body.cv_folds:
        raise ApiError(422, "invalid_dataset", f"dataset has {positives} failures; {body.cv_folds}-fold CV needs at "
                       f"least {body.cv_folds}", {"field": "body.cv_folds", "positives": positives})
    name = body.name or (re.sub(r"[^A-Za-z0-9._-]+", "-", ds.name).strip("-")[:80] or "model") + "-failure"
    params = {**body.model_dump(), "name": name, "submitted_by": submit.principal.name}
    session.close()
    return JobOut.of(submit("ml.train_failure", params, kind="train_failure"))


@router.get("/predictions/{prediction_id}", summary="A stored prediction: inputs, outputs, model version")
def get_prediction(prediction_id: str, session: DbSession, _: Viewer) -> dict[str, Any]:
    p = predictions.get(session, prediction_id)
    return {"id": p.id, "model_id": p.model_id, "model_version": p.model_version, "inputs": p.inputs,
            "outputs": p.outputs, "created_by": p.created_by, "created_at": p.created_at.isoformat()}


@router.get("/models", response_model=ModelPage, summary="The model registry, newest first")
def list_models(session: DbSession, _: Viewer, kind: Annotated[Literal["failure", "rul", "tvae"] | None, Query()] = None,
                name: Annotated[str | None, Query(max_length=200)] = None,
                limit: Annotated[int, Query(ge=1, le=200)] = 50,
                offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> ModelPage:
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


def _frame_for(model: FailureModel, rows: list[dict[str, Any]]) -> tuple[pd.DataFrame, list[str]]:
    b = model.builder
    needed = [*b.numeric_, *b.categorical_, *[c for e in b.derived_.values() for c in e.columns]]
    needed = list(dict.fromkeys(needed))
    df = pd.DataFrame.from_records(rows)
    missing = [c for c in needed if c not in df.columns or df[c].isna().all()]
    if missing:
        raise ApiError(422, "missing_features", f"rows lack feature(s): {', '.join(missing)}",
                       {"field": "body.rows", "missing": missing, "required": needed})
    for c in [c for c in needed if c not in b.categorical_]:
        values = pd.to_numeric(df[c], errors="coerce")
        bad = df.index[values.isna() & df[c].notna()].tolist()
        if bad:
            raise ApiError(422, "invalid_feature", f"feature {c!r} must be a number; row {bad[0]} has "
                           f"{df[c].iloc[bad[0]]!r}", {"field": f"body.rows[{bad[0]}].{c}", "rows": bad[:20]})
        df[c] = values
    extra = sorted(set(df.columns) - set(needed))
    warnings = [f"ignored column(s) not used by the model: {', '.join(extra)}"] if extra else []
    return df, warnings


@router.post("/models/{ref}/predict", summary="Score readings (up to 10,000 rows); each is stored with an id")
def predict(ref: str, body: PredictRequest, request: Request, session: DbSession, who: Operator) -> dict[str, Any]:
    m = registry.resolve(session, ref)
    session.close()
    if m.kind != "failure":
        raise ApiError(422, "unsupported_model", f"model {m.id} is a {m.kind} model; only failure models predict here")
    model: FailureModel = request.app.state.models.load(m)
    df, warnings = _frame_for(model, body.rows)
    p = model.predict_proba(df)
    X = model.builder.transform(df)
    modes = {name: est.predict_proba(X)[:, 1] for name, est in model.mode_estimators.items()}
    out = [{"failure_probability": float(p[i]), "failure": bool(p[i] >= model.threshold),
            "mode_probabilities": {name: float(v[i]) for name, v in modes.items()}} for i in range(len(df))]
    ids = predictions.store(m.id, m.version, body.rows, out, who.name, request.app.state.db_url)
    for pid, item in zip(ids, out, strict=True):
        item["prediction_id"] = pid
    return {"model": {"id": m.id, "name": m.name, "version": m.version, "threshold": model.threshold},
            "predictions": out, "warnings": warnings, "rows": int(np.int64(len(out)))}

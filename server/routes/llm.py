"""LLM: grounded explanations of failure predictions (jobs on the `llm` queue) and their records."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import Field, model_validator
from sqlalchemy import func, select

from core import predictions, registry
from core.explanations import to_api
from core.jobs import get_by_id
from core.models import Explanation, Model
from core.settings import get_settings
from server.deps import DbSession, SubmitJob, Viewer
from server.errors import ApiError
from server.paging import PageOffset
from server.routes.models import failure_outputs, frame_for, load_model
from server.schemas import JobOut, StrictModel
from server.strings import CheckedRoute

router = APIRouter(prefix="/api/v1/llm", tags=["llm"], route_class=CheckedRoute)


class ExplainRequest(StrictModel):
    prediction_id: str | None = Field(default=None, description="a stored prediction (from /models/{ref}/predict)")
    model_id: str | None = Field(default=None, description="with `row`: a failure model id, or name / name@alias")
    row: dict[str, Any] | None = Field(default=None, description="with `model_id`: one reading, scored and stored first")
    provider: Literal["openai", "template"] | None = Field(
        default=None, description="default: openai when OPENAI_BASE_URL is configured, else template")
    refresh: bool = Field(default=False, description="word it again even if this explanation is cached")

    @model_validator(mode="after")
    def _one_source(self) -> ExplainRequest:
        if (self.prediction_id is None) == (self.model_id is None and self.row is None):
            raise ValueError("give either prediction_id, or model_id together with row")
        if self.prediction_id is None and (self.model_id is None or self.row is None):
            raise ValueError("model_id and row go together")
        return self


def _failure_model(m: Model, field: str) -> None:
    if m.kind != "failure":
        raise ApiError(422, "unsupported_model", f"model {m.id} is a {m.kind} model; explanations are for failure "
                       "models (failure probability, modes and attributions)", {"field": field})


@router.post("/explanations", status_code=202, response_model=JobOut,
             summary="Explain a prediction: attributions and normal ranges, worded by a provider (a job on llm)")
def create(body: ExplainRequest, request: Request, session: DbSession, submit: SubmitJob) -> JobOut:
    settings = get_settings()
    provider = body.provider or settings.default_llm_provider
    if provider == "openai" and not settings.openai_base_url:
        raise ApiError(422, "provider_not_configured", "the openai provider needs OPENAI_BASE_URL (and OPENAI_API_KEY "
                       "if the server wants one) in the platform's environment; or ask for provider \"template\"",
                       {"field": "body.provider"})
    if body.prediction_id is not None:
        pred = predictions.get(session, body.prediction_id)
        _failure_model(session.get(Model, pred.model_id), "body.prediction_id")
        prediction_id = pred.id
    else:
        m = registry.resolve(session, body.model_id)
        _failure_model(m, "body.model_id")
        model = load_model(request, m)
        df, _ = frame_for(model, [body.row])
        prediction_id = predictions.store(m.id, m.version, [body.row], failure_outputs(model, df),
                                          submit.principal.name, request.app.state.db_url)[0]
    params = {"prediction_id": prediction_id, "provider": provider, "refresh": body.refresh,
              "submitted_by": submit.principal.name}
    session.close()
    return JobOut.of(submit("llm.explain", params, kind="explain"))


@router.get("/explanations/{explanation_id}", summary="One stored explanation")
def get(explanation_id: str, session: DbSession, _: Viewer) -> dict[str, Any]:
    return to_api(get_by_id(session, Explanation, explanation_id, "explanation"))


@router.get("/explanations", summary="Stored explanations, newest first, by prediction or model")
def list_(session: DbSession, _: Viewer, prediction_id: str | None = None, model_id: str | None = None,
          limit: Annotated[int, Query(ge=1, le=200)] = 50, *, offset: PageOffset) -> dict[str, Any]:
    q = select(Explanation)
    if prediction_id:
        q = q.where(Explanation.prediction_id == prediction_id)
    if model_id:
        q = q.where(Explanation.model_id == model_id)
    total = session.execute(select(func.count()).select_from(q.subquery())).scalar_one()
    rows = session.execute(q.order_by(Explanation.created_at.desc(), Explanation.id).limit(limit).offset(offset)).scalars()
    return {"items": [to_api(e) for e in rows], "total": total, "limit": limit, "offset": offset}

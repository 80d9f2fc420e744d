"""`llm` queue. LLM jobs: grounded explanations of predictions (llm/ holds the domain code)."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from celery_app import app
from core import registry
from core.artifacts import ArtifactStore
from core.db import session_scope
from core.explanations import cache_key, to_api
from core.models import Explanation, Model, Prediction
from core.settings import Settings
from tasks.base import JobContext, LoggingTask
from tasks.system import ping_job

TOKEN_FLUSH_S = 0.2  # streamed text is written to the job's events at most ~5 times a second
_MODELS: registry.ModelCache | None = None
_LOCK = threading.Lock()


@app.task(name="llm.ping", base=LoggingTask, bind=True)
def ping(self: LoggingTask, job_id: str, seq: int) -> dict[str, Any]:
    return self.run_job(job_id, seq, ping_job)


_PROVIDERS: dict[tuple[Any, ...], Any] = {}


def provider_for(name: str, settings: Settings) -> Any:
    """The provider object for `name` (None = the template), configured from settings only. One
    client per configuration and process, so its HTTP connections are reused from job to job."""
    if name == "template":
        return None
    from llm.providers import OpenAICompatible

    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    config = (settings.openai_base_url, key, settings.llm_model, settings.llm_timeout_seconds,
              settings.llm_max_attempts, settings.llm_backoff_seconds, settings.llm_stream)
    with _LOCK:
        if config not in _PROVIDERS:
            _PROVIDERS.clear()
            _PROVIDERS[config] = OpenAICompatible(
                settings.openai_base_url, key, settings.llm_model, timeout_s=settings.llm_timeout_seconds,
                max_attempts=settings.llm_max_attempts, backoff_s=settings.llm_backoff_seconds,
                stream=settings.llm_stream)
        return _PROVIDERS[config]


class _TokenBuffer:
    def __init__(self, ctx: JobContext) -> None:
        self.ctx, self.parts, self.last, self.count = ctx, [], time.monotonic(), 0

    def __call__(self, text: str) -> None:
        self.parts.append(text)
        if time.monotonic() - self.last >= TOKEN_FLUSH_S:
            self.flush()

    def reset(self, reason: str) -> None:
        """The text streamed so far is void (a retry, a repair, the template fallback)."""
        self.parts = []
        self.ctx.emit("token_reset", {"reason": reason})
        self.last = time.monotonic()

    def flush(self) -> None:
        if self.parts:
            self.ctx.emit("token", {"text": "".join(self.parts), "seq": self.count})
            self.count += 1
            self.parts = []
        self.last = time.monotonic()
        self.ctx.check()


def explain_job(ctx: JobContext) -> dict[str, Any]:
    global _MODELS
    from llm.explain import PROMPT_VERSION, explain
    from llm.facts import build_facts

    p, settings = ctx.params, ctx.settings
    provider_name = p.get("provider") or settings.default_llm_provider
    llm_model = settings.llm_model if provider_name == "openai" else f"template/{PROMPT_VERSION}"
    with session_scope(write=False) as session:
        pred = session.get(Prediction, p["prediction_id"])
        if pred is None:
            raise ValueError(f"prediction {p['prediction_id']} no longer exists (purged after its retention period?)")
        row = session.get(Model, pred.model_id)
        endpoint = settings.openai_base_url if provider_name == "openai" else None
        key = cache_key(pred.id, pred.model_id, pred.model_version, provider_name, llm_model, endpoint, PROMPT_VERSION)
        if not p.get("refresh"):
            hit = (session.query(Explanation).filter(Explanation.cache_key == key)
                   .order_by(Explanation.created_at.desc()).first())
            if hit is not None:
                ctx.progress(1.0, "served from cache")
                return {"explanation_id": hit.id, "cached": True, "explanation": to_api(hit, cached=True)}
        inputs, prediction_id = dict(pred.inputs), pred.id
        session.expunge(row)
    ctx.progress(0.05, "computing attributions")
    with _LOCK:
        if _MODELS is None:
            _MODELS = registry.ModelCache(ArtifactStore(), max_items=8)
    model = _MODELS.load(row)  # sha256 verified before unpickling
    facts = build_facts(model, inputs, model.builder.schema)
    ctx.progress(0.2, f"wording with {provider_name}" + (f" ({llm_model})" if provider_name == "openai" else ""))
    tokens = _TokenBuffer(ctx)
    result = explain(facts, provider_for(provider_name, settings), on_token=tokens, sleep=ctx.sleep,
                     on_note=lambda m: ctx.log(m, level="warning"), on_reset=tokens.reset)
    tokens.flush()
    if result.get("fallback"):
        ctx.log("the LLM's answer could not be used after one repair; the template wording is stored", level="warning")
    # A template fallback is stored but never served from cache: the next request asks the LLM again.
    stored_key = key if not result.get("fallback") else f"fallback-{uuid.uuid4().hex}"
    ctx.stage(_StagedExplanation(Explanation(
        prediction_id=prediction_id, model_id=row.id, model_version=row.version, provider=provider_name,
        llm_model=llm_model, prompt_version=PROMPT_VERSION, cache_key=stored_key, result=result,
        facts=facts.to_dict(), job_id=ctx.job_id, created_by=p.get("submitted_by"))))
    return {"cached": False}  # + explanation_id and explanation when the job finishes


class _StagedExplanation:
    """The explanation's row, written in the transaction that finishes the job (a `core.jobs.Output`)."""

    def __init__(self, row: Explanation) -> None:
        self.row = row

    def record(self, session: Any) -> dict[str, Any]:
        session.add(self.row)
        session.flush()
        out = to_api(self.row)
        return {"explanation_id": out["id"], "explanation": out}

    def discard(self) -> None:
        return None  # nothing outside the database to remove


@app.task(name="llm.explain", base=LoggingTask, bind=True)
def explain_task(self: LoggingTask, job_id: str, seq: int) -> dict[str, Any]:
    return self.run_job(job_id, seq, explain_job)

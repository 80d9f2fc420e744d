"""`Idempotency-Key` on job-creating requests: the same key, per token, within the TTL, returns the
job it first created instead of a new one, so a client that lost a response can retry safely.

Modelled on the IETF draft (draft-ietf-httpapi-idempotency-key-header) and Stripe's keys:
- the key belongs to the token that sent it (another token's identical key is another key);
- a key sent again with a different request (method, path, body) is refused, never replayed;
- two concurrent requests with one key create one job: the key row is inserted in the job's own
  transaction under a primary key on (token, key), and the loser reads the winner's job;
- only a created job is remembered: a request refused with a 4xx stores nothing, so its retry is
  checked afresh.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.db import session_scope
from core.models import IdempotencyKey, Job, utcnow

HEADER = "Idempotency-Key"
KEY_PATTERN = r"^[!-~][ -~]{0,254}$"  # 1-255 printable ASCII characters, not starting with a space
_KEY_RE = re.compile(KEY_PATTERN)


class KeyReused(Exception):
    """The key was used by this token for a different request; `job_id` is the job it created."""

    def __init__(self, key: str, job_id: str) -> None:
        super().__init__(f"{HEADER} {key!r} was already used for a different request (job {job_id})")
        self.key, self.job_id = key, job_id


class Replay(Exception):
    """The key was used by this token for this same request: answer with `job` again."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"replay of job {job.id}")
        self.job = job


@dataclass(frozen=True)
class KeyClaim:
    """What a request with a key asks for: to be the first with (token_id, key)."""

    token_id: str
    key: str
    fingerprint: str
    ttl_hours: float

    def row(self, job_id: str) -> dict[str, Any]:
        return {"token_id": self.token_id, "key": self.key, "fingerprint": self.fingerprint, "job_id": job_id,
                "created_at": utcnow()}

    def clear_expired(self, session: Session) -> None:
        """An expired key is free again: remove its row before inserting the new one."""
        session.execute(delete(IdempotencyKey).where(
            IdempotencyKey.token_id == self.token_id, IdempotencyKey.key == self.key,
            IdempotencyKey.created_at < utcnow() - timedelta(hours=self.ttl_hours)))


def valid_key(key: str) -> bool:
    return bool(_KEY_RE.match(key))


def fingerprint(method: str, path: str, body: bytes) -> str:
    """sha256 of the request: JSON bodies canonically (key order and spacing don't matter)."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode() if body else b""
    except (ValueError, UnicodeDecodeError):
        canonical = body
    return hashlib.sha256(method.upper().encode() + b" " + path.encode() + b"\n" + canonical).hexdigest()


def existing(claim: KeyClaim, db_url: str | None = None) -> Job | None:
    """The job this claim's key created, if the key is live and was used for the same request.

    Raises KeyReused if it was used for a different one.
    """
    with session_scope(db_url, write=False) as session:
        row = session.scalars(select(IdempotencyKey).where(
            IdempotencyKey.token_id == claim.token_id, IdempotencyKey.key == claim.key,
            IdempotencyKey.created_at >= utcnow() - timedelta(hours=claim.ttl_hours))).first()
        if row is None:
            return None
        if row.fingerprint != claim.fingerprint:
            raise KeyReused(claim.key, row.job_id)
        job = session.get(Job, row.job_id)
        if job is not None:
            session.expunge(job)
        return job


def purge(ttl_hours: float, db_url: str | None = None) -> int:
    """Remove keys past their TTL (the API's maintenance loop calls this hourly)."""
    with session_scope(db_url) as session:
        result = session.execute(delete(IdempotencyKey).where(
            IdempotencyKey.created_at < utcnow() - timedelta(hours=ttl_hours)))
        return int(result.rowcount or 0)

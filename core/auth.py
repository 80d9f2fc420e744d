"""API tokens: random bearer secrets stored only as SHA-256 hashes, each with a role.

Roles are ordered: `viewer` reads, `operator` also starts and cancels jobs, `admin` also manages
tokens. Tokens carry 256 bits of randomness, so a fast hash is enough (no password stretching).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.db import session_scope
from core.models import ROLES, ApiToken, utcnow

log = logging.getLogger("pm.auth")

TOKEN_PREFIX = "pm_"
MAX_TOKEN_CHARS = 200
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}


@dataclass(frozen=True)
class Principal:
    token_id: str
    name: str
    role: str

    def has(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(session: Session, *, name: str, role: str, created_by: str | None = None) -> tuple[ApiToken, str]:
    """Store a new token and return (row, plaintext). The plaintext is shown once, never stored."""
    if role not in ROLE_RANK:
        raise ValueError(f"role must be one of {', '.join(ROLES)}; got {role!r}")
    name = name.strip()
    if not name or len(name) > 128:
        raise ValueError("name must be 1..128 characters")
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(name=name, role=role, token_hash=hash_token(plaintext), prefix=plaintext[:10], created_by=created_by)
    session.add(row)
    session.flush()
    return row, plaintext


def well_formed(token: str) -> bool:
    """Could this be one of our tokens? (Checked before any database read.)"""
    return token.startswith(TOKEN_PREFIX) and len(token) <= MAX_TOKEN_CHARS and token.isascii() and token.isprintable()


def authenticate(session: Session, token: str) -> Principal | None:
    if not well_formed(token):
        return None
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None or row.revoked_at is not None:
        return None
    return Principal(token_id=row.id, name=row.name, role=row.role)


class PrincipalCache:
    """Recently verified tokens, so a busy poller doesn't cost a database read per request.

    Entries live `ttl_s` seconds: a token revoked elsewhere stops working within that time; one
    revoked through this process's API stops at once (`forget`). Only hashes are kept.
    """

    TOUCH_EVERY_S = 60.0

    def __init__(self, ttl_s: float = 5.0, max_entries: int = 10_000) -> None:
        self.ttl_s, self.max_entries = ttl_s, max_entries
        self._items: dict[str, tuple[Principal, float]] = {}
        self._touched: dict[str, float] = {}
        self._lock = threading.Lock()

    def due_for_touch(self, token_id: str) -> bool:
        """True at most once a minute per token: when to record `last_used_at` (a write)."""
        now = time.monotonic()
        with self._lock:
            if now - self._touched.get(token_id, -1e9) < self.TOUCH_EVERY_S:
                return False
            self._touched[token_id] = now
            return True

    def get(self, token: str) -> Principal | None:
        key = hash_token(token)
        with self._lock:
            hit = self._items.get(key)
            if hit and hit[1] > time.monotonic():
                return hit[0]
            self._items.pop(key, None)
        return None

    def put(self, token: str, principal: Principal) -> None:
        with self._lock:
            if len(self._items) >= self.max_entries:
                self._items.clear()
            self._items[hash_token(token)] = (principal, time.monotonic() + self.ttl_s)

    def forget(self, token_id: str) -> None:
        with self._lock:
            for key in [k for k, (p, _) in self._items.items() if p.token_id == token_id]:
                del self._items[key]


def verify(token: str, cache: PrincipalCache, db_url: str) -> Principal | None:
    """The token's principal, or None if it is malformed, unknown or revoked.

    From the cache when recently verified, else one database read (blocking: call it from a
    thread in async code). Records `last_used_at` at most once a minute per token.
    """
    if not well_formed(token):
        return None
    principal = cache.get(token)
    if principal is not None:
        return principal
    with session_scope(db_url, write=False) as session:
        principal = authenticate(session, token)
    if principal is None:
        return None
    cache.put(token, principal)
    if cache.due_for_touch(principal.token_id):
        try:
            with session_scope(db_url) as session:
                touch(session, principal.token_id)
        except Exception:  # noqa: BLE001 - bookkeeping only; the token was verified
            log.warning("could not record token use", extra={"token_id": principal.token_id}, exc_info=True)
    return principal


def touch(session: Session, token_id: str) -> None:
    session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=utcnow()))


def revoke(session: Session, token_id: str) -> bool:
    res = session.execute(
        update(ApiToken).where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None)).values(revoked_at=utcnow())
    )
    return res.rowcount == 1

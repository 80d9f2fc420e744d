"""Database engine and sessions (SQLAlchemy 2). SQLite by default, PostgreSQL via DATABASE_URL."""

from __future__ import annotations

import math
import random
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core.settings import get_settings


def normalise_url(url: str) -> str:
    # psycopg 3 is the driver we ship; accept the plain scheme people paste from docs.
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def get_engine(url: str | None = None) -> Engine:
    # Resolve before caching, so a change of settings (tests, reconfiguration) is never masked.
    return _engine(normalise_url(url or get_settings().db_url), *_timeouts())


def _timeouts() -> tuple[float, float]:
    s = get_settings()
    return s.db_connect_timeout_seconds, s.db_statement_timeout_seconds


def postgres_connect_args(connect_timeout_s: float, statement_timeout_s: float) -> dict[str, object]:
    """libpq options that stop a hung PostgreSQL from blocking a thread forever.

    - connect_timeout: an unreachable server fails the connect (libpq takes whole seconds, min 2);
    - statement_timeout: the server cancels a statement (a lock wait included) that runs longer;
    - TCP keepalives and tcp_user_timeout: a server that vanished mid-statement (no RST, e.g. a
      partition) is noticed by the client instead of waiting on the socket indefinitely.
    """
    ms = max(1, int(statement_timeout_s * 1000))
    return {"connect_timeout": max(2, math.ceil(connect_timeout_s)),
            "options": f"-c statement_timeout={ms}",
            "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
            "tcp_user_timeout": ms + 5000}


@lru_cache(maxsize=8)
def _engine(url: str, connect_timeout_s: float = 5.0, statement_timeout_s: float = 30.0) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # SQLite has no server to hang: a lock held by another process is waited out for at most
        # the statement timeout (busy timeout), and then the statement fails.
        busy_ms = int(statement_timeout_s * 1000)
        engine = create_engine(url, connect_args={"timeout": statement_timeout_s, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001
            cur = dbapi_conn.cursor()
            # WAL lets the API read while workers write; NORMAL is durable across app crashes.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute(f"PRAGMA busy_timeout={busy_ms}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # noqa: ANN001
            # Writers take the lock up front (no SQLITE_BUSY on a read-to-write upgrade between
            # processes); readers use a deferred snapshot so pollers never queue behind writers.
            if conn.get_execution_options().get("sqlite_immediate", False):
                try:
                    _begin_immediate(conn.connection.dbapi_connection, statement_timeout_s)
                except sqlite3.OperationalError as exc:
                    # Raised from an event hook SQLAlchemy doesn't wrap: wrap it like any statement's
                    # error, so callers that ride out a busy database (DBAPIError) see it as one.
                    raise OperationalError("BEGIN IMMEDIATE", None, exc) from exc
            else:
                conn.exec_driver_sql("BEGIN")

        # pysqlite's own transaction handling must be off for the BEGIN above to take effect.
        @event.listens_for(engine, "connect", insert=True)
        def _sqlite_autocommit(dbapi_conn, _record):  # noqa: ANN001
            dbapi_conn.isolation_level = None

        return engine
    return create_engine(url, pool_pre_ping=False, pool_recycle=300, pool_size=10, max_overflow=20,
                         pool_timeout=max(connect_timeout_s, 5.0) * 2,
                         connect_args=postgres_connect_args(connect_timeout_s, statement_timeout_s))


def _begin_immediate(raw: sqlite3.Connection, timeout_s: float = 30.0) -> None:
    """BEGIN IMMEDIATE, retrying every few milliseconds while another process holds the write lock.

    SQLite's own busy handler sleeps in steps of up to 100 ms, so under contention a waiter slept
    long after the lock was free; write transactions here last about a millisecond.
    """
    raw.execute("PRAGMA busy_timeout=0")
    try:
        delay, deadline = 0.0005, time.monotonic() + timeout_s
        while True:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 1.5, 0.005)
    finally:
        raw.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")


def _sessionmaker(url: str | None) -> sessionmaker[Session]:
    return _sessionmaker_for(normalise_url(url or get_settings().db_url))


def _sessionmaker_for(url: str) -> sessionmaker[Session]:
    return _sessionmaker_cached(url, *_timeouts())


@lru_cache(maxsize=8)
def _sessionmaker_cached(url: str, connect_timeout_s: float, statement_timeout_s: float) -> sessionmaker[Session]:
    return sessionmaker(bind=_engine(url, connect_timeout_s, statement_timeout_s), expire_on_commit=False)


@contextmanager
def session_scope(url: str | None = None, *, write: bool = True) -> Iterator[Session]:
    """A session that commits on success and rolls back on error.

    `write=True` takes SQLite's write lock at the first statement; PostgreSQL ignores it.
    """
    session = _sessionmaker(url)()
    if write:
        session.connection(execution_options={"sqlite_immediate": True})
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def new_session(url: str | None = None) -> Session:
    return _sessionmaker(url)()


def dispose_all() -> None:
    """Forget every engine and pool (after a fork: the child must open its own connections)."""
    _sessionmaker_cached.cache_clear()
    _engine.cache_clear()


def ping_database(url: str | None = None) -> tuple[bool, str | None]:
    try:
        with get_engine(url).connect() as conn:
            conn.execute(text("SELECT 1"))
        return True, None
    except Exception as exc:  # noqa: BLE001 - health reports any failure
        return False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"

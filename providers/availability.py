"""Whether the database can answer: which errors mean it is away, a per-process outage log, stopping, probe connections."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from urllib.parse import quote

from sqlalchemy import Engine, create_engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

logger = logging.getLogger(__name__)

# SQLSTATE classes and codes a PostgreSQL server sends when the connection, not the statement, is the
# trouble: class 08 (connection exception), 57P01-57P03 (admin or crash shutdown, cannot connect now).
_PG_CONNECTION_STATES = ("08", "57P01", "57P02", "57P03")
# SQLite's primary result codes for a database file that cannot be opened or read.
_SQLITE_UNREACHABLE = {sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR}
_SQLITE_BUSY = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


class Stopping(threading.Event):
    """Set once when this process begins to stop: waits that could outlast a graceful shutdown (long polls) end at once."""


class Unavailable(Exception):
    """The service cannot answer now, but may shortly (503 with Retry-After); `detail` says why, for the client."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def unavailable_reason(error: BaseException) -> str | None:
    """Say why `error` means the database cannot be reached, or None for any other fault.

    Connection-level only: a refused or lost connection, a server shutting down, an exhausted pool, a
    SQLite write lock that did not come free within the busy timeout.
    Constraint violations, SQL mistakes, deadlocks and statement timeouts are faults of the request or
    the code and stay what they were (a domain mapping or a 500).
    """
    if isinstance(error, sa_exc.TimeoutError):
        return f"no pooled connection became free in time ({_first_line(error)})"
    if not isinstance(error, sa_exc.DBAPIError):
        return None
    if error.connection_invalidated:
        return f"the connection was lost ({_first_line(error.orig)})"
    if isinstance(error.orig, sqlite3.Error) and (getattr(error.orig, "sqlite_errorcode", 0) & 0xFF) in _SQLITE_BUSY:
        # The write lock stayed taken for the whole busy timeout (APP_SQLITE_LOCK_TIMEOUT_SECONDS).
        return f"the database stayed locked by other writers ({_first_line(error.orig)})"
    if isinstance(error, sa_exc.InterfaceError) or (
        isinstance(error, sa_exc.OperationalError) and _connection_level(error.orig)
    ):
        return f"cannot connect ({_first_line(error.orig)})"
    return None


def _connection_level(orig: BaseException | None) -> bool:
    if isinstance(orig, sqlite3.Error):
        return (getattr(orig, "sqlite_errorcode", 0) & 0xFF) in _SQLITE_UNREACHABLE
    if orig is not None and hasattr(orig, "pgcode"):
        # libpq's own errors (refused, timed out, closed by the server) carry no SQLSTATE at all.
        code = orig.pgcode
        return code is None or code.startswith(_PG_CONNECTION_STATES)
    return False


def _first_line(error: BaseException | None) -> str:
    message = str(error).strip()
    return message.splitlines()[0] if message else type(error).__name__


class DatabaseOutages:
    """This process's view of whether the database answers: one warning when it stops, one info line when it is back.

    Every request that fails for want of the database reports it, from any thread; only the first of
    an outage is logged. The first request (or readiness check) that the database answers again ends
    the outage. `ongoing` is read without the lock, so the per-request check when nothing is wrong
    costs one attribute read.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: float | None = None
        self._failures = 0

    @property
    def ongoing(self) -> bool:
        """Whether an outage has been reported and not yet seen to end."""
        return self._since is not None

    def failed(self, reason: str) -> None:
        """Record a request that could not reach the database; log the first of each outage."""
        with self._lock:
            self._failures += 1
            if self._since is not None:
                return
            self._since = time.monotonic()
        logger.warning("Database unavailable: %s. Answering 503 until it is back.", reason)

    def answered(self) -> None:
        """Record that the database answered; log the end of an outage, if one was under way."""
        if self._since is None:
            return
        with self._lock:
            if self._since is None:
                return
            lasted, failures = time.monotonic() - self._since, self._failures
            self._since, self._failures = None, 0
        logger.info("Database reachable again after %.1f s; %d request(s) were answered 503.", lasted, failures)


def probe_engine(database_url: str, timeout_seconds: int) -> Engine:
    """Return an engine whose every connection is new and bounded by `timeout_seconds` (connect and statement)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        path = url.database or ""
        if not path or path == ":memory:":
            return create_engine(url, poolclass=NullPool)
        # mode=rw: a probe must never create an empty database file where the real one is missing.
        target = f"file:{quote(os.path.abspath(path))}?mode=rw"
        return create_engine(
            "sqlite://",
            poolclass=NullPool,
            creator=lambda: sqlite3.connect(target, uri=True, timeout=timeout_seconds, check_same_thread=False),
        )
    return create_engine(
        url,
        poolclass=NullPool,
        # libpq waits at least 2 s to connect whatever is asked; the statement timeout bounds the query.
        connect_args={"connect_timeout": timeout_seconds, "options": f"-c statement_timeout={timeout_seconds * 1000}"},
    )

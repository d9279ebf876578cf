"""Readiness: this process can serve when the database answers a bounded ping and is migrated to head."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, inspect, text
from sqlalchemy import exc as sa_exc

from providers.availability import DatabaseOutages, Stopping, Unavailable, probe_engine, unavailable_reason

ALEMBIC_VERSION = "alembic_version"


class Readiness:
    """Whether this process can serve: the database answers a bounded ping and its schema is at the migrations' head.

    Pings on connections of its own (no pool), opened with a timeout, so a check neither waits for a
    busy request pool nor hangs on a dead host; it proves that the database accepts connections now.
    """

    def __init__(self, database_url: str, heads: Iterable[str], *, timeout_seconds: int,
                 outages: DatabaseOutages, stopping: Stopping) -> None:
        self._heads = frozenset(heads)
        self._timeout = timeout_seconds
        self._outages = outages
        self._stopping = stopping
        self._engine = probe_engine(database_url, timeout_seconds)

    def check(self) -> None:
        """Return if ready; raise Unavailable saying why not."""
        if self._stopping.is_set():
            # Balancers that still probe a stopping process take it out of rotation.
            raise Unavailable("The service is stopping.")
        try:
            with self._engine.connect() as connection:
                current = _current_revisions(connection)
        except sa_exc.DBAPIError as error:
            reason = unavailable_reason(error)
            if reason is not None:
                self._outages.failed(reason)
                raise Unavailable("The database is unreachable.") from None
            if isinstance(error, sa_exc.OperationalError):
                # PostgreSQL's statement_timeout (query_canceled), SQLite's busy timeout: up, but too slow.
                raise Unavailable(f"The database did not answer within {self._timeout} s.") from None
            raise
        self._outages.answered()
        if current != self._heads:
            raise Unavailable(
                f"The database's migrations are behind: current {_revisions(current)}, head {_revisions(self._heads)}."
            )

    def dispose(self) -> None:
        """Release the probe engine."""
        self._engine.dispose()


def _current_revisions(connection: Connection) -> frozenset[str]:
    # What Alembic's MigrationContext.get_current_heads reads, without the two log lines it writes per call.
    if not inspect(connection).has_table(ALEMBIC_VERSION):
        return frozenset()
    return frozenset(connection.execute(text(f"SELECT version_num FROM {ALEMBIC_VERSION}")).scalars())


def _revisions(revisions: frozenset[str]) -> str:
    return ", ".join(sorted(revisions)) or "none"

"""The single owner of each request's database transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Connection

# The database connections opened during the request being handled (in practice one).
_connections: ContextVar[list[Connection] | None] = ContextVar("request_connections", default=None)


def attach_connection(connection: Connection) -> Connection:
    """Register a request's connection so the transaction boundary ends its transaction and returns it."""
    connections = _connections.get()
    if connections is None:
        connection.close()
        raise RuntimeError("A request connection was opened outside transaction_boundary().")
    connections.append(connection)
    return connection


class Outcome:
    """What the handler answered; the boundary commits only for a status below 400."""

    status = 200

    def record(self, result: Any) -> Any:
        """Note the status of a handler result (`body`, `(body, status)` or `(body, status, headers)`)."""
        if isinstance(result, tuple) and len(result) >= 2 and isinstance(result[1], int):
            self.status = result[1]
        return result


@contextmanager
def transaction_boundary() -> Iterator[Outcome]:
    """Commit after a successful answer, roll back after an error answer or an exception, always close.

    Providers only execute statements; this is the one place a transaction is committed.
    """
    connections: list[Connection] = []
    token = _connections.set(connections)
    outcome = Outcome()
    try:
        yield outcome
        for connection in connections:
            if outcome.status < 400:
                connection.commit()
            else:
                connection.rollback()
    finally:
        _connections.reset(token)
        for connection in connections:
            connection.close()  # rolls back whatever was not committed, returns it to the pool

"""The single owner of each request's database transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy.orm import Session

# The sessions opened during the request being handled (in practice one).
_sessions: ContextVar[list[Session] | None] = ContextVar("request_sessions", default=None)


def attach_session(session: Session) -> Session:
    """Register a request's session so the transaction boundary ends it."""
    sessions = _sessions.get()
    if sessions is None:
        session.close()
        raise RuntimeError("A request session was opened outside transaction_boundary().")
    sessions.append(session)
    return session


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

    Providers only flush; this is the one place a transaction is committed.
    """
    sessions: list[Session] = []
    token = _sessions.set(sessions)
    outcome = Outcome()
    try:
        yield outcome
        for session in sessions:
            if outcome.status < 400:
                session.commit()
            else:
                session.rollback()
    finally:
        _sessions.reset(token)
        for session in sessions:
            session.close()  # rolls back whatever was not committed

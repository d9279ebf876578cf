"""The single owner of each request's database transaction."""

from __future__ import annotations

from flask import Flask, Response, g
from sqlalchemy.orm import Session

_SESSION_KEY = "db_session"


def attach_session(session: Session) -> Session:
    """Register the request's session so the transaction boundary can end it."""
    setattr(g, _SESSION_KEY, session)
    return session


def install_transaction_boundary(app: Flask) -> None:
    """Commit after a successful response, roll back after an error or exception, always close.

    Providers only flush; this is the one place a transaction is committed.
    """

    @app.after_request
    def _finish(response: Response) -> Response:
        session: Session | None = g.get(_SESSION_KEY)
        if session is not None:
            if response.status_code < 400:
                session.commit()
            else:
                session.rollback()
        return response

    @app.teardown_request
    def _close(_error: BaseException | None) -> None:
        session: Session | None = g.pop(_SESSION_KEY, None)
        if session is not None:
            session.close()  # rolls back whatever was not committed

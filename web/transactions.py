"""The request's one database transaction, owned by Flask's request lifecycle."""

from __future__ import annotations

from flask import Flask, Response
from injector import Inject
from sqlalchemy import Connection, Engine


class RequestTransaction:
    """The request's connection, opened on first use; only `end` commits, and only Flask's hooks call it.

    Providers run statements on `connection()` and never commit. A request that touches no database
    (a bad cursor answered 400, the health check) never checks a connection out of the pool.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection: Connection | None = None

    def connection(self) -> Connection:
        """Return the request's connection, checking one out of the pool the first time."""
        if self._connection is None:
            self._connection = self._engine.connect()
        return self._connection

    def end(self, status: int) -> None:
        """Commit after an answer below 400, roll back after any other."""
        if self._connection is None:
            return
        if status < 400:
            self._connection.commit()
        else:
            self._connection.rollback()

    def close(self) -> None:
        """Return the connection to the pool; whatever was not committed is rolled back."""
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.close()


def install_transaction_boundary(flask_app: Flask) -> None:
    """Register the hooks that end each request's transaction: commit below 400, else roll back; always close.

    Registered before FlaskInjector is constructed, so Flask-Injector wraps them and supplies their
    `Inject[...]` parameter from the request scope: the same RequestTransaction the handler's providers got.
    The after-request hook runs before the response is sent, so a client never sees a 2xx for a write
    that failed to commit. A handler that raises never reaches it; the teardown then rolls back and closes.
    """

    @flask_app.after_request
    def end_transaction(response: Response, transaction: Inject[RequestTransaction]) -> Response:
        transaction.end(response.status_code)
        return response

    @flask_app.teardown_request
    def close_transaction(_error: BaseException | None, transaction: Inject[RequestTransaction]) -> None:
        transaction.close()

"""The request's one database transaction, owned by Flask's request lifecycle."""

from __future__ import annotations

from flask import Flask, Response, g, request
from sqlalchemy import Connection, Engine

from providers.availability import DatabaseOutages
from providers.database import WRITES


class RequestTransaction:
    """The request's connection, opened on first use; only `end` commits, and only Flask's hooks call it.

    Providers run statements on `connection()` and never commit. A request that touches no database
    (a bad cursor answered 400, the health check) never checks a connection out of the pool.
    """

    def __init__(self, engine: Engine, *, writes: bool = True) -> None:
        self._engine = engine
        self._writes = writes
        self._connection: Connection | None = None

    def connection(self) -> Connection:
        """Return the request's connection, checking one out of the pool the first time."""
        if self._connection is None:
            connection = self._engine.connect()
            if self._writes:
                connection.execution_options(**{WRITES: True})
            self._connection = connection
        return self._connection

    def end(self, status: int) -> bool:
        """Commit after an answer below 400, roll back after any other; return whether the database was used."""
        if self._connection is None:
            return False
        if status < 400:
            self._connection.commit()
        else:
            self._connection.rollback()
        return True

    def close(self) -> None:
        """Return the connection to the pool; whatever was not committed is rolled back."""
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.close()


READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def begin_request_transaction(engine: Engine) -> RequestTransaction:
    """Return a new RequestTransaction for the current Flask request, where the request's hooks will end it."""
    transaction = g.request_transaction = RequestTransaction(engine, writes=request.method not in READ_ONLY_METHODS)
    return transaction


def install_transaction_boundary(flask_app: Flask, outages: DatabaseOutages | None = None) -> None:
    """Register the hooks that end each request's transaction: commit below 400, else roll back; always close.

    The transaction is the request-scoped one Flask-Injector's scope handed to the request's providers;
    `begin_request_transaction` keeps it in `g` too, so a request that touched no provider (the health
    check, a 400 on a bad cursor) has nothing to end, and the hooks cost no injector look-up. The
    after-request hook runs before the response is sent, so a client never sees a 2xx for a write that
    failed to commit; a handler that raises never reaches it, and the teardown then rolls back and closes.
    A transaction that ends well tells `outages` that the database answers (ending an outage it logged).
    """
    if outages is None:
        outages = DatabaseOutages()

    @flask_app.after_request
    def end_transaction(response: Response) -> Response:
        transaction = g.get("request_transaction")
        if transaction is not None and transaction.end(response.status_code) and outages.ongoing:
            outages.answered()
        return response

    @flask_app.teardown_request
    def close_transaction(_error: BaseException | None) -> None:
        transaction = g.pop("request_transaction", None)
        if transaction is not None:
            transaction.close()

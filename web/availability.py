"""503 problems with Retry-After: the database out of reach, the service not ready; and stopping on a signal."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from connexion.apps import AbstractApp
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from connexion.middleware.exceptions import ExceptionMiddleware
from connexion.problem import problem
from sqlalchemy.exc import SQLAlchemyError

from providers.availability import DatabaseOutages, Stopping, Unavailable, unavailable_reason

logger = logging.getLogger(__name__)

DATABASE_UNAVAILABLE = "The database is unavailable; try again later."


def register_availability_handlers(app: AbstractApp, outages: DatabaseOutages, retry_after_seconds: int) -> None:
    """Answer database outages and Unavailable with 503 problem+json and Retry-After; other database faults stay 500."""
    retry_after = {"Retry-After": str(retry_after_seconds)}

    async def database_error(request: ConnexionRequest, error: SQLAlchemyError) -> ConnexionResponse:
        reason = unavailable_reason(error)
        if reason is None:
            # A constraint violation or an SQL mistake is a fault in the code: logged with its trace, 500.
            return ExceptionMiddleware.common_error_handler(request, error)
        # No trace per request: the outage is logged once, when it begins, and once when it ends.
        outages.failed(reason)
        logger.debug("503 for %s %s: database unavailable (%s)", request.method, request.url.path, reason)
        return problem(status=503, title="Service Unavailable", detail=DATABASE_UNAVAILABLE, headers=retry_after)

    async def unavailable(_request: ConnexionRequest, error: Unavailable) -> ConnexionResponse:
        return problem(status=503, title="Service Unavailable", detail=error.detail, headers=retry_after)

    app.add_error_handler(SQLAlchemyError, database_error)
    app.add_error_handler(Unavailable, unavailable)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stopping_on_signals(stopping: Stopping) -> Iterator[None]:
    """Set `stopping` when SIGTERM or SIGINT arrives, then let the server's own handler stop the server.

    Used around the serving part of the lifespan. uvicorn handles both signals itself (a graceful
    shutdown: stop accepting, finish the requests in flight, then the lifespan's shutdown), and the
    lifespan's shutdown comes only after the requests in flight are done, too late to cut a long poll
    short. So the handler the server installed is wrapped for as long as the app serves. Only a Python
    handler is wrapped (one the server installed), never the default action, and only in the main
    thread, where signal handlers live; an app served from another thread (tests) just is not woken.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    wrapped = {}
    for number in STOP_SIGNALS:
        previous = signal.getsignal(number)
        if callable(previous):
            handler = _setting(stopping, previous)
            signal.signal(number, handler)
            wrapped[number] = (previous, handler)
    try:
        yield
    finally:
        for number, (previous, handler) in wrapped.items():
            if signal.getsignal(number) is handler:  # unless someone has replaced it since
                signal.signal(number, previous)


def _setting(stopping: Stopping, previous):
    def handle(number, frame) -> None:
        stopping.set()
        previous(number, frame)

    return handle

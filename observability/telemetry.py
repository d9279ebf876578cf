"""The outermost middleware: a request id on every answer and in every problem, request metrics, the access log."""

from __future__ import annotations

import logging
import time

import orjson
from flask import Flask, g
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from observability.metrics import REQUEST_METRICS, UNROUTED
from observability.request_ids import (
    CURRENT_REQUEST,
    RequestInfo,
    authenticated_principal,
    current_request_id,
    request_id_from,
    routed_operation_id,
)

access_logger = logging.getLogger("rooms.access")

_PROBLEM = b"application/problem+json"
# A WebSocket handshake is an HTTP request too, answered (here: refused) with an HTTP response.
_REQUESTS = frozenset({"http", "websocket"})
_RESPONSE_STARTS = frozenset({"http.response.start", "websocket.http.response.start"})
_RESPONSE_BODIES = frozenset({"http.response.body", "websocket.http.response.body"})
_CLIENT_GONE = 499  # the status label of a request whose client left before any answer (nginx's convention)


class RequestTelemetry:
    """Give each request an id, answer it in `X-Request-ID` and in every problem document, count and log the answer.

    It sits in front of Connexion's whole stack, so it sees every answer, also the problems Connexion's own
    middleware makes (security, validation, 404, 405, 413, 500). The operationId comes from the scope's
    extensions: Connexion's RoutingMiddleware records it there (`connexion_routing`) in a shallow copy of
    the scope, so the extensions dict this middleware puts in the scope first is the one routing writes to.
    A request id is 1-128 characters of `[A-Za-z0-9._:-]`; anything else from a client is replaced, never
    refused. Handlers and log records read it through `observability.request_ids.current_request_id()` (and Flask's `g`).
    """

    def __init__(self, app: ASGIApp, *, access_log: bool = True) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in _REQUESTS:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        client_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                client_id = value
                break
        request_id = request_id_from(client_id)
        id_header = (b"x-request-id", request_id.encode("ascii"))
        extensions = scope.get("extensions")
        if extensions is None:
            extensions = scope["extensions"] = {}
        token = CURRENT_REQUEST.set(RequestInfo(request_id, extensions))
        status = 0
        held: Message | None = None
        chunks: list[bytes] = []

        async def send_with_id(message: Message) -> None:
            nonlocal status, held
            if message["type"] in _RESPONSE_STARTS:
                status = message["status"]
                headers = [*message.get("headers", ()), id_header]
                message = {**message, "headers": headers}
                for name, value in headers:
                    if name == b"content-type":
                        if value.startswith(_PROBLEM):
                            held = message  # sent with the body, once the body has its request_id
                            return
                        break
            elif held is not None and message["type"] in _RESPONSE_BODIES:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                start, held = held, None
                start, body = _problem_with_request_id(start, b"".join(chunks), request_id)
                await send(start)
                message = {"type": message["type"], "body": body}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            status = status or 500  # what the server answers for an app that raised before answering
            raise
        finally:
            seconds = time.perf_counter() - started
            operation_id = routed_operation_id(extensions) or UNROUTED
            status = status or _CLIENT_GONE  # no answer and no error: the client went away (or was cancelled)
            REQUEST_METRICS.record(operation_id, scope.get("method", "GET"), status, seconds)
            if self.access_log and access_logger.isEnabledFor(logging.INFO):
                _log_access(scope, request_id, operation_id, status, seconds, authenticated_principal(extensions))
            CURRENT_REQUEST.reset(token)


def _problem_with_request_id(start: Message, body: bytes, request_id: str) -> tuple[Message, bytes]:
    """Return the start message and body of a problem document with `request_id` added (if it is a JSON object)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return start, body  # an empty body (HEAD) or not JSON after all: leave it as it is
    if not isinstance(document, dict) or "request_id" in document:
        return start, body
    document["request_id"] = request_id
    body = orjson.dumps(document)
    length = str(len(body)).encode("ascii")
    start["headers"] = [(name, length if name == b"content-length" else value) for name, value in start["headers"]]
    return start, body


def _log_access(scope: Scope, request_id: str, operation_id: str, status: int, seconds: float,
                principal: str | None) -> None:
    milliseconds = round(seconds * 1000, 3)
    path = scope["path"]
    if not path.isprintable():
        path = path.encode("unicode_escape").decode("ascii")  # a newline in a path must not start a log line
    method = scope.get("method", "GET")
    # Built and handed over directly: Logger.info would also look up its caller's file and line in the
    # stack, about a quarter of the line's cost, for fields no format here shows.
    record = access_logger.makeRecord(
        access_logger.name, logging.INFO, "", 0, "%s %s %s %.1f ms %s", (method, path, status, milliseconds, operation_id),
        None, extra={"request_id": request_id, "operation_id": operation_id, "method": method, "path": path,
                     "status": status, "duration_ms": milliseconds, "principal": principal},
    )
    access_logger.handle(record)


def install_request_id_in_g(flask_app: Flask) -> None:
    """Make the request id available to Flask code as `g.request_id`."""

    @flask_app.before_request
    def remember_request_id() -> None:
        g.request_id = current_request_id()

"""ASGI middleware that frames each request before Connexion sees it: limits, codings, header names, upgrades, paths."""

from __future__ import annotations

import re

from connexion.exceptions import ProblemException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rest.media_types import JsonNotUtf8, MalformedMediaType, canonical_media_type
from rest.problems import PROBLEM_MEDIA_TYPE, problem_json

CONTENT_LENGTH_NOT_A_NUMBER = "The Content-Length header is not a number of bytes."
CONTENT_TYPE_REPEATED = (
    "Content-Type given more than once; send one Content-Type header with the one media type of the body."
)
# What clients send nearly always, already canonical: taken as they are, without parsing.
_CANONICAL_MEDIA_TYPES = frozenset({
    b"application/json", b"application/avro", b"application/merge-patch+json", b"application/json;charset=utf-8",
})


class PayloadTooLarge(ProblemException):
    """413 for a body over the configured limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(status=413, title="Content Too Large", detail=f"The request body exceeds {limit} bytes.")


class EncodedBodyRefused(ProblemException):
    """415 for a compressed request body (RFC 9110 15.5.16): this service decodes no content coding."""

    def __init__(self) -> None:
        super().__init__(
            status=415, title="Unsupported Media Type", headers={"Accept-Encoding": "identity"},
            detail="The request body has a Content-Encoding; this service takes bodies uncompressed only.",
        )


class ContentTypeRefused(ProblemException):
    """415 for a JSON body labelled with a charset other than UTF-8 (RFC 8259 8.1: JSON is UTF-8)."""

    def __init__(self, charset: str) -> None:
        super().__init__(
            status=415, title="Unsupported Media Type",
            detail=f"JSON is UTF-8 (RFC 8259), but the Content-Type says charset={charset}; "
            "send the body in UTF-8, with charset=utf-8 or no charset.",
        )


def _canonical_content_type(value: bytes) -> bytes:
    try:
        return canonical_media_type(value.decode("latin-1")).encode("latin-1")
    except JsonNotUtf8 as error:
        raise ContentTypeRefused(str(error)) from None
    except MalformedMediaType:
        raise ProblemException(
            status=400, title="Bad Request",
            detail="The Content-Type header is not a media type: send type/subtype, optionally followed by "
            "; name=value parameters (e.g. application/json).",
        ) from None


class RequestFraming:
    """Frame each request the one way Connexion and the handlers expect, before they see it.

    - A body over `max_bytes` is 413, by Content-Length up front or while it streams; a compressed body
      (`Content-Encoding`) is 415, so no compression bomb is ever inflated.
    - A body sent chunked (`Transfer-Encoding`, no `Content-Length`: how HTTP clients stream a body of
      unknown length) is read here, up to the limit, and passed on with its `Content-Length`: Connexion's
      body validation takes a request without one for a request without a body ("RequestBody is required").
    - The Content-Type is given to Connexion in its canonical form (`type/subtype;name=value`, lowercased but for
      parameter values, no optional whitespace: RFC 9110 makes those differences meaningless, and Connexion
      matches media types as written); one that is not a media type, or given twice, is 400, and JSON
      labelled with a charset other than UTF-8 is 415. A Content-Length with whitespace around its digits
      is passed on without it; one that is not a number is 400.
    - Header names with an underscore are dropped, as nginx and gunicorn drop them: the WSGI environ the
      handlers read folds `_` into `-` (`Idempotency_Key` and `Idempotency-Key` are both
      `HTTP_IDEMPOTENCY_KEY`), so a look-alike would reach a handler as a header the spec validated.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self._max_digits = len(str(max_bytes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = None
        chunked = False
        look_alikes = False
        content_type = None
        canonical: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = self._content_length(value)
                if len(length) != len(value):
                    canonical[name] = length
            elif name == b"content-type":
                if content_type is not None:
                    raise ProblemException(status=400, title="Bad Request", detail=CONTENT_TYPE_REPEATED)
                content_type = value
                if value not in _CANONICAL_MEDIA_TYPES:
                    normalised = _canonical_content_type(value)
                    if normalised != value:
                        canonical[name] = normalised
            elif name == b"transfer-encoding":
                if value.strip().lower() != b"chunked":
                    # The server decodes chunked only; another coding would reach the app still encoded. RFC 9112
                    # suggests 501, but the fix is the client's, so it is told so with a 400.
                    raise ProblemException(status=400, title="Bad Request",
                                           detail="The only Transfer-Encoding this service reads is chunked.")
                chunked = True
            elif name == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
                raise EncodedBodyRefused()
            elif b"_" in name:
                look_alikes = True
        if look_alikes or canonical:
            scope = {**scope, "headers": [(name, canonical.get(name, value)) for name, value in scope["headers"]
                                          if b"_" not in name]}
        if chunked and length is None:
            body = await self._read_whole_body(receive)
            if body is None:
                return  # the client went away before it finished sending
            headers = [(name, value) for name, value in scope["headers"] if name != b"transfer-encoding"]
            scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
            await self.app(scope, _replaying(body, receive), send)
            return
        await self.app(scope, self._limited(receive), send)

    def _content_length(self, value: bytes) -> bytes:
        """Return the Content-Length's digits (RFC 9110 allows whitespace around them); refuse a body over the limit."""
        digits = value.strip(b" \t")
        if not digits.isdigit():
            raise ProblemException(status=400, title="Bad Request", detail=CONTENT_LENGTH_NOT_A_NUMBER)
        significant = digits.lstrip(b"0")
        # Counted before int(), which refuses more than 4,300 digits (sys.get_int_max_str_digits()).
        if len(significant) > self._max_digits or int(significant or b"0") > self.max_bytes:
            raise PayloadTooLarge(self.max_bytes)
        return digits

    def _limited(self, receive: Receive) -> Receive:
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise PayloadTooLarge(self.max_bytes)
            return message

        return limited_receive

    async def _read_whole_body(self, receive: Receive) -> bytes | None:
        parts: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            part = message.get("body", b"")
            received += len(part)
            if received > self.max_bytes:
                raise PayloadTooLarge(self.max_bytes)
            parts.append(part)
            if not message.get("more_body", False):
                return b"".join(parts)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """Return a receive channel that yields `body` as one message, then whatever `receive` yields."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


NO_UPGRADES = (
    "This service speaks HTTP/1.1 and switches to no other protocol (WebSocket, h2c); "
    "send the request without the Upgrade header."
)


class NoProtocolUpgrades:
    """Answer requests to switch protocols (a WebSocket handshake, an h2c upgrade) with a 400 problem.

    The server would otherwise hand a WebSocket handshake to the app as a `websocket` scope, which
    Connexion's stack answers with a text/plain 500, and an h2c upgrade reaches the app without its
    body (the server stops reading at the upgrade), to be refused for a reason that is not the real
    one. In front of Connexion's stack, whose error handling speaks HTTP only; behind the telemetry,
    which counts and logs the answer like any other.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await _deny_websocket(scope, send)
            return
        if scope["type"] == "http" and _asks_to_upgrade(scope["headers"]):
            await _problem_response(400, "Bad Request", NO_UPGRADES)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _asks_to_upgrade(headers: list[tuple[bytes, bytes]]) -> bool:
    upgrade = connection_upgrade = False
    for name, value in headers:
        if name == b"upgrade":
            upgrade = True
        elif name == b"connection" and b"upgrade" in value.lower():
            connection_upgrade = True
    return upgrade and connection_upgrade


async def _deny_websocket(scope: Scope, send: Send) -> None:
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})  # the server answers the handshake with 403
        return
    body = problem_json(400, "Bad Request", NO_UPGRADES)
    await send({
        "type": "websocket.http.response.start",
        "status": 400,
        "headers": [(b"content-type", PROBLEM_MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())],
    })
    await send({"type": "websocket.http.response.body", "body": body})


def _problem_response(status: int, title: str, detail: str) -> Response:
    return Response(problem_json(status, title, detail), status_code=status, media_type=PROBLEM_MEDIA_TYPE)


_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f]")
_ENCODED_SLASH = re.compile(rb"%2[fF]")


class UnroutablePaths:
    """Answer the paths Connexion's router cannot match but Flask's would, before either sees them.

    Such a request would reach the Flask view without Connexion's operation, security or validation
    (a 500 "Working outside of operation context"). A path with control characters is 400 (Connexion's
    mount regex stops at a newline); one with an empty segment (`//v1/rooms`, `/v1//rooms`) is 404:
    Werkzeug strips the leading slashes and merges the others, where Connexion matches the path as sent.
    So is one with an encoded slash (`/v1%2Frooms`): the server decodes it into the path the routers match,
    where RFC 3986 makes `%2F` data, not a separator, and no resource of the spec has a slash in a segment.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if "//" in path:
                raise ProblemException(status=404, title="Not Found",
                                       detail="No resource has a path with an empty segment (//).")
            raw_path = scope.get("raw_path") or b""
            if b"%2" in raw_path and _ENCODED_SLASH.search(raw_path):
                raise ProblemException(status=404, title="Not Found",
                                       detail="No resource has an encoded slash (%2F) in its path.")
            if _CONTROL_CHARACTER.search(path):
                raise ProblemException(status=400, title="Bad Request", detail="The request path contains control characters.")
        await self.app(scope, receive, send)

"""ASGI middleware around the Connexion stack: request framing and limits, upgrades refused, path checks and the docs' routes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import orjson
import yaml
from connexion.exceptions import ProblemException
from connexion.json_schema import ExtendedSafeLoader
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send


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


class RequestFraming:
    """Frame each request the one way Connexion and the handlers expect, before they see it.

    - A body over `max_bytes` is 413, by Content-Length up front or while it streams; a compressed body
      (`Content-Encoding`) is 415, so no compression bomb is ever inflated.
    - A body sent chunked (`Transfer-Encoding`, no `Content-Length`: how HTTP clients stream a body of
      unknown length) is read here, up to the limit, and passed on with its `Content-Length`: Connexion's
      body validation takes a request without one for a request without a body ("RequestBody is required").
    - Header names with an underscore are dropped, as nginx and gunicorn drop them: the WSGI environ the
      handlers read folds `_` into `-` (`Idempotency_Key` and `Idempotency-Key` are both
      `HTTP_IDEMPOTENCY_KEY`), so a look-alike would reach a handler as a header the spec validated.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = None
        chunked = False
        look_alikes = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    raise PayloadTooLarge(self.max_bytes)
                length = value
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
        if look_alikes:
            scope = {**scope, "headers": [(name, value) for name, value in scope["headers"] if b"_" not in name]}
        if chunked and length is None:
            body = await self._read_whole_body(receive)
            if body is None:
                return  # the client went away before it finished sending
            headers = [(name, value) for name, value in scope["headers"] if name != b"transfer-encoding"]
            scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
            await self.app(scope, _replaying(body, receive), send)
            return
        await self.app(scope, self._limited(receive), send)

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
    body = orjson.dumps({"type": "about:blank", "title": "Bad Request", "detail": NO_UPGRADES, "status": 400})
    await send({
        "type": "websocket.http.response.start",
        "status": 400,
        "headers": [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())],
    })
    await send({"type": "websocket.http.response.body", "body": body})


def _problem_response(status: int, title: str, detail: str) -> Response:
    body = orjson.dumps({"type": "about:blank", "title": title, "detail": detail, "status": status})
    return Response(body, status_code=status, media_type="application/problem+json")


_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f]")


class ControlCharactersInPath:
    """Answer 400 for a path with control characters: Connexion's router cannot match them (its mount
    regex stops at a newline), and the request would reach the app without security or validation."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _CONTROL_CHARACTER.search(scope["path"]):
            raise ProblemException(status=400, title="Bad Request", detail="The request path contains control characters.")
        await self.app(scope, receive, send)


class RootDocsAliases:
    """Serve the API's Swagger UI and spec at the root as well (`/ui/`, `/openapi.json`, `/openapi.yaml`)."""

    def __init__(self, app: ASGIApp, *, base_path: str) -> None:
        self.app = app
        self.base_path = base_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path == "/":
                await RedirectResponse("/ui/")(scope, receive, send)
                return
            if path in ("/openapi.json", "/openapi.yaml", "/ui") or path.startswith("/ui/"):
                aliased = self.base_path + path
                scope = {**scope, "path": aliased, "raw_path": aliased.encode()}
        await self.app(scope, receive, send)


class SwaggerUIOnDocsPaths(SwaggerUIMiddleware):
    """Connexion's Swagger UI middleware, consulted only for the paths it serves.

    Its router otherwise tries every docs route on every API request before passing it on: a few
    dozen Python calls per request for nothing (bench/RESULTS.md).
    """

    def __init__(self, app: ASGIApp, *, base_path: str) -> None:
        super().__init__(app)
        self._docs_paths = f"{base_path}/ui"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(self._docs_paths):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


class AuthoredSpec:
    """Serve the OpenAPI document as written at `{base_path}/openapi.json` and `/openapi.yaml`.

    Connexion 3.3 serves its resolved copy instead: every `$ref` inlined (about 150 KB here) and the
    keys sorted, so a client generator pointed at the URL names its types after paths rather than
    `Room` or `Problem` (connexion issue #2127, PR #2128 open). Here the YAML is the file itself and
    the JSON the same document with its components, `$ref`s and key order kept. Behind a proxy that
    sets the ASGI `root_path`, `servers` names the prefixed base path, as Connexion's copy does.
    """

    def __init__(self, app: ASGIApp, *, spec_path: Path, base_path: str) -> None:
        self.app = app
        self.base_path = base_path
        self._yaml_text = spec_path.read_text(encoding="utf-8")
        self._document = yaml.load(self._yaml_text, ExtendedSafeLoader)
        self._json = orjson.dumps(self._document, default=str)
        self._routes = {f"{base_path}/openapi.json": self._json_response, f"{base_path}/openapi.yaml": self._yaml_response}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._routes.get(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        await route(scope.get("root_path", "").rstrip("/"))(scope, receive, send)

    def _with_prefix(self, root_path: str) -> dict:
        return {**self._document, "servers": [{"url": root_path + self.base_path}]}

    def _json_response(self, root_path: str) -> Response:
        content = orjson.dumps(self._with_prefix(root_path), default=str) if root_path else self._json
        return Response(content, media_type="application/json")

    def _yaml_response(self, root_path: str) -> Response:
        if root_path:
            content = yaml.safe_dump(self._with_prefix(root_path), sort_keys=False, allow_unicode=True)
        else:
            content = self._yaml_text
        return Response(content, media_type="text/yaml")


class AuthoredAsyncApi:
    """Serve the events' AsyncAPI document as written at `/asyncapi.yaml` and `/asyncapi.json` (also under
    the base path), and the files its relative `$ref`s name, at the URLs those references resolve to.

    The message payload refers to `../schemas/roomservice.Event.avsc`: read from `/v1/asyncapi.yaml` (or
    `/asyncapi.yaml`) that is `/schemas/roomservice.Event.avsc`, served here as the file itself, so the
    document resolves the same from the repository and from the service, with one copy of the schema.
    """

    def __init__(self, app: ASGIApp, *, document_path: Path, base_path: str) -> None:
        self.app = app
        yaml_text = document_path.read_text(encoding="utf-8")
        document = yaml.safe_load(yaml_text)
        json_text = orjson.dumps(document)
        self._routes: dict[str, Response] = {}
        for prefix in ("", base_path):
            self._routes[f"{prefix}/asyncapi.yaml"] = Response(yaml_text, media_type="text/yaml")
            self._routes[f"{prefix}/asyncapi.json"] = Response(json_text, media_type="application/json")
            for reference in _file_references(document):
                referenced = (document_path.parent / reference).resolve()
                content = referenced.read_bytes()
                # A referenced .avsc is JSON; say so, so that clients parse it whatever its extension.
                self._routes[urljoin(f"{prefix}/asyncapi.yaml", reference)] = Response(content, media_type="application/json")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = self._routes.get(scope["path"]) if scope["type"] == "http" else None
        if response is None or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)


def _file_references(node) -> Iterator[str]:
    """Every `$ref` in the document that names another file (a relative path without a fragment)."""
    if isinstance(node, dict):
        reference = node.get("$ref")
        if isinstance(reference, str) and not reference.startswith("#") and "://" not in reference:
            yield reference.split("#", 1)[0]
        for value in node.values():
            yield from _file_references(value)
    elif isinstance(node, list):
        for value in node:
            yield from _file_references(value)

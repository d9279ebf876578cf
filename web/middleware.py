"""ASGI middleware around the Connexion stack: body-size limit, path checks and the docs' routes."""

from __future__ import annotations

import re

from connexion.exceptions import ProblemException
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class PayloadTooLarge(ProblemException):
    """413 for a body over the configured limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(status=413, title="Content Too Large", detail=f"The request body exceeds {limit} bytes.")


class BodySizeLimit:
    """Refuse request bodies over `max_bytes`, by Content-Length up front or while streaming."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > self.max_bytes):
                raise PayloadTooLarge(self.max_bytes)
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise PayloadTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)


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
        self._docs_paths = (f"{base_path}/ui", f"{base_path}/openapi.json", f"{base_path}/openapi.yaml")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(self._docs_paths):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

"""ASGI middleware around the Connexion stack: body-size limit and root aliases for the docs."""

from __future__ import annotations

from connexion.exceptions import ProblemException
from starlette.datastructures import Headers
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
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
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


class ControlCharactersInPath:
    """Answer 400 for a path with control characters: Connexion's router cannot match them (its mount
    regex stops at a newline), and the request would reach Flask without security or validation."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and any(ord(c) < 0x20 or ord(c) == 0x7F for c in scope["path"]):
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

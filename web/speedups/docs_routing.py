"""Connexion's Swagger UI middleware consulted only for the paths it serves (a speedup, web/speedups)."""

from __future__ import annotations

from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send


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

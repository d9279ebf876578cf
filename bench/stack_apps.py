"""Bench-only apps that answer `GET /v1/health` on different serving stacks (see bench/stacks.py).

Each serves the same one-operation OpenAPI document and the same JSON, so that the only difference
is the stack: Connexion 3's FlaskApp (Flask behind a2wsgi, what the service used first) and its AsyncApp (what
it uses now: no Flask, no a2wsgi), the latter with an `async def` handler and with a plain one that Connexion
runs in a thread pool. None of this is served for real.
"""

from __future__ import annotations

SPEC = {
    "openapi": "3.0.3",
    "info": {"title": "stack", "version": "1"},
    "servers": [{"url": "/v1"}],
    "paths": {
        "/health": {
            "get": {
                "operationId": "bench.stack_apps.health",
                "responses": {"200": {"description": "up", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["status"], "properties": {"status": {"type": "string"}},
                }}}}},
            }
        },
        "/health-async": {
            "get": {
                "operationId": "bench.stack_apps.health_async",
                "responses": {"200": {"description": "up", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["status"], "properties": {"status": {"type": "string"}},
                }}}}},
            }
        },
    },
}


def health():
    """A plain handler (Connexion runs it in a thread pool under AsyncApp)."""
    return {"status": "ok"}


async def health_async():
    """A coroutine handler (runs on the event loop under AsyncApp)."""
    return {"status": "ok"}


def __getattr__(name: str):
    # uvicorn imports `bench.stack_apps:flask_app` or `:async_app`; build only the one asked for.
    if name == "flask_app":
        from connexion import FlaskApp

        app = FlaskApp(__name__)
    elif name == "async_app":
        from connexion import AsyncApp

        app = AsyncApp(__name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    app.add_api(SPEC)
    globals()[name] = app
    return app

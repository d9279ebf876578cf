"""Connexion's FlaskApp, with Flask served from the APP_THREADS pool, and the speedups that need its parts."""

from __future__ import annotations

import typing as t
from concurrent.futures import ThreadPoolExecutor

from a2wsgi import WSGIMiddleware
from connexion import FlaskApp

from web.speedups import Speedups
from web.speedups.bridge import BufferedWSGIBridge
from web.speedups.decorate_once import decorate_handlers_once


class ServiceApp(FlaskApp):
    """Connexion's FlaskApp, built by FlaskApp itself; `service.app` is its real Flask app.

    Connexion serves Flask through a2wsgi's WSGIMiddleware in a pool of a2wsgi's default size (10); here
    the pool has `threads` (APP_THREADS) threads, and Flask is reached through the buffered bridge when
    that speedup is on. `handler_threads` is the pool, which the app's lifespan shuts down. Both replace the ASGI app of FlaskApp's `_middleware_app`, the one place Connexion
    builds it (docs/library-internals.md).
    """

    def __init__(self, import_name: str, *, threads: int, speedups: Speedups, **options: t.Any) -> None:
        super().__init__(import_name, **options)
        flask_asgi_app = self._middleware_app
        if speedups.bridge:
            self.handler_threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="handler")
            flask_asgi_app.asgi_app = BufferedWSGIBridge(self.app.wsgi_app, self.handler_threads)
        else:
            bridge = WSGIMiddleware(self.app.wsgi_app, workers=threads)
            self.handler_threads = bridge.executor
            flask_asgi_app.asgi_app = bridge
        if speedups.decorate_once:
            decorate_handlers_once(flask_asgi_app)

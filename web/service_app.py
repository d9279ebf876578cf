"""Connexion's FlaskApp with its Flask app behind `BufferedWSGIBridge` and each handler decorated once.

Two changes to Connexion 3.3's FlaskApp, each measured in a paired run (bench/RESULTS.md, tuning log)
and guarded by tests/integration/test_flask_app.py, which fails if a Connexion upgrade moves what they build on:

- the bridge: `FlaskASGIApp` serves Flask through a2wsgi's `WSGIMiddleware`, and Connexion has no
  setting for it; here it is `web.speedups.bridge.BufferedWSGIBridge` in the `APP_THREADS` pool;
- decoration: `FlaskOperation.fn` is a property that builds a new `FlaskDecorator` on every request, and
  the decorator decorates the handler again inside every call (parameter and response decorators,
  `inspect.signature` of the handler included). None of it depends on the request; here it is built on
  an operation's first request and kept. The request itself is still read per call, as Connexion does.

Everything else, the Flask app above all (`service.app`), is Connexion's own.
"""

from __future__ import annotations

import functools
import typing as t
from concurrent.futures import Executor

import werkzeug.exceptions
from connexion import FlaskApp
from connexion.apps.abstract import AbstractApp
from connexion.apps.flask import FlaskApi, FlaskASGIApp, FlaskOperation
from connexion.decorators import FlaskDecorator

from web.speedups.bridge import BufferedWSGIBridge


class _DecorateOnceDecorator(FlaskDecorator):
    """`FlaskDecorator` that decorates at decoration time and builds the URI parser on the first call."""

    def __call__(self, function: t.Callable) -> t.Callable:
        decorated = self.decorate(function)
        uri_parser = None

        @functools.wraps(function)
        def wrapper(*_args: t.Any, **_kwargs: t.Any) -> t.Any:
            nonlocal uri_parser
            if uri_parser is None:
                # Needs Connexion's `operation` context, which exists only inside a request.
                uri_parser = self.uri_parser
            return decorated(self.framework.get_request(uri_parser=uri_parser))

        return wrapper


class _DecorateOnceOperation(FlaskOperation):
    @functools.cached_property
    def fn(self) -> t.Callable:  # type: ignore[override]
        return _DecorateOnceDecorator(pythonic_params=self.pythonic_params, jsonifier=self.jsonifier)(self._fn)


class _DecorateOnceApi(FlaskApi):
    def make_operation(self, operation):
        return _DecorateOnceOperation.from_operation(
            operation, pythonic_params=self.pythonic_params, jsonifier=self.jsonifier
        )


class _ServiceFlaskASGIApp(FlaskASGIApp):
    def __init__(self, import_name: str, server_args: dict, executor: Executor) -> None:
        super().__init__(import_name, server_args)
        self.asgi_app = BufferedWSGIBridge(self.app.wsgi_app, executor)

    def add_api(self, specification, *, name: str | None = None, **kwargs):
        api = _DecorateOnceApi(specification, **kwargs)
        self.app.register_blueprint(api.blueprint, **({"name": name} if name is not None else {}))
        return api


class ServiceApp(FlaskApp):
    """Connexion's FlaskApp, taking the same arguments, with Flask served in `handler_threads`."""

    def __init__(self, import_name: str, *, handler_threads: Executor, server_args: dict | None = None,
                 **options: t.Any) -> None:
        # FlaskApp.__init__ builds its FlaskASGIApp itself; these are its other three lines.
        self._middleware_app = _ServiceFlaskASGIApp(import_name, server_args or {}, handler_threads)
        AbstractApp.__init__(self, import_name, **options)
        self.app = self._middleware_app.app
        self.app.register_error_handler(werkzeug.exceptions.HTTPException, self._http_exception)
        self.handler_threads = handler_threads

"""Each handler decorated once per operation, instead of on every request as Connexion 3.3's FlaskOperation does.

`FlaskOperation.fn` is a property that builds a new `FlaskDecorator` on every request, and the decorator
decorates the handler again inside every call (parameter and response decorators, `inspect.signature`
of the handler included). None of it depends on the request; here it is built on an operation's first
request and kept. The request itself is still read per call, as Connexion does. Measured in
bench/RESULTS.md (tuning log, variant `decorated_per_request`); docs/library-internals.md lists what it relies on.
"""

from __future__ import annotations

import functools
import types
import typing as t

from connexion.apps.flask import FlaskApi, FlaskASGIApp, FlaskOperation
from connexion.decorators import FlaskDecorator


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
    def fn(self) -> t.Callable:
        return _DecorateOnceDecorator(pythonic_params=self.pythonic_params, jsonifier=self.jsonifier)(self._fn)


class DecorateOnceApi(FlaskApi):
    """Connexion's FlaskApi whose operations keep their decorated handler."""

    def make_operation(self, operation):
        """Return the operation, decorating its handler once."""
        return _DecorateOnceOperation.from_operation(
            operation, pythonic_params=self.pythonic_params, jsonifier=self.jsonifier
        )


def decorate_handlers_once(flask_asgi_app: FlaskASGIApp) -> None:
    """Make `flask_asgi_app` build its APIs as DecorateOnceApi (what its own `add_api` does, with that class)."""

    def add_api(self: FlaskASGIApp, specification: t.Any, *, name: str | None = None, **kwargs: t.Any) -> FlaskApi:
        api = DecorateOnceApi(specification, **kwargs)
        self.app.register_blueprint(api.blueprint, **({"name": name} if name is not None else {}))
        return api

    flask_asgi_app.add_api = types.MethodType(add_api, flask_asgi_app)

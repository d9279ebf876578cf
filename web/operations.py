"""Connexion's AsyncApp with each handler decorated once, when first called, instead of on every request.

Connexion 3.3's `AsyncOperation.fn` is a property: every request builds a new `StarletteDecorator`, which
in turn builds the parameter and response decorators (`inspect.signature` of the handler included) and a
URI parser from the operation's parameters and body definition. None of that depends on the request:
it is a function of the handler and the spec operation, both fixed once the API is added. Building it
once per operation saves about 8 % of the Python calls of a GET and 5 % of its CPU (bench/RESULTS.md,
tuning log).

Everything the request does depend on (the Starlette request, the parsed parameters, the body) is still
read per call through Connexion's context variables, as in `StarletteDecorator.__call__`, except that the
query and path parameters validation has already parsed and coerced are handed over rather than parsed
again (`web.validation.RESOLVED_PARAMETERS`). Parameter names are sanitized once per name, not per request.
"""

from __future__ import annotations

import functools
import typing as t

from connexion import AsyncApp
from connexion.apps.abstract import AbstractApp
from connexion.apps.asynchronous import AsyncApi, AsyncASGIApp, AsyncOperation
from connexion.context import receive, scope
from connexion.decorators import StarletteDecorator
from connexion.decorators.parameter import AsyncParameterDecorator
from connexion.operations import AbstractOperation

from web.validation import RESOLVED_PARAMETERS


class _MemoizedNamesParameterDecorator(AsyncParameterDecorator):
    """Connexion's parameter decorator with its name sanitizer memoized.

    Connexion sanitizes every parameter name of every request with three regular-expression
    substitutions (21 `re.sub` calls for a search); the names are the spec's, so the answers never change.
    """

    def __init__(self, **options: t.Any) -> None:
        super().__init__(**options)
        # Bounded: without strict validation a client could send names the spec does not declare.
        self.sanitize_fn = functools.lru_cache(maxsize=1024)(self.sanitize_fn)


class _DecorateOnceDecorator(StarletteDecorator):
    """`StarletteDecorator` that decorates at decoration time and builds the URI parser on the first call."""

    _parameter_decorator_cls = _MemoizedNamesParameterDecorator

    def __call__(self, function: t.Callable) -> t.Callable:
        decorated = self.decorate(function)
        uri_parser = None

        @functools.wraps(function)
        async def wrapper(*_args: t.Any, **_kwargs: t.Any) -> t.Any:
            nonlocal uri_parser
            if uri_parser is None:
                # Needs Connexion's `operation` context, which exists only inside a request.
                uri_parser = self.uri_parser
            request = self.framework.get_request(uri_parser=uri_parser, scope=scope, receive=receive)
            resolved = request.scope.get("extensions", {}).get(RESOLVED_PARAMETERS)
            if resolved is not None:
                # ConnexionRequest computes these lazily into the same two attributes.
                request._query_params, request._path_params = resolved
            return await decorated(request)

        return wrapper


class _DecorateOnceOperation(AsyncOperation):
    """An AsyncOperation whose decorated handler is built once and kept."""

    @functools.cached_property
    def fn(self) -> t.Callable:  # type: ignore[override]
        return _DecorateOnceDecorator(pythonic_params=self.pythonic_params, jsonifier=self.jsonifier)(self._fn)


class _DecorateOnceApi(AsyncApi):
    def make_operation(self, operation: AbstractOperation) -> AsyncOperation:
        return _DecorateOnceOperation.from_operation(
            operation, pythonic_params=self.pythonic_params, jsonifier=self.jsonifier
        )


class _DecorateOnceASGIApp(AsyncASGIApp):
    api_cls = _DecorateOnceApi


class ServiceApp(AsyncApp):
    """Connexion's AsyncApp, taking the same arguments, with handlers decorated once per operation."""

    def __init__(self, import_name: str, **options: t.Any) -> None:
        # AsyncApp.__init__ only picks its inner ASGI app and hands everything else to AbstractApp.
        self._middleware_app = _DecorateOnceASGIApp()
        AbstractApp.__init__(self, import_name, **options)

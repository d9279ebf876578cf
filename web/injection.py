"""Handlers get their providers from the Flask-Injector injector, at the point where operationIds are resolved."""

from __future__ import annotations

import functools
import typing as t

from connexion.lifecycle import ConnexionResponse
from connexion.resolver import Resolver
from injector import Injector, Provider, get_bindings

from rest.representation import Rendered

T = t.TypeVar("T")
Wrap = t.Callable[[t.Callable, Injector], t.Callable]
"""Wraps a handler so that `injector` supplies its `Inject[...]` parameters."""


class InjectingResolver(Resolver):
    """Resolve operationIds as usual, then wrap each handler so the injector supplies its `Inject[...]` parameters.

    FlaskInjector wraps the view functions it finds when it is constructed, but Connexion 3 registers its
    routes only when its middleware stack is built (at start-up, or the first request) and calls each handler
    through its own wrapper, which passes the spec's parameters and drops any others (tests/integration/
    test_flask_app.py keeps the failing case).
    So this is the one point where handlers can be injected. What they get comes from the one injector
    FlaskInjector was given, and request-scoped objects from Flask-Injector's request scope, which it
    opens before and clears after every Flask request.
    """

    def __init__(self, injector: Injector, wrap: Wrap | None = None) -> None:
        super().__init__()
        self._injector = injector
        self._wrap = wrap or inject_per_call

    def resolve_function_from_operation_id(self, operation_id: str) -> t.Callable:
        """Return the handler named by `operation_id`, its injected parameters supplied on every call."""
        return rendered_answers_as_sent(self._wrap(super().resolve_function_from_operation_id(operation_id), self._injector))


def inject_per_call(handler: t.Callable, injector: Injector) -> t.Callable:
    """Return `handler` with its `Inject[...]` parameters supplied by `injector.call_with_injection` on every call.

    What Flask-Injector's own view wrapper does. Only parameters marked `Inject[...]` are injected, so an
    absent optional query parameter stays None. web/speedups/injection.py reads the bindings once instead.
    """
    if not get_bindings(handler):
        return handler

    @functools.wraps(handler)
    def handle(*args: t.Any, **kwargs: t.Any) -> t.Any:
        return injector.call_with_injection(handler, args=args, kwargs=kwargs)

    return handle


def rendered_answers_as_sent(handler: t.Callable) -> t.Callable:
    """Return `handler`, its rest.representation.Rendered answers handed to Connexion to send as they are."""

    @functools.wraps(handler)
    def answer(*args: t.Any, **kwargs: t.Any) -> t.Any:
        result = handler(*args, **kwargs)
        if isinstance(result, Rendered):
            return ConnexionResponse(status_code=result.status, body=result.body, headers=dict(result.headers))
        return result

    return answer


class Factory(Provider[T]):
    """Provides `build(injector)`: a plain factory for the objects made anew on every request.

    A `@provider` method does the same job, but injector inspects its signature (`inspect.signature`,
    `bind_partial`) on every call: about a tenth of a GET's CPU for the four request-scoped objects
    (bench/RESULTS.md, tuning log). The factory asks for its dependencies by type, as injector would.
    """

    def __init__(self, build: t.Callable[[Injector], T]) -> None:
        self.build = build

    def get(self, injector: Injector) -> T:
        return self.build(injector)

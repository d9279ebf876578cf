"""Handlers get their providers from the Flask-Injector injector, at the point where operationIds are resolved."""

from __future__ import annotations

import functools
import typing as t

from connexion.resolver import Resolver
from injector import Injector, get_bindings


class InjectingResolver(Resolver):
    """Resolve operationIds as usual, then wrap each handler so the injector supplies its `Inject[...]` parameters.

    FlaskInjector wraps the view functions it finds when it is constructed, but Connexion 3 registers its
    routes only on the first request and calls each handler through its own wrapper, which passes the
    spec's parameters and drops any others (shared/design.md §1; tests/test_flask_injector.py shows both).
    So this is the one point where handlers can be injected. What they get comes from the one injector
    FlaskInjector was given, and request-scoped objects from Flask-Injector's request scope, which it
    opens before and clears after every Flask request.
    """

    def __init__(self, injector: Injector) -> None:
        super().__init__()
        self._injector = injector

    def resolve_function_from_operation_id(self, operation_id: str) -> t.Callable:
        return inject_into(super().resolve_function_from_operation_id(operation_id), self._injector)


def inject_into(handler: t.Callable, injector: Injector) -> t.Callable:
    """Return `handler` with its `Inject[...]` parameters supplied by `injector` on every call.

    What `injector.call_with_injection` does (and Flask-Injector's view wrapper calls), except that the
    handler's bindings are read once here instead of inspecting its signature on every request.
    Only parameters marked `Inject[...]` are injected, so an absent optional query parameter stays None.
    """
    bindings = get_bindings(handler)
    if not bindings:
        return handler
    get = injector.get

    @functools.wraps(handler)
    def handle(*args: t.Any, **kwargs: t.Any) -> t.Any:
        for name, interface in bindings.items():
            kwargs[name] = get(interface)
        return handler(*args, **kwargs)

    return handle

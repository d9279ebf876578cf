"""Dependency injection into Connexion handlers, at the point where operationIds are resolved."""

from __future__ import annotations

import functools
import typing as t

from connexion.resolver import Resolver
from injector import Injector, get_bindings


class InjectingResolver(Resolver):
    """Resolve operationIds as usual, then wrap each handler so injector fills its Inject[...] parameters.

    Connexion 3 registers its Flask routes lazily and calls handlers through its own wrapper, so
    FlaskInjector never sees them; wrapping here is the one place that works (shared/design.md §1).
    """

    def __init__(self, injector: Injector) -> None:
        super().__init__()
        self._injector = injector

    def resolve_function_from_operation_id(self, operation_id: str) -> t.Callable:
        return inject_into(super().resolve_function_from_operation_id(operation_id), self._injector)


def inject_into(handler: t.Callable, injector: Injector) -> t.Callable:
    """Return `handler` with its Inject[...] parameters supplied by `injector` on every call."""
    bindings = get_bindings(handler)
    if not bindings:
        return handler

    @functools.wraps(handler)
    def injected(*args: t.Any, **kwargs: t.Any) -> t.Any:
        for name, interface in bindings.items():
            kwargs[name] = injector.get(interface)
        return handler(*args, **kwargs)

    return injected

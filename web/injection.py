"""Dependency injection into Connexion handlers, at the point where operationIds are resolved."""

from __future__ import annotations

import functools
import typing as t

from connexion.resolver import Resolver
from injector import Injector, InstanceProvider, NoScope, SingletonScope, get_bindings


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
    """Return `handler` with its Inject[...] parameters supplied by `injector` on every call.

    Objects that live as long as the injector (singletons, bound instances) are looked up once, on the
    first call; everything else, such as the request-scoped providers, is asked of the injector per call.
    """
    bindings = get_bindings(handler)
    if not bindings:
        return handler
    per_call = {name: interface for name, interface in bindings.items() if not _lives_forever(injector, interface)}
    lasting_names = {name: interface for name, interface in bindings.items() if name not in per_call}
    lasting: dict[str, t.Any] = {}

    @functools.wraps(handler)
    def injected(*args: t.Any, **kwargs: t.Any) -> t.Any:
        if len(lasting) < len(lasting_names):
            lasting.update({name: injector.get(interface) for name, interface in lasting_names.items()})
        kwargs.update(lasting)
        for name, interface in per_call.items():
            kwargs[name] = injector.get(interface)
        return handler(*args, **kwargs)

    return injected


def _lives_forever(injector: Injector, interface: type) -> bool:
    binding, _ = injector.binder.get_binding(interface)
    scope = binding.scope
    if isinstance(scope, type) and issubclass(scope, SingletonScope):
        return True
    return scope is NoScope and isinstance(binding.provider, InstanceProvider)

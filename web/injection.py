"""Dependency injection into Connexion handlers, at the point where operationIds are resolved."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import typing as t
from concurrent.futures import Executor

from connexion.resolver import Resolver
from injector import Binding, Injector, InstanceProvider, NoScope, Provider, SingletonScope, get_bindings

from web.scope import RequestScope, in_request, request_scope
from web.transactions import transaction_boundary

T = t.TypeVar("T")
Resolve = t.Callable[[type], t.Any]


class Built(Provider[T]):
    """Provides `build(get)`: a plain factory for the objects made on every request.

    Unlike a `@provider` method, injector does not inspect its signature on each call, and handlers'
    `BindingShortcuts` call `build` directly (bench/RESULTS.md, tuning log).
    """

    def __init__(self, build: t.Callable[[Resolve], T]) -> None:
        self.build = build

    def get(self, injector: Injector) -> T:
        return self.build(injector.get)


class BindingShortcuts:
    """`get(interface)` answered as injector would, with what to do for each binding decided once.

    injector finds the binding, consults its scope and writes debug logs on every call, for every
    dependency of every request-scoped object. Here objects that live as long as the injector are fetched
    once, request-scoped `Built` factories are built straight into the request scope (where injector would
    find them too), and any other binding is asked of injector as before.
    """

    def __init__(self, injector: Injector) -> None:
        self._injector = injector
        self._getters: dict[t.Any, t.Callable[[], t.Any]] = {}

    def __call__(self, interface: t.Any) -> t.Any:
        getter = self._getters.get(interface)
        if getter is None:
            getter = self._getters[interface] = self._getter_for(interface)
        return getter()

    def _getter_for(self, interface: t.Any) -> t.Callable[[], t.Any]:
        binding, _ = self._injector.binder.get_binding(interface)
        if _lives_forever(binding):
            value = self._injector.get(interface)
            return lambda: value
        scope, provider = binding.scope, binding.provider
        if isinstance(scope, type) and issubclass(scope, RequestScope) and isinstance(provider, Built):
            build = provider.build
            return lambda: in_request(interface, lambda: build(self))
        return functools.partial(self._injector.get, interface)


class InjectingResolver(Resolver):
    """Resolve operationIds as usual, then wrap each handler so it runs as one request in `executor`.

    Connexion calls handlers through its own wrapper with the spec's parameters only, so this is the
    one place to add the rest (shared/design.md §1): the wrapper opens the request scope and the
    transaction boundary, and injector fills the handler's Inject[...] parameters.
    """

    def __init__(self, injector: Injector, executor: Executor) -> None:
        super().__init__()
        self._shortcuts = BindingShortcuts(injector)
        self._executor = executor

    def resolve_function_from_operation_id(self, operation_id: str) -> t.Callable:
        handler = super().resolve_function_from_operation_id(operation_id)
        return in_thread(handle_requests(handler, self._shortcuts), self._executor)


def in_thread(handler: t.Callable, executor: Executor) -> t.Callable:
    """Return a coroutine function that runs the blocking `handler` in `executor`, in the caller's context.

    Connexion would run a plain handler through anyio's worker threads; asyncio's own executor hand-off
    costs fewer Python calls per request (bench/RESULTS.md). The context (Connexion's request, our
    request scope) is copied into the thread, as anyio would.
    """

    @functools.wraps(handler)
    async def run(*args: t.Any, **kwargs: t.Any) -> t.Any:
        call = functools.partial(contextvars.copy_context().run, handler, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(executor, call)

    return run


def handle_requests(handler: t.Callable, get: BindingShortcuts) -> t.Callable:
    """Return `handler` run in a request scope and a transaction, with its Inject[...] parameters supplied.

    `get` fetches objects that live as long as the injector once and builds request-scoped ones per
    request. A handler that injects nothing cannot reach the database and is returned as it is.
    """
    bindings = get_bindings(handler)
    if not bindings:
        return handler

    @functools.wraps(handler)
    def handle(*args: t.Any, **kwargs: t.Any) -> t.Any:
        with request_scope(), transaction_boundary() as outcome:
            for name, interface in bindings.items():
                kwargs[name] = get(interface)
            return outcome.record(handler(*args, **kwargs))

    return handle


def _lives_forever(binding: Binding) -> bool:
    scope = binding.scope
    if isinstance(scope, type) and issubclass(scope, SingletonScope):
        return True
    return scope is NoScope and isinstance(binding.provider, InstanceProvider)

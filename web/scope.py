"""The request scope: one instance per request of everything bound `@request` (connections, providers)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from injector import InstanceProvider, Provider, Scope, ScopeDecorator

# The objects of the request being handled. A context variable, so it follows the handler into
# whichever worker thread Connexion runs it on, and concurrent requests never see each other's.
_objects: ContextVar[dict[Any, Any] | None] = ContextVar("request_objects", default=None)
T = TypeVar("T")


class OutsideRequest(RuntimeError):
    """A request-scoped object was asked for while no request is being handled."""


class RequestScope(Scope):
    """Builds each request-scoped binding once per request (see `request_scope`)."""

    def get(self, key: Any, provider: Provider) -> Provider:
        return InstanceProvider(in_request(key, lambda: provider.get(self.injector)))


def in_request(key: Any, build: Callable[[], T]) -> T:
    """Return the current request's object for `key`, made by `build()` the first time it is asked for."""
    objects = _objects.get()
    if objects is None:
        raise OutsideRequest(f"{key!r} lives in the request scope, and no request is being handled.")
    try:
        return objects[key]
    except KeyError:
        made = objects[key] = build()
        return made


request = ScopeDecorator(RequestScope)


@contextmanager
def request_scope() -> Iterator[None]:
    """Open a request scope for the duration of the block; its objects are dropped at the end."""
    token = _objects.set({})
    try:
        yield
    finally:
        _objects.reset(token)

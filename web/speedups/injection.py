"""A handler's injected parameters read once, instead of `injector.call_with_injection` inspecting it per call."""

from __future__ import annotations

import functools
import typing as t

from injector import Injector, get_bindings


def inject_with_bindings_read_once(handler: t.Callable, injector: Injector) -> t.Callable:
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

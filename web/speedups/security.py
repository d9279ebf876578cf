"""The API-key check's signature inspected once: Connexion inspects it twice per request, and the answer never changes."""

from __future__ import annotations

import functools

from connexion.security import AbstractSecurityHandler


def with_signature_cached(handler_class: type[AbstractSecurityHandler]) -> type[AbstractSecurityHandler]:
    """Return a subclass of a Connexion security handler whose `_accepts_kwarg` answers from a cache."""
    cached = staticmethod(functools.lru_cache(maxsize=None)(handler_class._accepts_kwarg))
    return type(handler_class.__name__, (handler_class,), {"_accepts_kwarg": cached})

"""API-key verification for the spec's ApiKeyAuth scheme, against keys loaded at start-up."""

from __future__ import annotations

import functools
import hmac
import typing as t

from connexion.security import ApiKeySecurityHandler


def api_key_security_map(keys: frozenset[str]) -> dict[str, type]:
    """Return a Connexion security map whose apiKey handler accepts exactly these keys."""
    encoded = tuple(key.encode() for key in sorted(keys))

    def check_api_key(api_key: str, required_scopes: t.Any = None) -> dict | None:
        # Runs on the event loop without a request scope: CPU only, constant time per key.
        candidate = api_key.encode()
        matched = False
        for key in encoded:
            matched |= hmac.compare_digest(candidate, key)
        return {"sub": "api-key"} if matched else None

    class ConfiguredApiKeyHandler(ApiKeySecurityHandler):
        def _resolve_func(self, security_scheme: dict) -> t.Callable:
            return check_api_key

        # Connexion inspects the check function's signature twice per request to decide what to pass it;
        # the answer never changes.
        _accepts_kwarg = staticmethod(functools.lru_cache(maxsize=None)(ApiKeySecurityHandler._accepts_kwarg))

    return {"apiKey": ConfiguredApiKeyHandler}

"""API-key verification for the spec's ApiKeyAuth scheme, against keys loaded at start-up."""

from __future__ import annotations

import hashlib
import hmac
import typing as t

from connexion.security import ApiKeySecurityHandler


def principal_of(key: str) -> str:
    """Return the name a request authenticated with this API key acts as: a digest of the key, never the key."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:32]


def api_key_security_map(keys: frozenset[str]) -> dict[str, type]:
    """Return a Connexion security map whose apiKey handler accepts exactly these keys.

    The request's principal (Connexion's `context["user"]`) tells the keys apart, so that what is kept
    per client, such as idempotency keys, is kept per API key.
    """
    encoded = tuple((key.encode(), principal_of(key)) for key in sorted(keys))

    def check_api_key(api_key: str, required_scopes: t.Any = None) -> dict | None:
        # Runs on the event loop without a request scope: CPU only, constant time per key.
        candidate = api_key.encode()
        found = None
        for key, principal in encoded:
            if hmac.compare_digest(candidate, key):
                found = principal
        return {"sub": found} if found is not None else None

    class ConfiguredApiKeyHandler(ApiKeySecurityHandler):
        # Connexion resolves the check function from the spec's x-apikeyInfoFunc; the keys come from the
        # settings instead (docs/library-internals.md).
        def _resolve_func(self, security_scheme: dict) -> t.Callable:
            return check_api_key

    return {"apiKey": ConfiguredApiKeyHandler}

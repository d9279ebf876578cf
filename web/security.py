"""Who may write: API keys (the spec's ApiKeyAuth) and OAuth2 bearer tokens with scopes (OAuth2), for Connexion.

Each write names both schemes as alternatives, so Connexion's security middleware tries the API key, then the
token, and keeps the most specific failure (403 before 401). Both checks run on the event loop without a
request scope (shared/design.md §1): the key check compares in constant time against keys loaded at start-up;
the token check verifies on the CPU against keys held in memory and awaits, never blocks, when it needs them
fetched (web/bearer_keys.py). Failures carry RFC 6750's `WWW-Authenticate` challenge in their problem.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import typing as t

from connexion.apps import AbstractApp
from connexion.exceptions import OAuthProblem, OAuthScopeProblem, ProblemException, Unauthorized
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from connexion.problem import problem
from connexion.security import ApiKeySecurityHandler, OAuthSecurityHandler

from rest.bearer_tokens import KeySet, TokenRefused, TokenRules, UnknownKey, unverified_kid, verify_token
from settings import OAuthSettings
from web.bearer_keys import JwksKeys, StaticKeys

logger = logging.getLogger(__name__)

REALM = "rooms"
NOT_CONFIGURED = "bearer tokens are not configured on this service; send an API key in X-API-Key"
# RFC 6750 §3: error_description and scope values are restricted to these characters.
_UNQUOTABLE = re.compile(r'[^\x20\x21\x23-\x5b\x5d-\x7e]')


def principal_of(key: str) -> str:
    """Return the name a request authenticated with this API key acts as: a digest of the key, never the key."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:32]


def challenge(**parameters: str) -> str:
    """Return a `WWW-Authenticate: Bearer` challenge (RFC 6750 §3) with these auth-params, safely quoted."""
    params = {"realm": REALM, **parameters}
    return "Bearer " + ", ".join(f'{name}="{_UNQUOTABLE.sub("?", value)}"' for name, value in params.items())


class InvalidToken(OAuthProblem):
    """401: the bearer token is missing its proof (RFC 6750 `invalid_token`)."""

    def __init__(self, description: str) -> None:
        super().__init__(detail=f"The bearer token was refused: {description}.")
        self.headers = {"WWW-Authenticate": challenge(error="invalid_token", error_description=description)}


class InsufficientScope(ProblemException):
    """403: a valid token that does not grant the scopes the operation needs (RFC 6750 `insufficient_scope`)."""

    def __init__(self, required: t.Sequence[str], granted: t.Iterable[str]) -> None:
        needed = " ".join(required)
        super().__init__(
            status=403,
            title="Forbidden",
            detail=f"The bearer token does not grant the scope this operation needs: {needed}.",
            headers={"WWW-Authenticate": challenge(error="insufficient_scope", scope=needed,
                                                   error_description=f"the token lacks the scope {needed}")},
            ext={"required_scopes": list(required), "granted_scopes": sorted(granted)},
        )


class KeysUnavailable(ProblemException):
    """503: the issuer's signing keys have never been fetched, so no token can be checked yet."""

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(
            status=503,
            title="Service Unavailable",
            detail="The issuer's signing keys could not be fetched, so bearer tokens cannot be checked yet; API keys still work.",
            headers={"Retry-After": str(retry_after_seconds)},
        )


class BearerTokens:
    """Verifies bearer tokens for Connexion's oauth2 scheme: signature and claims, then the operation's scopes."""

    def __init__(self, oauth: OAuthSettings | None) -> None:
        self.rules: TokenRules | None = None
        self.keys: JwksKeys | StaticKeys | None = None
        self._retry_after = 5
        if oauth is None:
            return
        self.rules = TokenRules(oauth.issuer, oauth.audience, oauth.algorithms, oauth.leeway_seconds)
        self._retry_after = oauth.jwks_min_refetch_seconds
        if oauth.jwks_url is not None:
            self.keys = JwksKeys(oauth.jwks_url, oauth.algorithms, timeout_seconds=oauth.jwks_timeout_seconds,
                                 refresh_seconds=oauth.jwks_refresh_seconds,
                                 min_refetch_seconds=oauth.jwks_min_refetch_seconds)
        else:
            assert oauth.public_key_pem is not None  # settings.oauth_from_env requires one of the two
            self.keys = StaticKeys(oauth.public_key_pem, oauth.algorithms)

    def start(self) -> None:
        """Begin fetching the issuer's keys (called when the server starts the app)."""
        if self.keys is not None:
            self.keys.start()

    async def token_info(self, token: str, required_scopes: t.Sequence[str] | None = None) -> dict:
        """Return Connexion's token info for a token that grants `required_scopes`, else raise the problem to answer."""
        if self.rules is None or self.keys is None:
            raise InvalidToken(NOT_CONFIGURED)
        try:
            kid = unverified_kid(token)
            key_set = self.keys.key_set()
            key = await self._key(key_set, kid)
            verified = verify_token(token, key, self.rules)
        except TokenRefused as refused:
            logger.info("bearer token refused: %s", refused.description)
            raise InvalidToken(refused.description) from None
        required = list(required_scopes or ())
        if not set(required) <= verified.scopes:
            raise InsufficientScope(required, verified.scopes)
        # `sub` becomes Connexion's context["user"]: the principal idempotency keys are kept under.
        return {"sub": verified.principal, "scope": sorted(verified.scopes), "subject": verified.subject}

    async def _key(self, key_set: KeySet | None, kid: str | None):
        assert self.keys is not None
        if key_set is not None:
            try:
                return key_set.key_for(kid)
            except UnknownKey:
                pass  # perhaps rotated: look again, within the bound on refetches
        refetched = await self.keys.refetched()
        if refetched is None:
            if self.keys.key_set() is None:
                raise KeysUnavailable(self._retry_after)
            raise UnknownKey(kid)
        return refetched.key_for(kid)


def security_map(keys: frozenset[str], bearer: BearerTokens) -> dict[str, type]:
    """Return a Connexion security map: the apiKey handler accepts exactly these keys, the oauth2 one these tokens.

    The request's principal (Connexion's `context["user"]`) tells the clients apart, so that what is kept
    per client, such as idempotency keys, is kept per API key and per token subject.
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

    class ConfiguredOAuthHandler(OAuthSecurityHandler):
        # Connexion resolves the token-info function from the spec's x-tokenInfoFunc (or calls a remote
        # x-tokenInfoUrl per request); the tokens are verified here, locally (docs/library-internals.md).
        def get_tokeninfo_func(self, security_definition: dict) -> t.Callable:
            return bearer.token_info

    return {"apiKey": ConfiguredApiKeyHandler, "oauth2": ConfiguredOAuthHandler}


def register_security_problem_handlers(app: AbstractApp) -> None:
    """Give every 401 and 403 Connexion's security answers its `WWW-Authenticate` challenge (RFC 7235, RFC 6750).

    Coroutines, so that Connexion runs them on the event loop rather than in a thread of its pool.
    """
    app.add_error_handler(Unauthorized, unauthorized)
    app.add_error_handler(OAuthScopeProblem, scope_refused)


async def unauthorized(_request: ConnexionRequest, error: Exception) -> ConnexionResponse:
    """Answer a 401 as its problem, with a challenge: no error code when no token was sent (RFC 6750 §3.1)."""
    assert isinstance(error, ProblemException)
    logger.info("401 %s", error.detail)
    headers = dict(error.headers or {})
    headers.setdefault("WWW-Authenticate", challenge())
    return problem(status=error.status, title=error.title, detail=error.detail, type=error.type,
                   headers=headers, ext=error.ext)


async def scope_refused(_request: ConnexionRequest, error: Exception) -> ConnexionResponse:
    """Answer Connexion's own scope refusal (the token check refuses first; this is the safety net) as InsufficientScope."""
    assert isinstance(error, OAuthScopeProblem)
    granted = error.token_scopes.split() if isinstance(error.token_scopes, str) else error.token_scopes
    return InsufficientScope(list(error.required_scopes), granted).to_problem()

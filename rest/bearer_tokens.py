"""OAuth2 bearer tokens (RFC 6750, JWT access tokens per RFC 9068): verification with PyJWT, framework-free.

What a token must be to be accepted: signed with an asymmetric algorithm of the allow-list by a key of the
issuer (never `none`, never HMAC: a public key can then not be misused as a shared secret), issued by the
configured issuer for the configured audience, within `exp`/`nbf` give or take the leeway, naming a subject
(`sub`, else `client_id`, else `azp`). Every refusal is a `TokenRefused` whose description is safe to show
the client (RFC 6750 `error_description`). Everything here is CPU only: the key set is fetched elsewhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

# Each accepted algorithm and the JWK key type that verifies it; HMAC (HS*) and `none` are never here.
ASYMMETRIC_ALGORITHMS: Mapping[str, str] = {
    "RS256": "RSA", "RS384": "RSA", "RS512": "RSA",
    "PS256": "RSA", "PS384": "RSA", "PS512": "RSA",
    "ES256": "EC", "ES384": "EC", "ES512": "EC",
    "EdDSA": "OKP",
}
_EC_CURVES = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
_EC_CURVE_NAMES = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_OKP_CURVES = {"Ed25519", "Ed448"}


class TokenRefused(Exception):
    """The token is missing its proof: RFC 6750 `invalid_token`, with a description fit for the client."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class UnknownKey(TokenRefused):
    """The token names a signing key (`kid`) the key set does not hold (yet: the issuer may have rotated)."""

    def __init__(self, kid: str | None) -> None:
        # The kid comes from the client: cut, so that a long one cannot swell the answer's header.
        shown = repr(kid[:64] + "..." if kid and len(kid) > 64 else kid)
        super().__init__(f"the token's signing key {shown} is not one of the issuer's keys" if kid
                         else "the token names no signing key (kid) and the issuer has several")
        self.kid = kid


@dataclass(frozen=True)
class TokenRules:
    """What a valid token must say: who issued it, for whom, signed how, and the clock skew tolerated."""

    issuer: str
    audience: str
    algorithms: frozenset[str]
    leeway_seconds: int = 30

    def __post_init__(self) -> None:
        refused = self.algorithms - set(ASYMMETRIC_ALGORITHMS)
        if refused or not self.algorithms:
            raise ValueError(f"only asymmetric algorithms may verify tokens, not {sorted(refused) or 'none at all'}")


@dataclass(frozen=True)
class VerificationKey:
    """One public key of the issuer and the algorithms of the allow-list it may verify."""

    key: Any
    algorithms: frozenset[str]


@dataclass(frozen=True)
class KeySet:
    """The issuer's signing keys by `kid`; a key set from a PEM file has one key that verifies every token."""

    keys: Mapping[str | None, VerificationKey] = field(default_factory=dict)
    any_kid: bool = False

    def key_for(self, kid: str | None) -> VerificationKey:
        """Return the key that verifies a token naming `kid`, or raise UnknownKey."""
        if self.any_kid or (kid is None and len(self.keys) == 1):
            return next(iter(self.keys.values()))
        found = self.keys.get(kid) if kid is not None else None
        if found is None:
            raise UnknownKey(kid)
        return found


@dataclass(frozen=True)
class Token:
    """A verified access token: who it acts for and what it may do."""

    principal: str
    subject: str
    scopes: frozenset[str]
    claims: Mapping[str, Any]


def principal_of_token(issuer: str, subject: str) -> str:
    """Return the name a request authenticated with a token acts as: per issuer and subject, never an API key's.

    A digest, so that any issuer URL and subject fit the 64 characters kept with an idempotency key.
    """
    return "sub:" + hashlib.sha256(f"{issuer}\x00{subject}".encode()).hexdigest()[:32]


def key_set_from_pem(pem: str | bytes, allowed: Iterable[str]) -> KeySet:
    """Return a one-key set from a PEM public key; raise ValueError for anything but an asymmetric public key."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError) as error:
        raise ValueError(f"not a PEM public key ({error})") from None
    if isinstance(key, RSAPublicKey):
        usable = {name for name, kty in ASYMMETRIC_ALGORITHMS.items() if kty == "RSA"}
    elif isinstance(key, EllipticCurvePublicKey):
        # By the curve, not its size: secp256k1 is 256 bits too, and ES256 means P-256.
        usable = {_EC_CURVE_NAMES[key.curve.name]} if key.curve.name in _EC_CURVE_NAMES else set()
    elif isinstance(key, (Ed25519PublicKey, Ed448PublicKey)):
        usable = {"EdDSA"}
    else:
        raise ValueError(f"a {type(key).__name__} cannot verify tokens")
    algorithms = frozenset(usable & set(allowed))
    if not algorithms:
        raise ValueError(f"this key verifies only {sorted(usable)}, none of them allowed")
    return KeySet({None: VerificationKey(key, algorithms)}, any_kid=True)


def key_set_from_jwks(document: Any, allowed: Iterable[str]) -> KeySet:
    """Return the signing keys of a JWKS document (RFC 7517) usable with the allowed algorithms.

    Symmetric (`oct`) keys, encryption keys (`use: enc`), keys without a `kid` and keys whose `alg` is not
    allowed are left out; raise ValueError when nothing usable is left.
    """
    allowed = set(allowed)
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise ValueError("a JWKS document is an object with a `keys` array")
    keys: dict[str | None, VerificationKey] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, Mapping) or not isinstance(jwk.get("kid"), str) or jwk.get("use", "sig") != "sig":
            continue
        algorithms = _algorithms_of_jwk(jwk) & allowed
        if not algorithms:
            continue
        try:
            key = jwt.PyJWK(dict(jwk), algorithm=min(algorithms)).key
        except jwt.PyJWTError:
            continue
        keys[jwk["kid"]] = VerificationKey(key, frozenset(algorithms))
    if not keys:
        raise ValueError("the JWKS has no signing key usable with the allowed algorithms")
    return KeySet(keys)


def _algorithms_of_jwk(jwk: Mapping[str, Any]) -> set[str]:
    kty, alg = jwk.get("kty"), jwk.get("alg")
    if kty == "RSA":
        usable = {name for name, key_type in ASYMMETRIC_ALGORITHMS.items() if key_type == "RSA"}
    elif kty == "EC" and jwk.get("crv") in _EC_CURVES:
        usable = {_EC_CURVES[jwk["crv"]]}
    elif kty == "OKP" and jwk.get("crv") in _OKP_CURVES:
        usable = {"EdDSA"}
    else:
        return set()
    return usable & {alg} if alg is not None else usable


def unverified_kid(token: str) -> str | None:
    """Return the `kid` a token's header names (None if it names none); raise TokenRefused for a malformed token."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenRefused("the token is not a well-formed JWT") from None
    kid = header.get("kid")  # PyJWT has refused a kid that is not a string
    return kid if isinstance(kid, str) else None


def verify_token(token: str, key: VerificationKey, rules: TokenRules) -> Token:
    """Verify a token's signature and claims with `key`; return what it grants or raise TokenRefused."""
    try:
        claims = jwt.decode(
            token,
            key.key,
            # The header's `alg` must be one this key type verifies and the allow-list names: `none` and
            # HS256-signed-with-the-public-key are refused here, before any signature is computed.
            algorithms=sorted(key.algorithms & rules.algorithms),
            audience=rules.audience,
            issuer=rules.issuer,
            leeway=rules.leeway_seconds,
            options={"require": ["exp", "iss", "aud"]},
        )
    except jwt.PyJWTError as error:
        raise TokenRefused(_description(error)) from None
    subject = next((claims[name] for name in ("sub", "client_id", "azp") if isinstance(claims.get(name), str) and claims[name]), None)
    if subject is None:
        raise TokenRefused("the token names no subject (sub, client_id or azp)")
    return Token(principal_of_token(rules.issuer, subject), subject, _scopes(claims), claims)


def _scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    # RFC 9068 `scope` is one space-separated string; some issuers send `scp`, as a list or a string.
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            return frozenset(value.split())
        if isinstance(value, list):
            return frozenset(item for item in value if isinstance(item, str))
    return frozenset()


def _description(error: jwt.PyJWTError) -> str:
    if isinstance(error, jwt.ExpiredSignatureError):
        return "the token has expired"
    if isinstance(error, jwt.ImmatureSignatureError):
        return "the token is not valid yet (nbf or iat in the future)"
    if isinstance(error, jwt.InvalidIssuerError):
        return "the token was not issued by this service's issuer"
    if isinstance(error, jwt.InvalidAudienceError):
        return "the token is not meant for this service (aud)"
    if isinstance(error, jwt.MissingRequiredClaimError):
        return f"the token has no {error.claim} claim"
    if isinstance(error, jwt.InvalidAlgorithmError):
        return "the token's signing algorithm is not accepted"
    if isinstance(error, jwt.InvalidSignatureError):
        return "the token's signature does not verify"
    # PyJWT's own words for the rest (a malformed segment or claim); they name no secret.
    return f"the token is not valid ({error})"

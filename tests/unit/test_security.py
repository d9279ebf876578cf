"""Unit tests of the security settings (APP_OAUTH_*, APP_CORS_ORIGINS), token principals and the challenge header."""

from __future__ import annotations

import asyncio
import base64
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519

from rest.bearer_tokens import (
    ASYMMETRIC_ALGORITHMS,
    TokenRefused,
    TokenRules,
    UnknownKey,
    key_set_from_jwks,
    key_set_from_pem,
    principal_of_token,
    unverified_kid,
    verify_token,
)
from settings import ConfigurationError, Settings
from tests.support.issuer import AUDIENCE, ISSUER, TestIssuer
from web.bearer_keys import StaticKeys
from web.security import challenge, principal_of

JWKS_URL = "https://issuer.test/jwks.json"


@pytest.fixture(scope="module")
def issuer() -> TestIssuer:
    test_issuer = TestIssuer()  # never started: only its keys are used
    test_issuer.add_key("k1")
    return test_issuer


def test_no_oauth_variable_means_tokens_are_not_configured():
    assert Settings.from_env({}).oauth is None


def test_an_issuer_with_a_jwks_url_and_the_defaults():
    oauth = Settings.from_env({"APP_OAUTH_ISSUER": ISSUER, "APP_OAUTH_AUDIENCE": AUDIENCE, "APP_OAUTH_JWKS_URL": JWKS_URL}).oauth
    assert oauth is not None and (oauth.issuer, oauth.audience, oauth.jwks_url) == (ISSUER, AUDIENCE, JWKS_URL)
    assert oauth.algorithms == frozenset(ASYMMETRIC_ALGORITHMS) and oauth.leeway_seconds == 30
    assert oauth.jwks_min_refetch_seconds == 30 and oauth.public_key_pem is None


def test_a_public_key_file_is_read_once_at_start(issuer, tmp_path):
    path = tmp_path / "issuer.pem"
    path.write_text(issuer.public_pem("k1"))
    oauth = Settings.from_env({"APP_OAUTH_ISSUER": ISSUER, "APP_OAUTH_AUDIENCE": AUDIENCE,
                               "APP_OAUTH_PUBLIC_KEY_FILE": str(path), "APP_OAUTH_ALGORITHMS": "RS256, PS256"}).oauth
    assert oauth is not None and oauth.public_key_pem == issuer.public_pem("k1")
    assert oauth.algorithms == {"RS256", "PS256"}


@pytest.mark.parametrize("environ, named", [
    ({"APP_OAUTH_JWKS_URL": JWKS_URL, "APP_OAUTH_AUDIENCE": AUDIENCE}, "APP_OAUTH_ISSUER"),
    ({"APP_OAUTH_ISSUER": ISSUER, "APP_OAUTH_JWKS_URL": JWKS_URL}, "APP_OAUTH_AUDIENCE"),
    ({"APP_OAUTH_ISSUER": ISSUER, "APP_OAUTH_AUDIENCE": AUDIENCE}, "APP_OAUTH_JWKS_URL"),
    ({"APP_OAUTH_ISSUER": ISSUER, "APP_OAUTH_AUDIENCE": AUDIENCE, "APP_OAUTH_JWKS_URL": "file:///etc/passwd"}, "APP_OAUTH_JWKS_URL"),
    ({"APP_OAUTH_ISSUER": ISSUER, "APP_OAUTH_AUDIENCE": AUDIENCE, "APP_OAUTH_JWKS_URL": JWKS_URL,
      "APP_OAUTH_ALGORITHMS": "RS256,HS256"}, "APP_OAUTH_ALGORITHMS"),
    ({"APP_OAUTH_ISSUER": ISSUER, "APP_OAUTH_AUDIENCE": AUDIENCE, "APP_OAUTH_JWKS_URL": JWKS_URL,
      "APP_OAUTH_ALGORITHMS": "none"}, "APP_OAUTH_ALGORITHMS"),
    ({"APP_OAUTH_ISSUER": ISSUER, "APP_OAUTH_AUDIENCE": AUDIENCE, "APP_OAUTH_PUBLIC_KEY": "not a key"}, "APP_OAUTH_PUBLIC_KEY"),
    ({"APP_OAUTH_ISSUER": ISSUER, "APP_OAUTH_AUDIENCE": AUDIENCE, "APP_OAUTH_PUBLIC_KEY_FILE": "/nonexistent.pem"},
     "APP_OAUTH_PUBLIC_KEY_FILE"),
    ({"APP_OAUTH_ISSUER": ISSUER, "APP_OAUTH_AUDIENCE": AUDIENCE, "APP_OAUTH_JWKS_URL": JWKS_URL,
      "APP_OAUTH_LEEWAY_SECONDS": "3600"}, "APP_OAUTH_LEEWAY_SECONDS"),
    ({"APP_OAUTH_ISSUER": ISSUER, "APP_OAUTH_AUDIENCE": AUDIENCE, "APP_OAUTH_JWKS_URL": JWKS_URL,
      "APP_OAUTH_TOKEN_URL": "token"}, "APP_OAUTH_TOKEN_URL"),
    ({"APP_OAUTH_TOKEN_URL": "https://issuer.test/token"}, "APP_OAUTH_ISSUER"),
    ({"APP_CORS_ORIGINS": "https://app.example.com/"}, "APP_CORS_ORIGINS"),
    ({"APP_CORS_ORIGINS": "app.example.com"}, "APP_CORS_ORIGINS"),
])
def test_an_incomplete_or_unsafe_setting_stops_the_start_naming_the_variable(environ, named):
    with pytest.raises(ConfigurationError, match=named):
        Settings.from_env(environ)


def test_a_jwks_url_and_a_public_key_together_are_refused(issuer):
    with pytest.raises(ConfigurationError, match="exactly one"):
        Settings.from_env({"APP_OAUTH_ISSUER": ISSUER, "APP_OAUTH_AUDIENCE": AUDIENCE, "APP_OAUTH_JWKS_URL": JWKS_URL,
                           "APP_OAUTH_PUBLIC_KEY": issuer.public_pem("k1")})


def test_a_pem_key_whose_algorithms_are_all_disallowed_is_refused(issuer):
    with pytest.raises(ConfigurationError, match="APP_OAUTH_PUBLIC_KEY"):
        Settings.from_env({"APP_OAUTH_ISSUER": ISSUER, "APP_OAUTH_AUDIENCE": AUDIENCE,
                           "APP_OAUTH_PUBLIC_KEY": issuer.public_pem("k1"), "APP_OAUTH_ALGORITHMS": "ES256"})


def test_cors_origins_are_a_trimmed_list_without_duplicates():
    assert Settings.from_env({}).cors_origins == ()
    assert Settings.from_env({"APP_CORS_ORIGINS": " https://a.example, http://127.0.0.1:8000,https://a.example"}).cors_origins == (
        "https://a.example", "http://127.0.0.1:8000")


def test_token_rules_refuse_symmetric_algorithms():
    with pytest.raises(ValueError, match="HS256"):
        TokenRules(ISSUER, AUDIENCE, frozenset({"RS256", "HS256"}))
    with pytest.raises(ValueError):
        TokenRules(ISSUER, AUDIENCE, frozenset())


def test_a_jwks_keeps_only_signing_keys_usable_with_the_allowed_algorithms(issuer):
    issuer.add_key("ec", "EC")
    document = issuer.jwks()
    document["keys"] += [
        {"kty": "oct", "kid": "shared-secret", "k": "c2VjcmV0"},     # symmetric: never
        {**document["keys"][0], "kid": "for-encryption", "use": "enc"},
        {**document["keys"][0], "kid": None},                          # no kid
        "not an object",
    ]
    keys = key_set_from_jwks(document, {"RS256", "ES256"})
    assert set(keys.keys) == {"k1", "ec"}
    assert keys.keys["k1"].algorithms == {"RS256"} and keys.keys["ec"].algorithms == {"ES256"}
    assert set(key_set_from_jwks(document, {"ES256"}).keys) == {"ec"}
    with pytest.raises(ValueError):
        key_set_from_jwks(document, {"EdDSA"})
    with pytest.raises(ValueError):
        key_set_from_jwks({"keys": "nope"}, {"RS256"})


def test_principals_tell_issuers_subjects_and_api_keys_apart_and_fit_the_idempotency_column():
    alice = principal_of_token(ISSUER, "alice")
    assert alice == principal_of_token(ISSUER, "alice")
    assert alice != principal_of_token("https://elsewhere.test/", "alice") != principal_of_token(ISSUER, "bob")
    assert alice.startswith("sub:") and principal_of("alice").startswith("key:")
    assert len(principal_of_token("https://" + "x" * 500, "y" * 500)) <= 64


def test_an_unknown_kid_is_named_but_cut_to_64_characters():
    assert "'k9'" in UnknownKey("k9").description
    long = UnknownKey("x" * 10_000).description
    assert len(long) < 150 and "x" * 64 + "..." in long


def test_the_challenge_quotes_safely():
    assert challenge() == 'Bearer realm="rooms"'
    assert challenge(error="invalid_token", error_description='kid "a\\b" é') == \
        'Bearer realm="rooms", error="invalid_token", error_description="kid ?a?b? ?"'


def _pem(public_key) -> str:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def test_a_pem_key_verifies_only_the_algorithms_of_its_type_and_curve():
    every = set(ASYMMETRIC_ALGORITHMS)
    ed = key_set_from_pem(_pem(ed25519.Ed25519PrivateKey.generate().public_key()), every)
    assert ed.key_for("any kid").algorithms == {"EdDSA"}
    p384 = key_set_from_pem(_pem(ec.generate_private_key(ec.SECP384R1()).public_key()), every)
    assert p384.key_for(None).algorithms == {"ES384"}
    with pytest.raises(ValueError, match="none of them allowed"):
        key_set_from_pem(_pem(ec.generate_private_key(ec.SECP256K1()).public_key()), every)  # 256 bits, not P-256
    with pytest.raises(ValueError, match="cannot verify tokens"):
        key_set_from_pem(_pem(x25519.X25519PrivateKey.generate().public_key()), every)  # a key-agreement key


def test_the_verifier_reads_the_header_and_claims_carefully(issuer):
    rules = TokenRules(ISSUER, AUDIENCE, frozenset(ASYMMETRIC_ALGORITHMS))
    key = key_set_from_jwks(issuer.jwks(), ASYMMETRIC_ALGORITHMS).key_for("k1")
    header = base64.urlsafe_b64encode(json.dumps({"alg": "RS256", "kid": 7}).encode()).rstrip(b"=").decode()
    numeric_kid = f"{header}.{issuer.token().split('.', 1)[1]}"  # PyJWT itself will not write a numeric kid
    with pytest.raises(TokenRefused, match="not a well-formed JWT"):
        unverified_kid(numeric_kid)
    assert verify_token(issuer.token(scope=None, scp="a b"), key, rules).scopes == {"a", "b"}
    assert verify_token(issuer.token(scope=None), key, rules).scopes == frozenset()
    malformed_nbf = jwt.encode(issuer.claims(nbf="soon"), issuer.private_keys["k1"], algorithm="RS256", headers={"kid": "k1"})
    with pytest.raises(TokenRefused, match="not valid"):
        verify_token(malformed_nbf, key, rules)


def test_a_jwk_that_does_not_make_a_key_is_left_out(issuer):
    broken = {**issuer.jwks()["keys"][0], "kid": "broken", "n": "AA"}
    assert set(key_set_from_jwks({"keys": [*issuer.jwks()["keys"], broken]}, {"RS256"}).keys) == {"k1"}


def test_a_configured_key_is_never_refetched(issuer):
    keys = StaticKeys(issuer.public_pem("k1"), frozenset({"RS256"}))
    keys.start()
    assert asyncio.run(keys.refetched()) is None and keys.key_set() is not None

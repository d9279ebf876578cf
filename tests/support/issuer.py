"""A test OAuth2 issuer: signing keys made with `cryptography`, a JWKS served on loopback that counts its fetches, tokens.

The JWKS server is a thread running http.server on 127.0.0.1; nothing leaves the machine. `publish` chooses
which keys the JWKS lists (a rotation publishes a new one), `delay_seconds` slows each answer down (a slow
issuer), `fail` makes it answer 500 (an issuer that is down).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from settings import OAuthSettings

ISSUER = "https://issuer.test/realms/platform"
AUDIENCE = "rooms-service"
ALGORITHMS = {"RSA": "RS256", "EC": "ES256", "Ed25519": "EdDSA"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TestIssuer:
    """Signing keys, the JWKS that publishes them, and tokens signed with them."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self) -> None:
        self.private_keys: dict[str, object] = {}
        self.kinds: dict[str, str] = {}
        self.published: list[str] = []
        self.fetches = 0
        self.delay_seconds = 0.0
        self.fail = False
        self._lock = threading.Lock()
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                with issuer._lock:
                    issuer.fetches += 1
                    delay, fail, document = issuer.delay_seconds, issuer.fail, issuer.jwks()
                time.sleep(delay)
                body = json.dumps(document).encode()
                self.send_response(500 if fail or self.path != "/jwks.json" else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.jwks_url = f"http://127.0.0.1:{self._server.server_address[1]}/jwks.json"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> TestIssuer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add_key(self, kid: str, kind: str = "RSA", *, publish: bool = True) -> None:
        """Make a new signing key (RSA, EC P-256 or Ed25519), published in the JWKS unless told otherwise."""
        if kind == "RSA":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif kind == "EC":
            key = ec.generate_private_key(ec.SECP256R1())
        else:
            key = ed25519.Ed25519PrivateKey.generate()
        with self._lock:
            self.private_keys[kid] = key
            self.kinds[kid] = kind
            if publish:
                self.published.append(kid)

    def publish(self, *kids: str) -> None:
        """List exactly these keys in the JWKS from now on."""
        with self._lock:
            self.published = list(kids)

    def public_pem(self, kid: str) -> str:
        """The public key of `kid` as PEM (what APP_OAUTH_PUBLIC_KEY holds)."""
        return self.private_keys[kid].public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def jwks(self) -> dict:
        """The JWKS document as the issuer publishes it now."""
        keys = []
        for kid in self.published:
            public = self.private_keys[kid].public_key()
            kind = self.kinds[kid]
            jwk = json.loads(jwt.get_algorithm_by_name(ALGORITHMS[kind]).to_jwk(public))
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": ALGORITHMS[kind]})
        return {"keys": keys}

    def claims(self, *, scope: str | None = "rooms:write", sub: str | None = "client-a", lifetime: int = 300,
               **overrides) -> dict:
        """Claims of an access token for the service, valid now for `lifetime` seconds; overrides win (None removes)."""
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "scope": scope, "iat": now, "exp": now + lifetime,
                  "jti": str(uuid.uuid4())}
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def token(self, kid: str = "k1", **claims) -> str:
        """An access token signed with `kid`'s key, naming it in the header."""
        kind = self.kinds[kid]
        return jwt.encode(self.claims(**claims), self.private_keys[kid], algorithm=ALGORITHMS[kind], headers={"kid": kid})

    def unsigned_token(self, **claims) -> str:
        """A token with `alg: none` and no signature: what a forger sends."""
        header = {"alg": "none", "typ": "JWT", "kid": "k1"}
        return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(self.claims(**claims)).encode())}."

    def hmac_with_public_key(self, kid: str = "k1", **claims) -> str:
        """A token HS256-signed with `kid`'s *public* key as the secret: the algorithm-confusion attack.

        Built by hand: PyJWT itself refuses to use a PEM key as an HMAC secret.
        """
        header = {"alg": "HS256", "typ": "JWT", "kid": kid}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(self.claims(**claims)).encode())}"
        signature = hmac.new(self.public_pem(kid).encode(), signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(signature)}"

    def settings(self, **overrides) -> OAuthSettings:
        """The service's OAuth settings for this issuer's JWKS (tests may swap in a PEM key)."""
        values = {"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": self.jwks_url, "jwks_min_refetch_seconds": 1,
                  "jwks_timeout_seconds": 5}
        values.update(overrides)
        return OAuthSettings(**values)


@pytest.fixture
def issuer() -> Iterator[TestIssuer]:
    """A fresh issuer with one RSA key `k1`, published."""
    with TestIssuer() as test_issuer:
        test_issuer.add_key("k1")
        yield test_issuer

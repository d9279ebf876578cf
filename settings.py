"""Typed configuration, read once from the environment and passed to the app factory."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

from providers.paging import DEFAULT_MAX_PAGE_BYTES
from rest.bearer_tokens import ASYMMETRIC_ALGORITHMS, key_set_from_pem

PROJECT_ROOT = Path(__file__).resolve().parent
DEFAULT_SQLITE_PATH = PROJECT_ROOT / "var" / "rooms.sqlite3"


class ConfigurationError(ValueError):
    """Raised when an environment variable holds a value the service cannot use."""


@dataclass(frozen=True)
class OAuthSettings:
    """The OAuth2 issuer whose bearer tokens the service accepts beside its API keys (docs/security.md)."""

    issuer: str
    audience: str
    jwks_url: str | None = None
    public_key_pem: str | None = None
    algorithms: frozenset[str] = frozenset(ASYMMETRIC_ALGORITHMS)
    leeway_seconds: int = 30
    # A key set older than this is refetched in the background while it keeps serving.
    jwks_refresh_seconds: int = 300
    # The bound on refetches: a token naming an unknown kid starts at most one fetch per this many seconds.
    jwks_min_refetch_seconds: int = 30
    jwks_timeout_seconds: int = 5
    # Shown in the served OpenAPI document's clientCredentials flow (the file holds a placeholder).
    token_url: str | None = None


OAUTH_VARIABLES = ("APP_OAUTH_ISSUER", "APP_OAUTH_AUDIENCE", "APP_OAUTH_JWKS_URL", "APP_OAUTH_PUBLIC_KEY",
                   "APP_OAUTH_PUBLIC_KEY_FILE", "APP_OAUTH_TOKEN_URL")


@dataclass(frozen=True)
class Settings:
    """Everything the service needs to know about its deployment."""

    database_url: str = f"sqlite:///{DEFAULT_SQLITE_PATH}"
    pool_size: int = 10
    pool_recycle_seconds: int = 300
    pool_pre_ping: bool = False
    address: str = "0.0.0.0"
    port: int = 9090
    api_keys: frozenset[str] = field(default_factory=frozenset)
    max_body_bytes: int = 1024 * 1024
    # Hostile and odd input (docs/api.md, Limits on client input): bounds on what a client can make the service walk or list.
    max_header_bytes: int = 64 * 1024
    # How long a client may take to send a request's head, and may leave its body stalled (web/server_protocol.py).
    request_head_timeout_seconds: int = 10
    request_body_timeout_seconds: int = 30
    max_json_depth: int = 32
    max_json_values: int = 10_000
    max_problem_errors: int = 100
    max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES
    validate_responses: bool = False
    speedups: bool = True
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    handler_threads: int = 40
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    relay_exchange: str = "rooms.events"
    relay_batch_size: int = 100
    # Operable under faults: readiness, 503s while the database is away, graceful shutdown.
    retry_after_seconds: int = 5
    ready_timeout_seconds: int = 2
    db_connect_timeout_seconds: int = 5
    sqlite_lock_timeout_seconds: int = 10
    graceful_shutdown_seconds: int = 20
    # Observability (observability/logs.py, observability/telemetry.py)
    log_format: str = "text"
    access_log: bool = True
    idempotency_ttl_seconds: int = 24 * 60 * 60
    # Avro bodies (contract/avro_bounds.py, docs/avro-limits.md); decoded bytes default to max_body_bytes.
    avro_max_depth: int = 32
    avro_max_values: int = 10_000
    avro_max_schema_bytes: int = 64 * 1024
    avro_max_decoded_bytes: int | None = None
    # Bearer tokens (docs/security.md): None = not configured, tokens refused with a 401 saying so.
    oauth: OAuthSettings | None = None
    # Browser origins allowed to call the API (CORS); none = no CORS headers at all.
    cors_origins: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Build settings from environment variables, falling back to the defaults."""
        return cls(
            database_url=database_url_from_env(environ),
            pool_size=_int(environ, "APP_DB_CONNECTIONS", cls.pool_size, minimum=1),
            pool_recycle_seconds=_int(environ, "APP_DB_STALE_TIMEOUT", cls.pool_recycle_seconds, minimum=1),
            pool_pre_ping=_bool(environ, "APP_DB_PRE_PING", cls.pool_pre_ping),
            address=environ.get("APP_ADDRESS", cls.address),
            port=_int(environ, "APP_PORT", cls.port, minimum=1),
            api_keys=frozenset(k.strip() for k in environ.get("APP_API_KEYS", "").split(",") if k.strip()),
            max_body_bytes=_int(environ, "APP_MAX_BODY_BYTES", cls.max_body_bytes, minimum=1),
            max_header_bytes=_int(environ, "APP_MAX_HEADER_BYTES", cls.max_header_bytes, minimum=1024),
            request_head_timeout_seconds=_int(
                environ, "APP_REQUEST_HEAD_TIMEOUT_SECONDS", cls.request_head_timeout_seconds, minimum=1, maximum=3600
            ),
            request_body_timeout_seconds=_int(
                environ, "APP_REQUEST_BODY_TIMEOUT_SECONDS", cls.request_body_timeout_seconds, minimum=1, maximum=3600
            ),
            max_json_depth=_int(environ, "APP_MAX_JSON_DEPTH", cls.max_json_depth, minimum=2),
            max_json_values=_int(environ, "APP_MAX_JSON_VALUES", cls.max_json_values, minimum=100),
            max_problem_errors=_int(environ, "APP_MAX_PROBLEM_ERRORS", cls.max_problem_errors, minimum=1),
            max_page_bytes=_int(environ, "APP_MAX_PAGE_BYTES", cls.max_page_bytes, minimum=1024),
            validate_responses=_bool(environ, "APP_VALIDATE_RESPONSES", cls.validate_responses),
            speedups=_bool(environ, "APP_SPEEDUPS", cls.speedups),
            workers=_int(environ, "APP_WORKERS", os.cpu_count() or 1, minimum=1),
            handler_threads=_int(environ, "APP_THREADS", cls.handler_threads, minimum=1),
            amqp_url=environ.get("AMQP_URL") or cls.amqp_url,
            relay_exchange=environ.get("RELAY_EXCHANGE") or cls.relay_exchange,
            relay_batch_size=_int(environ, "RELAY_BATCH_SIZE", cls.relay_batch_size, minimum=1),
            retry_after_seconds=_int(environ, "APP_RETRY_AFTER_SECONDS", cls.retry_after_seconds, minimum=1),
            ready_timeout_seconds=_int(environ, "APP_READY_TIMEOUT_SECONDS", cls.ready_timeout_seconds, minimum=1),
            db_connect_timeout_seconds=_int(
                environ, "APP_DB_CONNECT_TIMEOUT_SECONDS", cls.db_connect_timeout_seconds, minimum=1
            ),
            sqlite_lock_timeout_seconds=_int(
                environ, "APP_SQLITE_LOCK_TIMEOUT_SECONDS", cls.sqlite_lock_timeout_seconds, minimum=1
            ),
            graceful_shutdown_seconds=_int(
                environ, "APP_GRACEFUL_SHUTDOWN_SECONDS", cls.graceful_shutdown_seconds, minimum=1
            ),
            log_format=_choice(environ, "APP_LOG_FORMAT", cls.log_format, ("text", "json")),
            access_log=_bool(environ, "APP_ACCESS_LOG", cls.access_log),
            idempotency_ttl_seconds=_int(environ, "APP_IDEMPOTENCY_TTL_SECONDS", cls.idempotency_ttl_seconds, minimum=1),
            # Schemas 4 JSON levels a level deep go through recursive parsers (json, fastavro): keep them shallow.
            avro_max_depth=_int(environ, "APP_AVRO_MAX_DEPTH", cls.avro_max_depth, minimum=1, maximum=100),
            avro_max_values=_int(environ, "APP_AVRO_MAX_VALUES", cls.avro_max_values, minimum=1),
            avro_max_schema_bytes=_int(environ, "APP_AVRO_MAX_SCHEMA_BYTES", cls.avro_max_schema_bytes, minimum=1),
            avro_max_decoded_bytes=_optional_int(environ, "APP_AVRO_MAX_DECODED_BYTES", minimum=1),
            oauth=oauth_from_env(environ),
            cors_origins=cors_origins_from_env(environ),
        )


def oauth_from_env(environ: Mapping[str, str]) -> OAuthSettings | None:
    """Return the bearer-token issuer from the APP_OAUTH_* variables, or None when none of them is set."""
    if not any(environ.get(name) for name in OAUTH_VARIABLES):
        return None
    issuer, audience = environ.get("APP_OAUTH_ISSUER"), environ.get("APP_OAUTH_AUDIENCE")
    if not issuer:
        raise ConfigurationError("APP_OAUTH_ISSUER must be set when bearer tokens are configured (the tokens' `iss`)")
    if not audience:
        raise ConfigurationError("APP_OAUTH_AUDIENCE must be set when bearer tokens are configured (the tokens' `aud`)")
    algorithms = _algorithms(environ, "APP_OAUTH_ALGORITHMS")
    jwks_url = environ.get("APP_OAUTH_JWKS_URL") or None
    pem = _public_key_pem(environ)
    if (jwks_url is None) == (pem is None):
        raise ConfigurationError("set exactly one of APP_OAUTH_JWKS_URL and APP_OAUTH_PUBLIC_KEY(_FILE): "
                                 "where the issuer's signing keys come from")
    if jwks_url is not None and (urlsplit(jwks_url).scheme not in ("http", "https") or not urlsplit(jwks_url).netloc):
        raise ConfigurationError(f"APP_OAUTH_JWKS_URL must be an http(s) URL, got {jwks_url!r}")
    token_url = environ.get("APP_OAUTH_TOKEN_URL") or None
    if token_url is not None and (urlsplit(token_url).scheme not in ("http", "https") or not urlsplit(token_url).netloc):
        raise ConfigurationError(f"APP_OAUTH_TOKEN_URL must be an http(s) URL, got {token_url!r}")
    if pem is not None:
        name = "APP_OAUTH_PUBLIC_KEY_FILE" if environ.get("APP_OAUTH_PUBLIC_KEY_FILE") else "APP_OAUTH_PUBLIC_KEY"
        try:
            key_set_from_pem(pem, algorithms)
        except ValueError as error:
            raise ConfigurationError(f"{name}: {error}") from None
    defaults = OAuthSettings(issuer=issuer, audience=audience)
    return OAuthSettings(
        issuer=issuer,
        audience=audience,
        jwks_url=jwks_url,
        public_key_pem=pem,
        algorithms=algorithms,
        leeway_seconds=_int(environ, "APP_OAUTH_LEEWAY_SECONDS", defaults.leeway_seconds, minimum=0, maximum=300),
        jwks_refresh_seconds=_int(environ, "APP_OAUTH_JWKS_REFRESH_SECONDS", defaults.jwks_refresh_seconds, minimum=1),
        jwks_min_refetch_seconds=_int(
            environ, "APP_OAUTH_JWKS_MIN_REFETCH_SECONDS", defaults.jwks_min_refetch_seconds, minimum=1
        ),
        jwks_timeout_seconds=_int(environ, "APP_OAUTH_JWKS_TIMEOUT_SECONDS", defaults.jwks_timeout_seconds, minimum=1, maximum=60),
        token_url=token_url,
    )


def _algorithms(environ: Mapping[str, str], name: str) -> frozenset[str]:
    raw = environ.get(name)
    if not raw:
        return frozenset(ASYMMETRIC_ALGORITHMS)
    names = {part.strip() for part in raw.split(",") if part.strip()}
    refused = sorted(names - set(ASYMMETRIC_ALGORITHMS))
    if refused or not names:
        raise ConfigurationError(
            f"{name} may name only asymmetric algorithms ({', '.join(ASYMMETRIC_ALGORITHMS)}), got {', '.join(refused) or raw!r}"
        )
    return frozenset(names)


def _public_key_pem(environ: Mapping[str, str]) -> str | None:
    inline, path = environ.get("APP_OAUTH_PUBLIC_KEY"), environ.get("APP_OAUTH_PUBLIC_KEY_FILE")
    if inline and path:
        raise ConfigurationError("set APP_OAUTH_PUBLIC_KEY or APP_OAUTH_PUBLIC_KEY_FILE, not both")
    if not path:
        return inline or None
    try:
        return Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigurationError(f"APP_OAUTH_PUBLIC_KEY_FILE cannot be read: {error}") from None


def cors_origins_from_env(environ: Mapping[str, str]) -> tuple[str, ...]:
    """Return the origins in APP_CORS_ORIGINS (comma-separated `scheme://host[:port]`, or `*` for any)."""
    origins = tuple(dict.fromkeys(part.strip() for part in environ.get("APP_CORS_ORIGINS", "").split(",") if part.strip()))
    for origin in origins:
        if origin == "*":
            continue
        parts = urlsplit(origin)
        # A browser sends the origin without path or trailing slash; one configured with either never matches.
        if parts.scheme not in ("http", "https") or not parts.netloc or origin != f"{parts.scheme}://{parts.netloc}":
            raise ConfigurationError(
                f"APP_CORS_ORIGINS must list origins like https://app.example.com (no path, no trailing slash), got {origin!r}"
            )
    return origins


def database_url_from_env(environ: Mapping[str, str]) -> str:
    """Return DATABASE_URL, else a PostgreSQL URL from the APP_DB_* variables, else the SQLite default."""
    if environ.get("DATABASE_URL"):
        return environ["DATABASE_URL"]
    host = environ.get("APP_DB_HOST")
    if not host:
        return Settings.database_url
    user = quote(environ.get("APP_DB_USER", "postgres"), safe="")
    password = environ.get("APP_DB_PASSWORD")
    credentials = f"{user}:{quote(password, safe='')}" if password else user
    port = _int(environ, "APP_DB_PORT", 5432, minimum=1)
    database = quote(environ.get("APP_DB_DATABASE", "rooms"), safe="")
    return f"postgresql+psycopg2://{credentials}@{host}:{port}/{database}"


def _optional_int(environ: Mapping[str, str], name: str, *, minimum: int) -> int | None:
    raw = environ.get(name)
    return None if raw is None or raw == "" else _int(environ, name, 0, minimum=minimum)


def _int(environ: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigurationError(f"{name} must be at most {maximum}, got {value}")
    return value


def _bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ConfigurationError(f"{name} must be true or false, got {raw!r}")


def _choice(environ: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() not in choices:
        raise ConfigurationError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw.lower()

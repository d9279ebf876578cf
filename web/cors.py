"""CORS for browser apps on other origins (APP_CORS_ORIGINS): Starlette's CORSMiddleware, configured from the spec.

It sits in front of Connexion's stack (app.middleware_stack), so a preflight is answered before routing and
security see it (Connexion would answer OPTIONS with 405, or 401), and every answer, a 401 or a 400 problem
too, carries the CORS headers: without them the browser hides the problem document from the page.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp

from rest.problems import PROBLEM_MEDIA_TYPE, problem_json

# What a client sends on writes and conditional or traced requests (Accept and Content-Type are CORS-safelisted
# names, but a JSON Content-Type is not a safelisted value, so it is listed too).
ALLOWED_HEADERS = ("Authorization", "X-API-Key", "Content-Type", "If-Match", "If-None-Match", "Idempotency-Key",
                   "X-Request-ID")
# What a page's script may read besides the CORS-safelisted response headers.
EXPOSED_HEADERS = ("ETag", "Location", "Link", "X-Request-ID", "Retry-After", "Avro-Schema-Fingerprint",
                   "Avro-Schema-Name", "Idempotent-Replayed", "WWW-Authenticate", "Allow")
MAX_AGE_SECONDS = 600
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def spec_methods(spec: dict) -> tuple[str, ...]:
    """Return every method the spec's paths use, with HEAD wherever GET is (as the service answers)."""
    methods = {method.upper() for item in spec.get("paths", {}).values() for method in item if method in _METHODS}
    if "GET" in methods:
        methods.add("HEAD")
    return tuple(sorted(methods))


class Cors(CORSMiddleware):
    """Starlette's CORSMiddleware; a preflight is answered 204 without a body, a refused one with a problem document
    (Starlette answers both as plain text)."""

    def __init__(self, app: ASGIApp, *, origins: Iterable[str], methods: Iterable[str]) -> None:
        super().__init__(app, allow_origins=tuple(origins), allow_methods=tuple(methods),
                         allow_headers=ALLOWED_HEADERS, expose_headers=EXPOSED_HEADERS, max_age=MAX_AGE_SECONDS)

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        headers = {name: value for name, value in response.headers.items() if name.lower().startswith(("access-control-", "vary"))}
        if response.status_code < 400:
            return Response(status_code=204, headers=headers)
        refused = bytes(response.body).decode()  # "Disallowed CORS origin, headers", Starlette's words
        # The allowed origins are not listed: a caller from elsewhere has no need to learn them.
        detail = f"{refused}. Allowed methods: {', '.join(self.allow_methods)}; allowed request headers: " \
                 f"{', '.join(ALLOWED_HEADERS)}."
        return Response(problem_json(response.status_code, "Bad Request", detail), status_code=response.status_code,
                        headers=headers, media_type=PROBLEM_MEDIA_TYPE)

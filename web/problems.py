"""Mapping of domain errors (and framework HTTP errors) to application/problem+json, done once."""

from __future__ import annotations

import logging
import re

from connexion.apps import AbstractApp
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from connexion.problem import problem

from contract.errors import DomainError

logger = logging.getLogger(__name__)


def domain_problem(_request: ConnexionRequest, error: DomainError) -> ConnexionResponse:
    """Answer a domain error with its status and RFC 7807 body."""
    logger.info("%s %s: %s", error.status, error.title, error.detail)
    return problem(status=error.status, title=error.title, detail=error.detail, ext=error.extensions() or None)


def register_problem_handlers(app: AbstractApp, spec: dict, base_path: str) -> None:
    """Install the problem mappings on the Connexion app."""
    app.add_error_handler(DomainError, domain_problem)
    app.add_error_handler(405, method_not_allowed_handler(AllowedMethods(spec, base_path)))


HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


class AllowedMethods:
    """Which methods the spec allows on each path, for the Allow header of a 405."""

    def __init__(self, spec: dict, base_path: str) -> None:
        self._routes: list[tuple[re.Pattern[str], str]] = []
        for template, item in spec.get("paths", {}).items():
            methods = {m.upper() for m in item if m in HTTP_METHODS}
            if "GET" in methods:
                methods.add("HEAD")
            pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(base_path + template))
            self._routes.append((re.compile(f"^{pattern}/?$"), ", ".join(sorted(methods))))

    def for_path(self, path: str) -> str | None:
        """Return the Allow header value for this request path, or None for an unknown path."""
        for pattern, allowed in self._routes:
            if pattern.match(path):
                return allowed
        return None


def method_not_allowed_handler(allowed: AllowedMethods):
    """Return a 405 handler whose Allow header lists every method the spec defines on the path."""

    def method_not_allowed(request: ConnexionRequest, _error: Exception) -> ConnexionResponse:
        allow = allowed.for_path(request.url.path)
        headers = {"Allow": allow} if allow else None
        return problem(
            status=405,
            title="Method Not Allowed",
            detail=f"{request.method} is not allowed on {request.url.path}" + (f"; use {allow}." if allow else "."),
            headers=headers,
        )

    return method_not_allowed

"""Handlers of the liveness and readiness checks."""

from __future__ import annotations

from injector import Inject

from observability.readiness import Readiness
from rest.representation import HandlerResult, json_result


def check_health() -> HandlerResult:
    """Answer that the process serves requests (no database round trip)."""
    return json_result({"status": "ok"})


def check_readiness(readiness: Inject[Readiness]) -> HandlerResult:
    """Answer whether this process can serve: the database answers and its migrations are at head (else 503)."""
    readiness.check()
    return json_result({"status": "ready"})

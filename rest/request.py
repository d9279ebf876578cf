"""The request being answered, as HTTP semantics need to know it: the port that web/ implements for Flask."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable


@runtime_checkable  # injector checks an instance bound to a Protocol key
class RequestFacts(Protocol):
    """What conditional requests, negotiation, links and idempotency need to know about the current request."""

    def header(self, name: str) -> str | None:
        """Return a header field, its lines joined by commas (as the spec's validation saw it), or None."""

    def path(self) -> str:
        """Return the request's path as the client sent it (with any prefix a proxy mounted the service under)."""

    def query(self) -> Mapping[str, str]:
        """Return the query parameters, the first value of each."""

    def media_type(self) -> str:
        """Return the body's media type without parameters ('' when there is none)."""

    def principal(self) -> str:
        """Return who the request acts as (an API key's digest), '' when it is not authenticated."""

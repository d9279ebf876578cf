"""Conditional requests (RFC 9110 section 13): entity tags, If-Match and If-None-Match."""

from __future__ import annotations

import re

from contract.errors import PreconditionFailed


def entity_tag(version: int) -> str:
    """Return the strong ETag of a resource version."""
    return f'"{version}"'


def require_match(if_match: str | None, version: int) -> None:
    """Enforce an If-Match header (strong comparison) against the current version; absent means go ahead."""
    if if_match is None:
        return
    current = entity_tag(version)
    tags = [tag.strip() for tag in if_match.split(",")]
    if "*" in tags or current in tags:
        return
    raise PreconditionFailed(f"The resource has changed: its ETag is now {current}.")


# One entity tag of an If-None-Match list, weak or strong; the group is the quoted opaque tag.
_LISTED_TAG = re.compile(r'(?:W/)?("[^"]*")')


def none_match(if_none_match: str | None, etag: str) -> bool:
    """Return True when an If-None-Match header names `etag` by weak comparison (RFC 9110 13.1.2) or is `*`."""
    if if_none_match is None:
        return False
    if if_none_match.strip() == "*":
        return True
    current = etag.removeprefix("W/")
    return any(tag == current for tag in _LISTED_TAG.findall(if_none_match))

"""Problem documents (RFC 9457, formerly 7807) for answers made outside Connexion's error handling."""

from __future__ import annotations

from typing import Any

import orjson

PROBLEM_MEDIA_TYPE = "application/problem+json"


def problem_json(status: int, title: str, detail: str, **members: Any) -> bytes:
    """Return the JSON of a problem document, with members in the order Connexion writes its own."""
    return orjson.dumps({"type": "about:blank", "title": title, "detail": detail, "status": status, **members})

"""Handler of the liveness check."""

from __future__ import annotations

from web.http import json_response


def check_health():
    """Answer that the process serves requests (no database round trip)."""
    return json_response({"status": "ok"})

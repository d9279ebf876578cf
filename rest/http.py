"""Small HTTP helpers the handlers share: entity tags, preconditions, merge patches, links."""

from __future__ import annotations

import copy
import re
from typing import Any
from urllib.parse import urlencode

import flask
from connexion import request
from connexion.lifecycle import ConnexionResponse

from contract.errors import PreconditionFailed


def entity_tag(version: int) -> str:
    """Return the strong ETag of a resource version."""
    return f'"{version}"'


def if_match() -> str | None:
    """Return the request's If-Match, its field lines joined by commas as the handler's WSGI environ holds them.

    The same value the spec's validation checked (web.validation joins repeated lines the same way).
    """
    return flask.request.environ.get("HTTP_IF_MATCH")


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


def not_modified(etag: str, vary: str | None = None) -> ConnexionResponse | None:
    """Return a 304 answer (no body) when the request's If-None-Match matches `etag`, else None."""
    # Read from the WSGI environ (PEP 3333 names the key): a GET without the header pays one dict look-up.
    if not none_match(flask.request.environ.get("HTTP_IF_NONE_MATCH"), etag):
        return None
    # RFC 9110 15.4.5: a 304 carries the ETag and Vary a 200 would have carried.
    headers = {"ETag": etag} | ({"Vary": vary} if vary else {})
    return ConnexionResponse(status_code=304, headers=headers)


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7396 JSON merge patch to `target` and return the result (inputs are not modified)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def next_page_link(path: str, query: dict[str, Any], cursor: str) -> str:
    """Return an RFC 8288 `rel="next"` link to the same search with `cursor` set."""
    params = {k: v for k, v in query.items() if k != "cursor"} | {"cursor": cursor}
    return f'<{path}?{urlencode(params)}>; rel="next"'


def page_links(next_cursor: str | None) -> dict[str, str]:
    """Return the Link header of the current request's next page, or nothing on the last page."""
    if not next_cursor:
        return {}
    return {"Link": next_page_link(request.url.path, dict(request.query_params), next_cursor)}


JSON = "application/json"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> tuple[Any, int, dict[str, str]]:
    """Return a handler result that Connexion serialises as application/json."""
    return body, status, {"Content-Type": JSON, **(headers or {})}

"""The current request as rest/ needs to know it, read from the Flask request the handler runs in."""

from __future__ import annotations

import functools
from collections.abc import Mapping

import flask
from connexion.context import context


@functools.lru_cache(maxsize=64)
def _environ_key(name: str) -> str:
    return "HTTP_" + name.upper().replace("-", "_")


class FlaskRequestFacts:
    """rest.request.RequestFacts for the Flask request being handled (one instance serves every request).

    Headers are read from the WSGI environ, where a field sent on several lines is one value joined by
    commas: what web/validation.py validated, and cheaper than Werkzeug's header mapping. The principal
    is what Connexion's security recorded for the request (`context["user"]`).
    """

    def header(self, name: str) -> str | None:
        """Return a header field as the handler's environ holds it, or None."""
        return flask.request.environ.get(_environ_key(name))

    def path(self) -> str:
        """Return the request's path, with the prefix a proxy mounted the service under (ASGI root_path)."""
        request = flask.request
        return request.script_root + request.path

    def query(self) -> Mapping[str, str]:
        """Return the query parameters, the first value of each."""
        return flask.request.args.to_dict()

    def media_type(self) -> str:
        """Return the body's media type without parameters."""
        return flask.request.mimetype

    def principal(self) -> str:
        """Return the authenticated principal Connexion's security recorded, or ''."""
        return context.get("user") or ""

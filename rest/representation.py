"""Content negotiation for entity responses: JSON by default, Avro container files on request."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from connexion import request
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from contract.avro import AVRO_MEDIA_TYPE, AvroSchemas
from contract.errors import DomainError
from rest.http import JSON, not_modified

# Offered in this order, so JSON wins a tie (also for */* and a missing Accept).
OFFERED = (JSON, AVRO_MEDIA_TYPE)
FINGERPRINT_HEADER = "Avro-Schema-Fingerprint"
SCHEMA_NAME_HEADER = "Avro-Schema-Name"


class NotAcceptable(DomainError):
    """The client accepts none of the representations this operation offers."""

    status = 406
    title = "Not Acceptable"


class Representer:
    """Renders entities in the representation the client asked for."""

    def __init__(self, schemas: AvroSchemas) -> None:
        self._schemas = schemas

    def one(self, schema: str, entity: Mapping[str, Any], status: int = 200, headers: dict[str, str] | None = None):
        """Return a handler result for one entity: a JSON object, or a container file with one record."""
        return self.render(schema, entity, [entity], status, headers)

    def read(self, schema: str, entity: Mapping[str, Any], etag: str):
        """Return one entity for a GET with its ETag, or 304 Not Modified when If-None-Match matches it."""
        unchanged = not_modified(etag, vary="Accept")
        if unchanged is None:
            return self.one(schema, entity, 200, {"ETag": etag})
        negotiate()  # RFC 9110 13.2.1: what would not be a 2xx (a 406 here) ignores the precondition
        return unchanged

    def many(self, schema: str, entities: Sequence[Mapping[str, Any]], next_cursor: str | None,
             headers: dict[str, str] | None = None):
        """Return a handler result for a page: `{"data", "next_cursor"}` JSON, or one record per entity."""
        return self.render(schema, {"data": entities, "next_cursor": next_cursor}, entities, 200, headers)

    def render(self, schema: str, json_body: Any, records: Sequence[Mapping[str, Any]], status: int = 200,
               headers: dict[str, str] | None = None):
        """Return `json_body` as JSON, or `records` as a container file of `schema`, as negotiated."""
        media_type = negotiate()
        headers = {"Vary": "Accept", **(headers or {})}
        if media_type == JSON:
            return json_body, status, {"Content-Type": JSON, **headers}
        avro = self._schemas.get(schema)
        body = self._schemas.encode_container(avro.name, records)
        return body, status, {
            "Content-Type": AVRO_MEDIA_TYPE,
            FINGERPRINT_HEADER: avro.fingerprint,
            SCHEMA_NAME_HEADER: avro.name,
            **headers,
        }


def negotiate() -> str:
    """Pick the representation from the request's Accept header (q-values honoured), or raise NotAcceptable."""
    best = _best_offer(request.headers.get("accept"))
    if best is None:
        raise NotAcceptable(f"This resource is available as {' or '.join(OFFERED)}; Accept allows neither.")
    return best


@functools.lru_cache(maxsize=256)
def _best_offer(accept_header: str | None) -> str | None:
    # Clients send the same few Accept headers over and over; parsing one costs more than encoding a room.
    # The cache is bounded, so varied headers cost a parse each, never memory.
    accept = parse_accept_header(accept_header, MIMEAccept)
    if not accept:
        return JSON
    return accept.best_match(OFFERED)

"""Representations: entities as JSON or Avro container files (negotiated), conditional reads, created resources, pages."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from contract.avro import AVRO_MEDIA_TYPE, AvroSchemas
from contract.errors import DomainError
from rest.conditional import none_match
from rest.request import RequestFacts

JSON = "application/json"
# Offered in this order, so JSON wins a tie (also for */* and a missing Accept).
OFFERED = (JSON, AVRO_MEDIA_TYPE)
FINGERPRINT_HEADER = "Avro-Schema-Fingerprint"
SCHEMA_NAME_HEADER = "Avro-Schema-Name"

HandlerResult = tuple[Any, int, dict[str, str]]
"""What a handler returns: body, status and headers; Connexion serialises a body that is not bytes as JSON."""


@dataclass(frozen=True, slots=True)
class Rendered:
    """An answer already rendered to bytes, to be sent exactly as it is (web/ hands it to Connexion so)."""

    body: bytes
    status: int
    headers: Mapping[str, str]


Answer = HandlerResult | Rendered
"""Any handler's result: one Connexion serialises, or one already rendered."""


class NotAcceptable(DomainError):
    """The client accepts none of the representations this operation offers."""

    status = 406
    title = "Not Acceptable"


def json_result(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> HandlerResult:
    """Return a handler result that Connexion serialises as application/json."""
    return body, status, {"Content-Type": JSON, **(headers or {})}


def negotiate(accept: str | None) -> str:
    """Pick the representation for an Accept header (q-values honoured), or raise NotAcceptable."""
    best = _best_offer(accept)
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


def next_page_link(path: str, query: Mapping[str, str], cursor: str) -> str:
    """Return an RFC 8288 `rel="next"` link to the same search with `cursor` set."""
    params = {k: v for k, v in query.items() if k != "cursor"} | {"cursor": cursor}
    return f'<{path}?{urlencode(params)}>; rel="next"'


class Representer:
    """Renders entities in the representation the current request asked for."""

    def __init__(self, schemas: AvroSchemas, request: RequestFacts) -> None:
        self._schemas = schemas
        self._request = request

    def one(self, schema: str, entity: Mapping[str, Any], status: int = 200,
            headers: Mapping[str, str] | None = None) -> HandlerResult:
        """Return one entity: a JSON object, or a container file with one record."""
        return self.render(schema, entity, [entity], status, headers)

    def created(self, schema: str, entity: Mapping[str, Any], key: Any, etag: str | None = None) -> HandlerResult:
        """Return a new entity as 201, with its `Location` (the collection's path and `key`) and ETag."""
        headers = {"Location": f"{self._request.path().rstrip('/')}/{key}"} | ({"ETag": etag} if etag else {})
        return self.one(schema, entity, 201, headers)

    def read(self, schema: str, entity: Mapping[str, Any], etag: str) -> HandlerResult:
        """Return one entity for a GET with its ETag, or 304 Not Modified when If-None-Match names it."""
        if not none_match(self._request.header("If-None-Match"), etag):
            return self.one(schema, entity, 200, {"ETag": etag})
        # RFC 9110 13.2.1: what would not be a 2xx (a 406 here) ignores the precondition.
        media_type = negotiate(self._request.header("Accept"))
        return not_modified(etag, media_type, vary="Accept")

    def document(self, document: Any, etag: str) -> HandlerResult:
        """Return a JSON document with its ETag, or 304 Not Modified when If-None-Match names it."""
        if none_match(self._request.header("If-None-Match"), etag):
            return not_modified(etag, JSON)
        return json_result(document, 200, {"ETag": etag})

    def many(self, schema: str, entities: Sequence[Mapping[str, Any]], next_cursor: str | None) -> HandlerResult:
        """Return a page: `{"data", "next_cursor"}` JSON, or one record per entity; a `Link` to the next page."""
        headers = {}
        if next_cursor:
            headers["Link"] = next_page_link(self._request.path(), self._request.query(), next_cursor)
        return self.render(schema, {"data": entities, "next_cursor": next_cursor}, entities, 200, headers)

    def render(self, schema: str, json_body: Any, records: Sequence[Mapping[str, Any]], status: int = 200,
               headers: Mapping[str, str] | None = None) -> HandlerResult:
        """Return `json_body` as JSON, or `records` as a container file of `schema`, as negotiated."""
        media_type = negotiate(self._request.header("Accept"))
        all_headers = {"Vary": "Accept", **(headers or {})}
        if media_type == JSON:
            return json_body, status, {"Content-Type": JSON, **all_headers}
        avro = self._schemas.get(schema)
        body = self._schemas.encode_container(avro.name, records)
        return body, status, {
            "Content-Type": AVRO_MEDIA_TYPE,
            FINGERPRINT_HEADER: avro.fingerprint,
            SCHEMA_NAME_HEADER: avro.name,
            **all_headers,
        }


def not_modified(etag: str, media_type: str, vary: str | None = None) -> HandlerResult:
    """Return 304 Not Modified with the ETag (and Vary) a 200 would have carried (RFC 9110 15.4.5), no body.

    The Content-Type names the representation the 304 stands for, which Connexion asks of an operation
    with several; Werkzeug drops it from the answer, as RFC 9110 wants of a 304.
    """
    return None, 304, {"ETag": etag, "Content-Type": media_type} | ({"Vary": vary} if vary else {})

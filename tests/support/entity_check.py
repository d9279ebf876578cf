"""Checks that every entity a response carries, as JSON or Avro, is a valid record of its Avro schema."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import fastavro
import fastavro.validation
from starlette.testclient import TestClient

from app import create_app, dispose_app
from contract.avro import AvroSchemas, crc64_fingerprint, to_datum
from settings import Settings

SCHEMAS = AvroSchemas()
ENTITY_ROUTES = [
    (re.compile(r"^/v1/rooms(/[^/]+)?/?$"), "roomservice.Room"),
    (re.compile(r"^/v1/items(/[^/]+)?/?$"), "roomservice.Item"),
    (re.compile(r"^/v1/questions(/[^/]+)?/?$"), "roomservice.Question"),
]


def schema_for(path: str) -> str | None:
    """Return the Avro schema of the entities an API path returns, if it returns entities."""
    for pattern, name in ENTITY_ROUTES:
        if pattern.match(path):
            return name
    return None


def _with_native_logical_values(schema: dict[str, Any], entity: dict[str, Any]) -> dict[str, Any]:
    # fastavro's validator takes any string for a uuid and no string for a timestamp: parse both strictly.
    converted = dict(entity)
    for field in schema["fields"]:
        logical = field["type"].get("logicalType") if isinstance(field["type"], dict) else None
        value = converted.get(field["name"])
        if logical == "timestamp-micros" and isinstance(value, str):
            converted[field["name"]] = datetime.fromisoformat(value)
        elif logical == "uuid" and isinstance(value, str):
            converted[field["name"]] = uuid.UUID(value)
    return converted


def check_json_entities(schema_name: str, body: Any) -> int:
    """Validate each entity of a JSON body (one object, or a page's `data`); return how many were checked."""
    schema = SCHEMAS.get(schema_name)
    entities = body["data"] if isinstance(body, dict) and "data" in body and "next_cursor" in body else [body]
    for entity in entities:
        datum = to_datum(schema.document, _with_native_logical_values(schema.document, entity))
        fastavro.validation.validate(datum, schema.parsed, raise_errors=True)
    return len(entities)


def check_avro_entities(schema_name: str, content: bytes, fingerprint_header: str | None) -> int:
    """Read an Avro response: its writer schema must be ours (and named by the header); return the record count."""
    schema = SCHEMAS.get(schema_name)
    reader = fastavro.reader(io.BytesIO(content))
    writer = reader.writer_schema
    assert crc64_fingerprint(writer) == schema.fingerprint == fingerprint_header
    records = list(reader)
    for record in records:
        fastavro.validation.validate(record, schema.parsed, raise_errors=True)
    return len(records)


class EntityCheckingClient(TestClient):
    """Starlette's TestClient that checks every successful entity response against the Avro contract."""

    checked = 0

    def request(self, method, url, *args, **kwargs):
        response = super().request(method, url, *args, **kwargs)
        schema_name = schema_for(response.request.url.path)
        if schema_name and 200 <= response.status_code < 300 and response.content:
            content_type = response.headers.get("content-type", "")
            if content_type.startswith("application/json"):
                EntityCheckingClient.checked += check_json_entities(schema_name, response.json())
            elif content_type.startswith("application/avro"):
                EntityCheckingClient.checked += check_avro_entities(
                    schema_name, response.content, response.headers.get("Avro-Schema-Fingerprint")
                )
            else:
                raise AssertionError(f"unexpected content type {content_type} for {response.request.url}")
        return response


@contextlib.contextmanager
def client_with(settings: Settings, **changes: Any) -> Iterator[EntityCheckingClient]:
    """A checking client of the app built with `settings` (and `changes` to them), disposed of afterwards."""
    app = create_app(dataclasses.replace(settings, **changes))
    try:
        yield EntityCheckingClient(app)
    finally:
        dispose_app(app)

"""Handlers of the /schemas operations: the Avro entity contract, published."""

from __future__ import annotations

from injector import Inject

from contract.avro import AvroSchemas
from contract.errors import NotFound
from rest.http import json_response, not_modified


def list_schemas(schemas: Inject[AvroSchemas]):
    """List every schema with its version and fingerprint."""
    data = [{"name": s.name, "version": s.version, "fingerprint": s.fingerprint} for s in schemas]
    return json_response({"data": data})


def get_schema(name: str, schemas: Inject[AvroSchemas]):
    """Return one schema document with its fingerprint as ETag, or 304 when If-None-Match names it."""
    if name not in schemas:
        raise NotFound(f"There is no schema named {name}; GET /v1/schemas lists them.")
    schema = schemas.get(name)
    etag = f'"{schema.fingerprint}"'
    unchanged = not_modified(etag)
    return unchanged if unchanged is not None else json_response(schema.document, 200, {"ETag": etag})

"""Handlers of the /schemas operations: the Avro entity contract, published."""

from __future__ import annotations

from injector import Inject

from contract.avro import AvroSchemas
from providers.errors import NotFound
from web.http import json_response


def list_schemas(schemas: Inject[AvroSchemas]):
    """List every schema with its version and fingerprint."""
    data = [{"name": s.name, "version": s.version, "fingerprint": s.fingerprint} for s in schemas]
    return json_response({"data": data})


def get_schema(name: str, schemas: Inject[AvroSchemas]):
    """Return one schema document, with its fingerprint as ETag."""
    if name not in schemas:
        raise NotFound(f"There is no schema named {name}; GET /v1/schemas lists them.")
    schema = schemas.get(name)
    return json_response(schema.document, 200, {"ETag": f'"{schema.fingerprint}"'})

"""Handlers of the /schemas operations: the Avro entity contract, published."""

from __future__ import annotations

from injector import Inject

from contract.avro import AvroSchemas
from contract.errors import NotFound
from rest.representation import HandlerResult, Representer, json_result


def list_schemas(schemas: Inject[AvroSchemas]) -> HandlerResult:
    """List every schema with its version and fingerprint."""
    data = [{"name": s.name, "version": s.version, "fingerprint": s.fingerprint} for s in schemas]
    return json_result({"data": data})


def get_schema(name: str, schemas: Inject[AvroSchemas], represent: Inject[Representer]) -> HandlerResult:
    """Return one schema document with its fingerprint as ETag, or 304 when If-None-Match names it."""
    if name not in schemas:
        raise NotFound(f"There is no schema named {name}; GET /v1/schemas lists them.")
    schema = schemas.get(name)
    return represent.document(schema.document, f'"{schema.fingerprint}"')

"""One contract, not two: every Avro record matches its OpenAPI component field by field."""

from __future__ import annotations

import copy

import pytest
from connexion.json_schema import resolve_refs

from contract.avro import AvroSchemas
from contract.spec import load_spec

SCHEMAS = AvroSchemas()
COMPONENTS = resolve_refs(load_spec())["components"]["schemas"]


PRIMITIVES = {"null", "string", "long", "int", "double", "float", "boolean", "bytes"}


def named_types(avro_type, found: dict | None = None) -> dict:
    """Collect every named type defined anywhere in a schema, by full name."""
    found = {} if found is None else found
    if isinstance(avro_type, list):
        for branch in avro_type:
            named_types(branch, found)
    elif isinstance(avro_type, dict):
        if avro_type.get("type") in ("record", "enum", "fixed"):
            found[avro_type["name"]] = avro_type
        for field in avro_type.get("fields", []):
            named_types(field["type"], found)
        if avro_type.get("type") == "array":
            named_types(avro_type["items"], found)
    return found


NAMED = {name: t for schema in SCHEMAS for name, t in named_types(schema.document).items()}


def _resolve(avro_type):
    return NAMED[avro_type] if isinstance(avro_type, str) and avro_type not in PRIMITIVES else avro_type


def _non_null(avro_type):
    if isinstance(avro_type, list):
        branches = [b for b in avro_type if b != "null"]
        return (branches[0] if len(branches) == 1 else branches), "null" in avro_type
    return avro_type, False


def _openapi_type(avro_type) -> dict:
    """The OpenAPI type/format an Avro type corresponds to."""
    if isinstance(avro_type, str):
        return {
            "string": {"type": "string"},
            "long": {"type": "integer", "format": "int64"},
            "int": {"type": "integer", "format": "int32"},
            "double": {"type": "number", "format": "double"},
            "float": {"type": "number", "format": "float"},
            "boolean": {"type": "boolean"},
        }[avro_type]
    logical = avro_type.get("logicalType")
    if logical == "uuid":
        return {"type": "string", "format": "uuid"}
    if logical == "timestamp-micros":
        return {"type": "string", "format": "date-time"}
    return {"type": {"record": "object", "enum": "string", "array": "array"}.get(avro_type["type"], avro_type["type"])}


def differences(avro_schema: dict, openapi: dict, path: str = "$") -> list[str]:
    """Return every disagreement between an Avro type and an OpenAPI schema, each naming its field."""
    avro_type, _ = _non_null(avro_schema)
    avro_type = _resolve(avro_type)
    expected = _openapi_type(avro_type)
    found = {key: openapi.get(key) for key in expected}
    if found != expected:
        return [f"{path}: Avro {avro_type if isinstance(avro_type, str) else avro_type.get('logicalType') or avro_type['type']} "
                f"expects OpenAPI {expected}, found {found}"]
    if isinstance(avro_type, dict) and avro_type["type"] == "enum":
        if list(openapi.get("enum", [])) != list(avro_type["symbols"]):
            return [f"{path}: enum symbols {avro_type['symbols']} vs {openapi.get('enum')}"]
        return []
    if isinstance(avro_type, dict) and avro_type["type"] == "array":
        return differences(avro_type["items"], openapi["items"], f"{path}[]")
    if isinstance(avro_type, dict) and avro_type["type"] == "record":
        return _record_differences(avro_type, openapi, path)
    return []


# Fields whose Avro value is another entity in single-object encoding (bytes); the JSON representation
# carries that entity decoded, as a JSON object (or null).
EMBEDDED_ENTITIES = {("roomservice.Event", "entity")}


def _record_differences(record: dict, openapi: dict, path: str) -> list[str]:
    problems = []
    properties = openapi.get("properties", {})
    required = set(openapi.get("required", []))
    avro_fields = {field["name"]: field for field in record["fields"]}
    for name in sorted(set(properties) - set(avro_fields)):
        problems.append(f"{path}.{name}: in OpenAPI but not in Avro {record['name']}")
    for name, field in avro_fields.items():
        field_path = f"{path}.{name}"
        if name not in properties:
            problems.append(f"{field_path}: in Avro {record['name']} but not in OpenAPI")
            continue
        _, nullable = _non_null(field["type"])
        avro_required = not nullable and "default" not in field
        if avro_required != (name in required):
            problems.append(
                f"{field_path}: Avro says {'required' if avro_required else 'optional'}, "
                f"OpenAPI says {'required' if name in required else 'optional'}"
            )
        if "default" in field and field["default"] is not None and properties[name].get("default", field["default"]) != field["default"]:
            problems.append(f"{field_path}: default {field['default']!r} vs {properties[name].get('default')!r}")
        if (record["name"], name) in EMBEDDED_ENTITIES:
            if _non_null(field["type"])[0] != "bytes" or properties[name].get("type") != "object":
                problems.append(f"{field_path}: an embedded entity is Avro bytes and an OpenAPI object")
            continue
        problems += differences(field["type"], properties[name], field_path)
    return problems


@pytest.mark.parametrize("schema", list(SCHEMAS), ids=lambda s: s.name)
def test_every_avro_schema_matches_its_openapi_component(schema):
    assert schema.short_name in COMPONENTS, f"OpenAPI has no component {schema.short_name}"
    assert differences(schema.document, COMPONENTS[schema.short_name]) == []


def test_every_entity_component_has_an_avro_schema():
    entities = {"NewRoom", "Room", "Coordinates", "Area", "Image", "NewItem", "Item", "NewQuestion", "Question",
                "Recurrency", "Event"}
    assert entities <= {s.short_name for s in SCHEMAS}


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda c: c["Room"]["properties"]["price"].update(format="int32"), "$.price"),
        (lambda c: c["Room"]["properties"]["id"].pop("format"), "$.id"),
        (lambda c: c["Room"]["properties"]["created_at"].pop("format"), "$.created_at"),
        (lambda c: c["Room"]["properties"]["recurrency"].update(enum=["daily", "monthly"]), "$.recurrency"),
        (lambda c: c["Room"]["required"].remove("name"), "$.name"),
        (lambda c: c["Room"]["properties"]["coordinates"]["properties"].pop("lon"), "$.coordinates.lon"),
        (lambda c: c["Room"]["properties"]["images"]["items"]["properties"]["url"].update(type="integer"), "$.images[].url"),
        (lambda c: c["Room"]["properties"].update(extra={"type": "string"}), "$.extra"),
        (lambda c: c["Room"]["properties"]["coordinates"]["properties"]["lat"].update(format="float"), "$.coordinates.lat"),
    ],
)
def test_the_comparison_fails_naming_the_field_that_disagrees(mutate, field):
    components = copy.deepcopy(COMPONENTS)
    mutate(components)
    problems = differences(SCHEMAS.get("Room").document, components["Room"])
    assert problems and any(p.startswith(field) for p in problems), problems

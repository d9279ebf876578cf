"""The OpenAPI document is complete enough to generate clients from, and every operation resolves."""

from __future__ import annotations

import importlib
import re

import pytest

from contract.spec import load_spec

SPEC = load_spec()
METHODS = ("get", "put", "post", "patch", "delete")
OPERATIONS = [
    (path, method, operation)
    for path, item in SPEC["paths"].items()
    for method, operation in item.items()
    if method in METHODS
]
IDS = [f"{method.upper()} {path}" for path, method, _ in OPERATIONS]


def resolve(ref: str) -> dict:
    node = SPEC
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_the_spec_is_openapi_3_0_served_under_v1():
    assert SPEC["openapi"].startswith("3.0.") and SPEC["servers"] == [{"url": "/v1"}]


def test_operation_ids_are_unique():
    ids = [operation["operationId"] for _, _, operation in OPERATIONS]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("path, method, operation", OPERATIONS, ids=IDS)
def test_every_operation_is_documented_and_resolves_to_a_handler(path, method, operation):
    assert re.fullmatch(r"[a-z]+_[a-z_]+", operation["operationId"])
    assert operation.get("tags") and operation.get("summary")
    module = importlib.import_module(operation["x-openapi-router-controller"])
    handler = getattr(module, operation["operationId"])
    assert handler.__doc__, f"{operation['operationId']} needs a docstring"


@pytest.mark.parametrize("path, method, operation", OPERATIONS, ids=IDS)
def test_every_error_response_is_a_problem_and_the_expected_ones_are_listed(path, method, operation):
    responses = operation["responses"]
    statuses = set(responses)
    for status, response in responses.items():
        if "$ref" in response:
            response = resolve(response["$ref"])
        if status.startswith(("4", "5")):
            assert list(response["content"]) == ["application/problem+json"], status
            assert response["content"]["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
    if operation.get("security"):
        assert {"401", "403"} <= statuses
    if "requestBody" in operation:
        assert {"400", "413", "415"} <= statuses
        for media_type, media in operation["requestBody"]["content"].items():
            if "json" in media_type:
                assert "example" in media or "examples" in media
    if "{" in path:
        assert {"400", "404"} <= statuses


WRITE_SCOPES = {"api.rooms": "rooms:write", "api.items": "items:write", "api.questions": "questions:write"}


@pytest.mark.parametrize("path, method, operation", OPERATIONS, ids=IDS)
def test_writes_need_an_api_key_or_a_token_with_the_resources_write_scope_and_reads_are_public(path, method, operation):
    if method == "get":
        assert not operation.get("security", SPEC.get("security"))
    else:
        # Two alternatives (either one will do), not one requirement naming both (which would need both).
        scope = WRITE_SCOPES[operation["x-openapi-router-controller"]]
        assert operation["security"] == [{"ApiKeyAuth": []}, {"OAuth2": [scope]}]


def test_every_write_scope_is_declared_by_the_oauth2_scheme_and_used():
    flows = SPEC["components"]["securitySchemes"]["OAuth2"]["flows"]
    assert list(flows) == ["clientCredentials"]
    assert set(flows["clientCredentials"]["scopes"]) == set(WRITE_SCOPES.values())


def test_401_and_403_document_their_www_authenticate_challenge():
    for name in ("Unauthorized", "Forbidden"):
        header = SPEC["components"]["responses"][name]["headers"]["WWW-Authenticate"]
        assert header["required"] is True and header["schema"] == {"type": "string"}


# Problem documents may carry extension members; NewQuestion keeps the original service's
# contract of accepting (and ignoring) members it does not name; an Avro schema document may
# carry any attribute the Avro specification allows.
OPEN_OBJECTS = {"Problem", "NewQuestion", "AvroSchemaDocument"}


def test_every_component_schema_has_a_type_and_objects_close_their_properties():
    for name, schema in SPEC["components"]["schemas"].items():
        assert "type" in schema, name
        if schema["type"] == "object":
            assert (schema.get("additionalProperties") is False) != (name in OPEN_OBJECTS), name


# Operations that never touch the database: liveness and the published Avro schemas.
DATABASE_FREE = {"check_health", "list_schemas", "get_schema"}


@pytest.mark.parametrize("path, method, operation", OPERATIONS, ids=IDS)
def test_every_operation_that_needs_the_database_documents_its_503_with_retry_after(path, method, operation):
    documented = operation["responses"].get("503")
    if operation["operationId"] in DATABASE_FREE:
        assert documented is None
        return
    assert documented == {"$ref": "#/components/responses/ServiceUnavailable"}
    headers = resolve(documented["$ref"])["headers"]
    assert resolve(headers["Retry-After"]["$ref"])["required"] is True

"""CORS (APP_CORS_ORIGINS) through the real app: preflights for every operation, headers on every answer, errors too.

What a browser does with these headers is proven in tests/e2e/test_cors_browser.py; here the headers themselves.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import yaml

from app import create_app, dispose_app
from contract.spec import SPEC_PATH
from settings import Settings
from tests.conftest import API_KEY
from tests.integration.test_rooms_api import assert_problem
from tests.integration.test_transactions_and_faults import _module
from tests.support.entity_check import EntityCheckingClient
from tests.support.factories import new_room
from web.cors import ALLOWED_HEADERS, EXPOSED_HEADERS

# CORS sits in front of the stack and touches no database: one backend is enough.
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

APP_ORIGIN = "http://127.0.0.1:5173"
OTHER_ORIGIN = "https://evil.example"
METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture(scope="module")
def cors_client(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory):
    """One app for the module (these tests look at headers, not at what is stored), allowing two origins."""
    database = tmp_path_factory.mktemp("cors") / "rooms.sqlite3"
    shutil.copy(sqlite_template, database)
    application = create_app(Settings(database_url=f"sqlite:///{database}", api_keys=frozenset({API_KEY}),
                                      validate_responses=True, cors_origins=(APP_ORIGIN, "https://app.example.com")))
    yield EntityCheckingClient(application)
    dispose_app(application)


@pytest.fixture
def auth() -> dict[str, str]:
    return {"X-API-Key": API_KEY}


def operations() -> list[tuple[str, str]]:
    spec = yaml.safe_load(SPEC_PATH.read_text())
    return [(method.upper(), "/v1" + path.replace("{room_id}", "3fa85f64-5717-4562-b3fc-2c963f66afa6")
             .replace("{item_id}", "1").replace("{question_code}", "1001").replace("{name}", "roomservice.Room"))
            for path, item in spec["paths"].items() for method in item if method in METHODS]


def preflight(client, path: str, method: str, origin: str = APP_ORIGIN, headers: str = "content-type, x-api-key"):
    return client.options(path, headers={"Origin": origin, "Access-Control-Request-Method": method,
                                         "Access-Control-Request-Headers": headers})


def listed(value: str) -> set[str]:
    return {part.strip().lower() for part in value.split(",")}


@SQLITE
def test_without_origins_configured_there_are_no_cors_headers_and_options_stays_405(client):
    response = client.get("/v1/rooms", headers={"Origin": APP_ORIGIN})
    assert response.status_code == 200
    assert not [name for name in response.headers if name.lower().startswith("access-control-")]
    assert_problem(preflight(client, "/v1/rooms", "POST"), 405)


@pytest.mark.parametrize("method, path", operations())
def test_every_operation_answers_its_preflight_with_the_write_headers_allowed(cors_client, method, path):
    every_header = ", ".join(h.lower() for h in ALLOWED_HEADERS)
    response = preflight(cors_client, path, method, headers=every_header)
    assert response.status_code == 204 and response.content == b"", response.text
    assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert method in {m.strip() for m in response.headers["Access-Control-Allow-Methods"].split(",")}
    assert {h.lower() for h in ALLOWED_HEADERS} <= listed(response.headers["Access-Control-Allow-Headers"])
    assert int(response.headers["Access-Control-Max-Age"]) > 0
    assert "origin" in listed(response.headers["Vary"])
    assert "X-Request-ID" in response.headers  # answered inside the telemetry, like any request


def test_the_allowed_methods_are_the_specs(cors_client):
    allowed = {m.strip() for m in preflight(cors_client, "/v1/rooms", "POST").headers["Access-Control-Allow-Methods"].split(",")}
    assert allowed == {"DELETE", "GET", "HEAD", "PATCH", "POST", "PUT"}


@pytest.mark.parametrize("origin, method, headers, refused", [
    (OTHER_ORIGIN, "POST", "content-type", "origin"),
    (APP_ORIGIN, "POST", "content-type, x-secret", "headers"),
    (APP_ORIGIN, "TRACE", "content-type", "method"),
])
def test_a_refused_preflight_is_a_problem_without_the_allow_origin(cors_client, origin, method, headers, refused):
    response = preflight(cors_client, "/v1/rooms", method, origin=origin, headers=headers)
    problem = assert_problem(response, 400)
    assert f"Disallowed CORS {refused}" in problem["detail"]
    assert APP_ORIGIN not in problem["detail"]  # the allowed origins are not told to a stranger
    if refused == "origin":
        assert "Access-Control-Allow-Origin" not in response.headers


def test_answers_carry_the_origin_and_expose_the_headers_clients_read(cors_client, auth):
    created = cors_client.post("/v1/rooms", json=new_room(), headers={**auth, "Origin": APP_ORIGIN})
    assert created.status_code == 201
    assert created.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    exposed = listed(created.headers["Access-Control-Expose-Headers"])
    assert {"etag", "location", "link", "x-request-id", "retry-after", "avro-schema-fingerprint", "avro-schema-name",
            "idempotent-replayed"} <= exposed == {h.lower() for h in EXPOSED_HEADERS}
    read = cors_client.get(created.headers["Location"], headers={"Origin": APP_ORIGIN})
    assert read.headers["Access-Control-Allow-Origin"] == APP_ORIGIN and "etag" in read.headers


def test_error_answers_carry_the_cors_headers_so_the_page_can_read_the_problem(cors_client, auth):
    unauthorized = cors_client.post("/v1/rooms", json=new_room(), headers={"Origin": APP_ORIGIN})
    assert_problem(unauthorized, 401)
    assert unauthorized.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert "www-authenticate" in listed(unauthorized.headers["Access-Control-Expose-Headers"])
    invalid = cors_client.post("/v1/rooms", json={"name": ""}, headers={**auth, "Origin": APP_ORIGIN})
    assert_problem(invalid, 400)
    assert invalid.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    missing = cors_client.get("/v1/rooms/3fa85f64-5717-4562-b3fc-2c963f66afa6", headers={"Origin": APP_ORIGIN})
    assert_problem(missing, 404)
    assert missing.headers["Access-Control-Allow-Origin"] == APP_ORIGIN


def test_another_origin_gets_the_answer_without_cors_headers_so_its_browser_withholds_it(cors_client):
    response = cors_client.get("/v1/rooms", headers={"Origin": OTHER_ORIGIN})
    assert response.status_code == 200 and "Access-Control-Allow-Origin" not in response.headers
    assert "origin" in listed(response.headers["Vary"])  # a cache must not hand one origin's answer to another


@pytest.mark.parametrize("path", ["/v1/openapi.json", "/openapi.yaml", "/asyncapi.yaml", "/v1/asyncapi.json",
                                  "/v1/schemas/roomservice.Room"])
def test_the_documents_browser_tools_read_are_cors_enabled_too(cors_client, path):
    response = cors_client.get(path, headers={"Origin": APP_ORIGIN})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN


@SQLITE
def test_any_origin_with_a_star(settings):
    application = create_app(dataclasses.replace(settings, cors_origins=("*",)))
    try:
        client = EntityCheckingClient(application)
        assert client.get("/v1/rooms", headers={"Origin": OTHER_ORIGIN}).headers["Access-Control-Allow-Origin"] == "*"
        assert preflight(client, "/v1/rooms", "POST", origin=OTHER_ORIGIN).status_code == 204
    finally:
        dispose_app(application)


@SQLITE
def test_an_unexpected_fault_answers_a_500_problem_the_page_can_read(settings, auth):
    failing = _module(RuntimeError("a fault"))
    application = create_app(dataclasses.replace(settings, cors_origins=(APP_ORIGIN,)), modules=[failing])
    try:
        response = application.test_client().post("/v1/rooms", json=new_room(), headers={**auth, "Origin": APP_ORIGIN})
    finally:
        dispose_app(application)
    assert response.status_code == 500 and response.headers["content-type"] == "application/problem+json"
    assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN

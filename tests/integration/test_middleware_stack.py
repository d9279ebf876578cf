"""The middleware stack as production runs it (response validation off) and as tests run it (on)."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from injector import Module, provider

from app import create_app, dispose_app
from composition import InMemoryProvidersModule
from providers.memory_rooms import InMemoryRoomsProvider
from providers.rooms import RoomsProvider, StoredRoom
from tests.support.factories import new_room


class RoomsMissingTheirFields(InMemoryRoomsProvider):
    """A provider that breaks the contract: its rooms lack most required fields."""

    def get(self, room_id: str, *, for_update: bool = False) -> StoredRoom:
        return StoredRoom({"id": room_id, "name": "half a room"}, 1)


class BrokenRoomsModule(Module):
    def __init__(self, events) -> None:
        self._events = events

    @provider
    def rooms(self) -> RoomsProvider:
        return RoomsMissingTheirFields(self._events)


@pytest.fixture
def production_app(settings):
    """The app with the production default: responses are not validated."""
    app = create_app(dataclasses.replace(settings, validate_responses=False))
    yield app
    dispose_app(app)


@pytest.mark.parametrize("validate_responses", [False, True])
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_response_that_breaks_the_contract_is_a_500_only_when_responses_are_validated(settings, validate_responses):
    fakes = InMemoryProvidersModule()
    app = create_app(dataclasses.replace(settings, validate_responses=validate_responses),
                     modules=[fakes, BrokenRoomsModule(fakes.events)])
    try:
        response = app.test_client().get(f"/v1/rooms/{uuid.uuid4()}")
    finally:
        dispose_app(app)
    if validate_responses:
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/problem+json"
    else:
        assert response.status_code == 200
        assert response.json()["name"] == "half a room"


def test_the_production_stack_serves_the_api_with_validation_and_security(production_app, auth):
    client = production_app.test_client()
    created = client.post("/v1/rooms", json=new_room(), headers=auth)
    assert created.status_code == 201
    assert client.get(created.headers["Location"]).json() == created.json()
    assert client.get("/v1/rooms", params={"city": created.json()["area"]["city"]}).json()["data"] == [created.json()]
    assert client.post("/v1/rooms", json=new_room()).status_code == 401
    invalid = client.post("/v1/rooms", json=new_room() | {"price": "cheap"}, headers=auth)
    assert invalid.status_code == 400 and invalid.headers["content-type"] == "application/problem+json"
    too_large = client.post("/v1/rooms", content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
                            headers=auth | {"content-type": "application/json"})
    assert too_large.status_code == 413
    control = client.get("/v1/rooms/%0A")
    assert control.status_code == 400 and control.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("path", ["/ui/", "/v1/ui/", "/openapi.json", "/v1/openapi.json", "/v1/openapi.yaml",
                                  "/asyncapi.yaml", "/v1/asyncapi.json"])
def test_the_production_stack_serves_the_docs(production_app, path):
    response = production_app.test_client().get(path)
    assert response.status_code == 200
    assert response.content


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_paths_next_to_the_docs_are_not_found(production_app):
    response = production_app.test_client().get("/v1/uix")
    assert response.status_code == 404

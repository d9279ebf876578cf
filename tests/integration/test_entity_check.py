"""The entity checker used by every API test really rejects what breaks the Avro contract."""

from __future__ import annotations

import pytest
from fastavro.validation import ValidationError

from tests.support.entity_check import EntityCheckingClient, check_json_entities, schema_for

ROOM = {
    "id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "name": "A", "description": "d", "price": 1,
    "recurrency": "monthly", "provider": "p", "url": "https://example.com/1", "monthly_price": 1,
    "property_size": "1", "coordinates": {"lat": 1.0, "lon": 2.0}, "is_visible": True, "images": [],
    "created_at": "2026-11-21T12:00:00+00:00", "updated_at": "2026-11-21T12:00:00+00:00",
}


def test_a_valid_room_and_page_pass():
    assert check_json_entities("roomservice.Room", ROOM) == 1
    assert check_json_entities("roomservice.Room", {"data": [ROOM, ROOM], "next_cursor": None}) == 2


@pytest.mark.parametrize(
    "broken",
    [
        {k: v for k, v in ROOM.items() if k != "name"},
        ROOM | {"recurrency": "yearly"},
        ROOM | {"price": "1"},
        ROOM | {"coordinates": {"lat": 1.0}},
        ROOM | {"id": "not-a-uuid"},
    ],
)
def test_a_room_that_breaks_the_schema_is_rejected(broken):
    with pytest.raises((ValidationError, ValueError, KeyError, TypeError)):
        check_json_entities("roomservice.Room", broken)


def test_entity_paths_map_to_their_schemas():
    assert schema_for("/v1/rooms") == schema_for("/v1/rooms/abc") == "roomservice.Room"
    assert schema_for("/v1/items/3") == "roomservice.Item" and schema_for("/v1/questions") == "roomservice.Question"
    assert schema_for("/v1/schemas") is None and schema_for("/v1/ui/") is None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_fixture_client_checks_responses(client, auth):
    before = EntityCheckingClient.checked
    client.post("/v1/items", json={"name": "x"}, headers=auth)
    client.get("/v1/items")
    assert EntityCheckingClient.checked == before + 2

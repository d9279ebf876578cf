"""If-None-Match on the reads that carry an ETag (rooms, items, schemas): 304 without a body when it matches."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.integration.test_rooms_api import assert_problem
from tests.support.factories import MERGE_PATCH, new_room


def matching_forms(etag: str) -> list[str]:
    """If-None-Match values that name `etag`: itself, weakly, in a list, and `*`."""
    return [etag, f"W/{etag}", f'"no-such-version", {etag}', f'W/"x",W/{etag}', "*"]


def assert_not_modified(response, etag: str, vary: str | None) -> None:
    assert response.status_code == 304, response.text
    assert response.content == b""
    assert response.headers["ETag"] == etag
    assert response.headers.get("Vary") == vary
    assert "content-type" not in response.headers


def change_room(client, auth, path: str) -> None:
    headers = {**auth, "Content-Type": MERGE_PATCH}
    assert client.patch(path, content=json.dumps({"price": 1}), headers=headers).status_code == 200


def change_item(client, auth, path: str) -> None:
    assert client.put(path, json={"name": "Floor lamp"}, headers=auth).status_code == 200


RESOURCES = [
    ("/v1/rooms", lambda: new_room(), change_room),
    ("/v1/items", lambda: {"name": "Desk lamp"}, change_item),
]


@pytest.mark.parametrize("collection, body, change", RESOURCES, ids=["rooms", "items"])
def test_a_read_naming_the_current_etag_is_304_and_any_other_gets_the_entity(client, auth, collection, body, change):
    created = client.post(collection, json=body(), headers=auth)
    path, etag = created.headers["Location"], created.headers["ETag"]
    for header in matching_forms(etag):
        assert_not_modified(client.get(path, headers={"If-None-Match": header}), etag, "Accept")
        assert_not_modified(client.head(path, headers={"If-None-Match": header}), etag, "Accept")
    for header in ('"2"', f'"{etag}"', etag.strip('"')):
        fresh = client.get(path, headers={"If-None-Match": header})
        assert fresh.status_code == 200 and fresh.json() == created.json() and fresh.headers["ETag"] == etag, header
    change(client, auth, path)
    changed = client.get(path, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] == '"2"'
    assert_not_modified(client.get(path, headers={"If-None-Match": '"2"'}), '"2"', "Accept")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # schemas never touch the database
def test_a_schema_read_naming_its_fingerprint_is_304(client):
    path = "/v1/schemas/roomservice.Room"
    etag = client.get(path).headers["ETag"]
    for header in matching_forms(etag):
        assert_not_modified(client.get(path, headers={"If-None-Match": header}), etag, None)
    other = client.get(path, headers={"If-None-Match": '"0000000000000000"'})
    assert other.status_code == 200 and other.json()["name"] == "roomservice.Room"


def test_a_precondition_does_not_hide_an_answer_that_would_not_be_2xx(client, auth):
    assert_problem(client.get(f"/v1/rooms/{uuid.uuid4()}", headers={"If-None-Match": "*"}), 404)
    assert_problem(client.get("/v1/schemas/roomservice.Nothing", headers={"If-None-Match": "*"}), 404)
    created = client.post("/v1/items", json={"name": "Lamp"}, headers=auth)
    refused = client.get(created.headers["Location"], headers={"If-None-Match": "*", "Accept": "text/plain"})
    assert_problem(refused, 406)


def test_a_malformed_if_none_match_is_a_400_naming_the_header(client, auth):
    created = client.post("/v1/items", json={"name": "Lamp"}, headers=auth)
    problem = assert_problem(client.get(created.headers["Location"], headers={"If-None-Match": "x" * 1025}), 400)
    assert [error["path"] for error in problem["errors"]] == ["header.If-None-Match"]

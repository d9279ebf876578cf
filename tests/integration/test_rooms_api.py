"""Every /rooms operation through the real app (HTTP -> Connexion -> handler -> provider -> database)."""

from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy as sa

from tests.support.factories import MERGE_PATCH, new_room

PROBLEM = "application/problem+json"


def patch(client, path, document, headers):
    return client.patch(path, content=json.dumps(document), headers={**headers, "Content-Type": MERGE_PATCH})


def assert_problem(response, status):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["title"] and "type" in body
    return body


def count_rooms(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.text("SELECT count(*) FROM rooms")).scalar_one()


# --- create -------------------------------------------------------------------------------------


def test_create_returns_the_stored_room_with_location_and_etag(client, auth):
    body = new_room(images=[{"url": "https://example.com/a.jpg"}])
    response = client.post("/v1/rooms", json=body, headers=auth)
    assert response.status_code == 201, response.text
    room = response.json()
    uuid.UUID(room["id"])
    assert response.headers["Location"] == f"/v1/rooms/{room['id']}"
    assert response.headers["ETag"] == '"1"'
    for key, value in body.items():
        assert room[key] == value
    assert room["is_visible"] is True
    assert room["created_at"] == room["updated_at"]
    fetched = client.get(response.headers["Location"])
    assert fetched.status_code == 200 and fetched.json() == room


def test_create_applies_defaults_for_visibility_and_images(client, auth):
    body = new_room()
    del body["area"]
    room = client.post("/v1/rooms", json=body, headers=auth).json()
    assert room["is_visible"] is True and room["images"] == [] and "area" not in room


def test_create_keeps_area_coordinates(client, auth):
    area = {"name": "Mitte", "country": "Germany", "city": "Berlin", "coordinates": {"lat": 52.5, "lon": 13.4}}
    room = client.post("/v1/rooms", json=new_room(area=area), headers=auth).json()
    assert room["area"] == area


def test_create_with_a_stored_url_is_409_naming_the_room_and_stores_nothing(client, auth, engine):
    first = client.post("/v1/rooms", json=new_room(url="https://example.com/same"), headers=auth).json()
    response = client.post("/v1/rooms", json=new_room(url="https://example.com/same"), headers=auth)
    problem = assert_problem(response, 409)
    assert first["id"] in problem["detail"] and problem["conflicting_id"] == first["id"]
    assert count_rooms(engine) == 1


def test_create_lists_every_failing_field_with_its_path(client, auth, engine):
    body = new_room(price=-1, recurrency="yearly", url="ftp://example.com/x", coordinates={"lat": 91, "lon": 0})
    del body["name"]
    problem = assert_problem(client.post("/v1/rooms", json=body, headers=auth), 400)
    paths = {error["path"] for error in problem["errors"]}
    assert paths == {"$.name", "$.price", "$.recurrency", "$.url", "$.coordinates.lat"}
    assert count_rooms(engine) == 0


@pytest.mark.parametrize(
    "field, value",
    [
        ("name", ""),
        ("name", "x" * 201),
        ("provider", ""),
        ("provider", "x" * 101),
        ("price", 1.5),
        ("monthly_price", -1),
        ("url", "example.com/no-scheme"),
        ("url", "https://"),
        ("coordinates", {"lat": 0}),
        ("coordinates", {"lat": 0, "lon": 181}),
        ("area", {"name": "x", "country": "y"}),
        ("images", [{"href": "https://example.com/a.jpg"}]),
        ("is_visible", "yes"),
        ("id", str(uuid.uuid4())),
        ("created_at", "2026-01-01T00:00:00Z"),
    ],
)
def test_create_rejects_a_field_that_breaks_the_contract(client, auth, field, value):
    problem = assert_problem(client.post("/v1/rooms", json=new_room(**{field: value}), headers=auth), 400)
    assert any(error["path"].startswith(f"$.{field}") for error in problem["errors"]), problem


def test_create_needs_an_api_key(client, engine):
    assert_problem(client.post("/v1/rooms", json=new_room()), 401)
    assert_problem(client.post("/v1/rooms", json=new_room(), headers={"X-API-Key": "wrong"}), 401)
    assert count_rooms(engine) == 0


def test_create_rejects_a_wrong_content_type_with_415(client, auth):
    response = client.post("/v1/rooms", content=json.dumps(new_room()), headers={**auth, "Content-Type": "text/plain"})
    assert_problem(response, 415)


def test_create_rejects_malformed_json_with_400(client, auth):
    response = client.post("/v1/rooms", content=b'{"name": ', headers={**auth, "Content-Type": "application/json"})
    assert "not valid JSON" in assert_problem(response, 400)["detail"]


def test_create_rejects_an_empty_body_with_400(client, auth):
    assert_problem(client.post("/v1/rooms", headers={**auth, "Content-Type": "application/json"}), 400)


def test_a_body_over_the_limit_is_413(client, auth, engine):
    body = new_room(description="x" * 2_000_000)
    assert_problem(client.post("/v1/rooms", json=body, headers=auth), 413)
    assert count_rooms(engine) == 0


# --- read ---------------------------------------------------------------------------------------


def test_get_unknown_room_is_404(client):
    assert_problem(client.get(f"/v1/rooms/{uuid.uuid4()}"), 404)


@pytest.mark.parametrize("room_id", ["not-a-uuid", "1234", "3fa85f64-5717-4562-b3fc-2c963f66afaZ"])
def test_get_with_a_malformed_id_is_400(client, room_id):
    problem = assert_problem(client.get(f"/v1/rooms/{room_id}"), 400)
    assert problem["errors"][0]["path"] == "path.room_id"


def test_get_accepts_an_upper_case_id(client, auth):
    room = client.post("/v1/rooms", json=new_room(), headers=auth).json()
    response = client.get(f"/v1/rooms/{room['id'].upper()}")
    assert response.status_code == 200 and response.json()["id"] == room["id"]


def test_head_works_where_get_does(client, auth):
    room = client.post("/v1/rooms", json=new_room(), headers=auth).json()
    single = client.head(f"/v1/rooms/{room['id']}")
    assert single.status_code == 200 and single.headers["ETag"] == '"1"' and single.content == b""
    listing = client.head("/v1/rooms")
    assert listing.status_code == 200 and listing.content == b""


def test_a_wrong_method_is_405_with_allow(client, auth):
    response = client.put("/v1/rooms", json=new_room(), headers=auth)
    assert_problem(response, 405)
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    response = client.post(f"/v1/rooms/{uuid.uuid4()}", json={}, headers=auth)
    assert_problem(response, 405)
    assert {"GET", "PATCH", "DELETE"} <= set(response.headers["Allow"].replace(" ", "").split(","))


def test_unknown_paths_are_404_problems(client):
    assert_problem(client.get("/v1/nothing-here"), 404)


# --- patch --------------------------------------------------------------------------------------


def test_patch_merges_and_bumps_the_etag(client, auth):
    created = client.post("/v1/rooms", json=new_room(), headers=auth)
    room = created.json()
    response = patch(
        client, f"/v1/rooms/{room['id']}",
        {"price": 700, "area": None, "coordinates": {"lat": 48.1}},
        {**auth, "If-Match": created.headers["ETag"]},
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert response.headers["ETag"] == '"2"'
    assert updated["price"] == 700 and "area" not in updated
    assert updated["coordinates"] == {"lat": 48.1, "lon": room["coordinates"]["lon"]}
    assert updated["created_at"] == room["created_at"] and updated["updated_at"] > room["updated_at"]
    assert client.get(f"/v1/rooms/{room['id']}").json() == updated


def test_patch_with_a_stale_if_match_is_412_and_changes_nothing(client, auth):
    room = client.post("/v1/rooms", json=new_room(), headers=auth).json()
    patch(client, f"/v1/rooms/{room['id']}", {"price": 1}, auth)
    response = patch(client, f"/v1/rooms/{room['id']}", {"price": 2}, {**auth, "If-Match": '"1"'})
    assert_problem(response, 412)
    assert client.get(f"/v1/rooms/{room['id']}").json()["price"] == 1


def test_patch_accepts_a_wildcard_or_a_list_in_if_match(client, auth):
    room = client.post("/v1/rooms", json=new_room(), headers=auth).json()
    assert patch(client, f"/v1/rooms/{room['id']}", {"price": 1}, {**auth, "If-Match": "*"}).status_code == 200
    response = patch(client, f"/v1/rooms/{room['id']}", {"price": 2}, {**auth, "If-Match": '"7", "2"'})
    assert response.status_code == 200


@pytest.mark.parametrize("field", ["id", "created_at", "updated_at"])
def test_patch_cannot_change_read_only_fields(client, auth, field):
    room = client.post("/v1/rooms", json=new_room(), headers=auth).json()
    problem = assert_problem(patch(client, f"/v1/rooms/{room['id']}", {field: room[field]}, auth), 400)
    assert problem["errors"][0]["path"] == f"$.{field}"


def test_patch_result_is_validated_like_a_create(client, auth):
    room = client.post("/v1/rooms", json=new_room(), headers=auth).json()
    problem = assert_problem(
        patch(client, f"/v1/rooms/{room['id']}", {"name": "", "coordinates": {"lon": 200}, "url": None}, auth), 400
    )
    assert {e["path"] for e in problem["errors"]} == {"$.name", "$.coordinates.lon", "$.url"}
    assert client.get(f"/v1/rooms/{room['id']}").json() == room


def test_patch_to_another_rooms_url_is_409(client, auth):
    first = client.post("/v1/rooms", json=new_room(), headers=auth).json()
    second = client.post("/v1/rooms", json=new_room(), headers=auth).json()
    problem = assert_problem(patch(client, f"/v1/rooms/{second['id']}", {"url": first["url"]}, auth), 409)
    assert problem["conflicting_id"] == first["id"]
    assert client.get(f"/v1/rooms/{second['id']}").json()["url"] == second["url"]


def test_patch_needs_merge_patch_content_type(client, auth):
    room = client.post("/v1/rooms", json=new_room(), headers=auth).json()
    assert_problem(client.patch(f"/v1/rooms/{room['id']}", json={"price": 1}, headers=auth), 415)


def test_patch_needs_an_api_key(client, auth):
    room = client.post("/v1/rooms", json=new_room(), headers=auth).json()
    assert_problem(patch(client, f"/v1/rooms/{room['id']}", {"price": 1}, {}), 401)


def test_patch_of_unknown_room_is_404(client, auth):
    assert_problem(patch(client, f"/v1/rooms/{uuid.uuid4()}", {"price": 1}, auth), 404)


def test_an_empty_patch_is_400(client, auth):
    room = client.post("/v1/rooms", json=new_room(), headers=auth).json()
    assert_problem(patch(client, f"/v1/rooms/{room['id']}", {}, auth), 400)


# --- delete -------------------------------------------------------------------------------------


def test_delete_removes_the_room(client, auth, engine):
    room = client.post("/v1/rooms", json=new_room(), headers=auth).json()
    response = client.delete(f"/v1/rooms/{room['id']}", headers=auth)
    assert response.status_code == 204 and response.content == b""
    assert_problem(client.get(f"/v1/rooms/{room['id']}"), 404)
    assert_problem(client.delete(f"/v1/rooms/{room['id']}", headers=auth), 404)
    assert count_rooms(engine) == 0


def test_delete_frees_the_url(client, auth):
    room = client.post("/v1/rooms", json=new_room(url="https://example.com/reuse"), headers=auth).json()
    client.delete(f"/v1/rooms/{room['id']}", headers=auth)
    assert client.post("/v1/rooms", json=new_room(url="https://example.com/reuse"), headers=auth).status_code == 201


def test_delete_honours_if_match(client, auth):
    room = client.post("/v1/rooms", json=new_room(), headers=auth).json()
    assert_problem(client.delete(f"/v1/rooms/{room['id']}", headers={**auth, "If-Match": '"9"'}), 412)
    assert client.delete(f"/v1/rooms/{room['id']}", headers={**auth, "If-Match": '"1"'}).status_code == 204


def test_delete_needs_an_api_key(client, auth):
    room = client.post("/v1/rooms", json=new_room(), headers=auth).json()
    assert_problem(client.delete(f"/v1/rooms/{room['id']}"), 401)
    assert client.get(f"/v1/rooms/{room['id']}").status_code == 200

"""Every /items operation through the real app on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from tests.integration.test_rooms_api import assert_problem


def create(client, auth, name="Desk lamp"):
    response = client.post("/v1/items", json={"name": name}, headers=auth)
    assert response.status_code == 201, response.text
    return response


def test_create_assigns_increasing_ids_with_location_and_etag(client, auth):
    first, second = create(client, auth, "a"), create(client, auth, "b")
    assert first.json() == {"id": first.json()["id"], "name": "a"}
    assert second.json()["id"] > first.json()["id"]
    assert first.headers["Location"] == f"/v1/items/{first.json()['id']}" and first.headers["ETag"] == '"1"'
    assert client.get(first.headers["Location"]).json() == first.json()


def test_ids_of_deleted_items_are_not_reused(client, auth):
    last = create(client, auth).json()
    client.delete(f"/v1/items/{last['id']}", headers=auth)
    assert create(client, auth).json()["id"] > last["id"]


@pytest.mark.parametrize("body, path", [({}, "$.name"), ({"name": ""}, "$.name"), ({"name": "x" * 101}, "$.name"),
                                        ({"name": 5}, "$.name"), ({"name": "a", "id": 3}, "$.id")])
def test_create_rejects_bodies_that_break_the_contract(client, auth, body, path):
    problem = assert_problem(client.post("/v1/items", json=body, headers=auth), 400)
    assert path in {e["path"] for e in problem["errors"]}


def test_writes_need_the_api_key(client, auth):
    item = create(client, auth).json()
    assert_problem(client.post("/v1/items", json={"name": "x"}), 401)
    assert_problem(client.put(f"/v1/items/{item['id']}", json={"name": "x"}), 401)
    assert_problem(client.delete(f"/v1/items/{item['id']}"), 401)
    assert client.get(f"/v1/items/{item['id']}").json() == item


def test_get_unknown_item_is_404(client):
    assert_problem(client.get("/v1/items/424242"), 404)


@pytest.mark.parametrize("item_id", ["abc", "1.5", "0", "-3", "99999999999999999999"])
def test_a_non_integer_or_out_of_range_id_is_a_400_or_404_problem(client, auth, item_id):
    for response in (client.get(f"/v1/items/{item_id}"), client.put(f"/v1/items/{item_id}", json={"name": "x"}, headers=auth),
                     client.delete(f"/v1/items/{item_id}", headers=auth)):
        assert response.status_code in (400, 404), response.text
        assert response.headers["content-type"] == "application/problem+json"


def test_put_replaces_and_honours_if_match(client, auth):
    created = create(client, auth, "old")
    item_id = created.json()["id"]
    replaced = client.put(f"/v1/items/{item_id}", json={"name": "new"}, headers={**auth, "If-Match": created.headers["ETag"]})
    assert replaced.status_code == 200 and replaced.json() == {"id": item_id, "name": "new"}
    assert replaced.headers["ETag"] == '"2"'
    stale = client.put(f"/v1/items/{item_id}", json={"name": "newer"}, headers={**auth, "If-Match": '"1"'})
    assert_problem(stale, 412)
    assert client.get(f"/v1/items/{item_id}").json()["name"] == "new"


def test_put_on_unknown_item_is_404(client, auth):
    assert_problem(client.put("/v1/items/424242", json={"name": "x"}, headers=auth), 404)


def test_put_validates_the_body(client, auth):
    item = create(client, auth).json()
    assert_problem(client.put(f"/v1/items/{item['id']}", json={"name": ""}, headers=auth), 400)


def test_delete_removes_and_then_404s(client, auth):
    item = create(client, auth).json()
    assert client.delete(f"/v1/items/{item['id']}", headers=auth).status_code == 204
    assert_problem(client.get(f"/v1/items/{item['id']}"), 404)
    assert_problem(client.delete(f"/v1/items/{item['id']}", headers=auth), 404)


def test_delete_honours_if_match(client, auth):
    item = create(client, auth).json()
    assert_problem(client.delete(f"/v1/items/{item['id']}", headers={**auth, "If-Match": '"5"'}), 412)
    assert client.delete(f"/v1/items/{item['id']}", headers={**auth, "If-Match": '"1"'}).status_code == 204


def test_search_defaults_to_five_and_filters_by_name_case_insensitively(client, auth):
    names = ["Desk lamp", "Floor LAMP", "Chair", "lampshade", "Table", "Lamp post", "Sofa", "Bedside lamp"]
    for name in names:
        create(client, auth, name)
    page = client.get("/v1/items").json()
    assert len(page["data"]) == 5 and page["next_cursor"]
    lamps = client.get("/v1/items?name=lAmP&limit=100").json()["data"]
    assert [i["name"] for i in lamps] == ["Desk lamp", "Floor LAMP", "lampshade", "Lamp post", "Bedside lamp"]


def test_search_treats_like_wildcards_literally(client, auth):
    create(client, auth, "100% cotton")
    create(client, auth, "100 cotton")
    create(client, auth, "snake_case")
    create(client, auth, "snakecase")
    assert [i["name"] for i in client.get("/v1/items?name=0%25").json()["data"]] == ["100% cotton"]
    assert [i["name"] for i in client.get("/v1/items?name=e_c").json()["data"]] == ["snake_case"]


def test_walking_the_pages_sees_every_item_once(client, auth):
    created = [create(client, auth, f"thing {n}").json()["id"] for n in range(23)]
    seen, url = [], "/v1/items?name=thing"
    while url:
        response = client.get(url)
        seen += [i["id"] for i in response.json()["data"]]
        link = response.headers.get("Link")
        url = link[1 : link.index(">")] if link else None
    assert seen == created


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "name=", "cursor=%24%24", "cursor=eyJpIjoiYSJ9"])
def test_bad_search_parameters_are_400(client, query):
    assert_problem(client.get(f"/v1/items?{query}"), 400)

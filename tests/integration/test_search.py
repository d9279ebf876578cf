"""Search through the real app: every filter, combinations, the geographic radius and full pagination walks."""

from __future__ import annotations

import math
import random

import pytest
import sqlalchemy as sa

from providers.rooms import EARTH_RADIUS_KM
from tests.support.factories import new_room


def create(client, auth, **fields):
    response = client.post("/v1/rooms", json=new_room(**fields), headers=auth)
    assert response.status_code == 201, response.text
    return response.json()


def ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [room["id"] for room in response.json()["data"]]


def walk(client, query: str) -> list[dict]:
    """Follow next_cursor (and check the Link header agrees) until the last page."""
    rooms, url = [], f"/v1/rooms?{query}"
    while True:
        response = client.get(url)
        assert response.status_code == 200, response.text
        page = response.json()
        rooms.extend(page["data"])
        if page["next_cursor"] is None:
            assert "Link" not in response.headers
            return rooms
        link = response.headers["Link"]
        assert link.startswith("</v1/rooms?") and link.endswith('>; rel="next"')
        url = link[1 : link.index(">")]
        assert f"cursor={page['next_cursor']}" in url


def point_at_distance(lat: float, lon: float, km: float) -> dict[str, float]:
    """Coordinates `km` due north of (lat, lon) on the service's sphere."""
    return {"lat": lat + math.degrees(km / EARTH_RADIUS_KM), "lon": lon}


@pytest.fixture
def berlin_and_friends(client, auth):
    return {
        "cheap_berlin": create(client, auth, price=300, area={"name": "Wedding", "country": "Germany", "city": "Berlin"}),
        "dear_berlin": create(client, auth, price=900, provider="immoscout",
                              area={"name": "Mitte", "country": "Germany", "city": "Berlin"}),
        "hidden_berlin": create(client, auth, price=500, is_visible=False,
                                area={"name": "Pankow", "country": "Germany", "city": "Berlin"}),
        "munich": create(client, auth, price=700, area={"name": "Au", "country": "Germany", "city": "Munich"},
                         coordinates={"lat": 48.137, "lon": 11.575}),
        "vienna": create(client, auth, price=600, provider="immoscout",
                         area={"name": "Wieden", "country": "Austria", "city": "Vienna"},
                         coordinates={"lat": 48.208, "lon": 16.373}),
        "nowhere": create(client, auth, price=100, area=None),
    }


@pytest.mark.parametrize(
    "query, expected",
    [
        ("city=Berlin", {"cheap_berlin", "dear_berlin", "hidden_berlin"}),
        ("country=Austria", {"vienna"}),
        ("provider=immoscout", {"dear_berlin", "vienna"}),
        ("min_price=600", {"dear_berlin", "munich", "vienna"}),
        ("max_price=300", {"cheap_berlin", "nowhere"}),
        ("min_price=500&max_price=700", {"hidden_berlin", "munich", "vienna"}),
        ("visible=false", {"hidden_berlin"}),
        ("visible=true&city=Berlin", {"cheap_berlin", "dear_berlin"}),
        ("country=Germany&provider=immoscout&min_price=800", {"dear_berlin"}),
        ("city=Hamburg", set()),
        ("", {"cheap_berlin", "dear_berlin", "hidden_berlin", "munich", "vienna", "nowhere"}),
    ],
)
def test_filters_combine_with_and(client, berlin_and_friends, query, expected):
    names = {room_id: name for name, room in berlin_and_friends.items() for room_id in [room["id"]]}
    found = {names[room_id] for room_id in ids(client.get(f"/v1/rooms?{query}"))}
    assert found == expected


def test_rooms_come_sorted_by_the_requested_order(client, berlin_and_friends):
    by_price = [r["price"] for r in client.get("/v1/rooms?sort=price").json()["data"]]
    assert by_price == sorted(by_price)
    by_price_desc = [r["price"] for r in client.get("/v1/rooms?sort=-price").json()["data"]]
    assert by_price_desc == sorted(by_price, reverse=True)
    created = [r["created_at"] for r in client.get("/v1/rooms?sort=-created_at").json()["data"]]
    assert created == sorted(created, reverse=True)


def test_geographic_radius_keeps_rooms_just_inside_and_drops_just_outside(client, auth):
    centre = (52.52, 13.405)
    inside = create(client, auth, coordinates=point_at_distance(*centre, 9.95))
    outside = create(client, auth, coordinates=point_at_distance(*centre, 10.05))
    east = create(client, auth, coordinates={"lat": 52.52, "lon": 13.405 + 0.1})  # about 6.8 km east
    far = create(client, auth, coordinates={"lat": 48.137, "lon": 11.575})
    found = set(ids(client.get("/v1/rooms?near=52.52,13.405&radius_km=10")))
    assert found == {inside["id"], east["id"]}
    assert outside["id"] not in found and far["id"] not in found
    assert set(ids(client.get("/v1/rooms?near=52.52,13.405&radius_km=600"))) == {
        inside["id"], outside["id"], east["id"], far["id"]
    }


def test_geographic_radius_works_across_the_antimeridian(client, auth):
    west = create(client, auth, coordinates={"lat": 0.0, "lon": 179.95})
    east = create(client, auth, coordinates={"lat": 0.0, "lon": -179.95})
    create(client, auth, coordinates={"lat": 0.0, "lon": 170.0})
    assert set(ids(client.get("/v1/rooms?near=0,180&radius_km=20"))) == {west["id"], east["id"]}


def test_geographic_filter_combines_with_other_filters(client, auth):
    cheap = create(client, auth, price=100)
    create(client, auth, price=1000)
    assert ids(client.get("/v1/rooms?near=52.52,13.405&radius_km=1&max_price=500")) == [cheap["id"]]


@pytest.mark.parametrize(
    "query, path",
    [
        ("near=52.5,13.4", "query.radius_km"),
        ("radius_km=5", "query.near"),
        ("near=91,0&radius_km=5", "query.near"),
        ("near=0,181&radius_km=5", "query.near"),
        ("near=abc&radius_km=5", "query.near"),
        ("near=1,2&radius_km=0", "query.radius_km"),
        ("limit=0", "query.limit"),
        ("limit=101", "query.limit"),
        ("min_price=-1", "query.min_price"),
        ("sort=name", "query.sort"),
        ("visible=maybe", "query.visible"),
        ("cursor=%21%21", "query.cursor"),
        ("cursor=bm90LWEtY3Vyc29y", "query.cursor"),
    ],
)
def test_bad_search_parameters_are_400_naming_the_parameter(client, query, path):
    response = client.get(f"/v1/rooms?{query}")
    assert response.status_code == 400, response.text
    assert path in {error["path"] for error in response.json()["errors"]}


def test_unknown_query_parameters_are_rejected(client):
    response = client.get("/v1/rooms?colour=red")
    assert response.status_code == 400 and "colour" in response.json()["detail"]


def test_a_cursor_only_works_with_the_sort_it_came_from(client, auth):
    for _ in range(3):
        create(client, auth)
    cursor = client.get("/v1/rooms?limit=1&sort=price").json()["next_cursor"]
    response = client.get(f"/v1/rooms?limit=1&sort=created_at&cursor={cursor}")
    assert response.status_code == 400 and "sort=price" in response.json()["detail"]


def test_limit_defaults_to_20(client, auth):
    for _ in range(21):
        create(client, auth)
    page = client.get("/v1/rooms").json()
    assert len(page["data"]) == 20 and page["next_cursor"]


def test_walking_every_page_sees_every_room_exactly_once_in_every_order(client, auth, engine):
    rng = random.Random(7)
    created = {create(client, auth, price=rng.choice([100, 200, 300]))["id"] for _ in range(260)}
    # Give many rooms the very same timestamp, so the created_at orders depend on the id tie-breaker.
    with engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE rooms SET created_at = (SELECT min(created_at) FROM rooms) WHERE price = 200")
        )
    for sort in ("price", "-price", "created_at", "-created_at"):
        seen = walk(client, f"sort={sort}&limit=7")
        seen_ids = [room["id"] for room in seen]
        assert len(seen_ids) == len(set(seen_ids)) == 260, sort
        assert set(seen_ids) == created, sort
        key = "price" if "price" in sort else "created_at"
        keys = [(room[key], room["id"]) for room in seen]
        assert keys == sorted(keys, reverse=sort.startswith("-")), sort


def test_pagination_keeps_filters_in_the_next_link(client, auth):
    wanted = {create(client, auth, price=10, provider="a")["id"] for _ in range(5)}
    for _ in range(5):
        create(client, auth, price=10, provider="b")
    assert {room["id"] for room in walk(client, "provider=a&limit=2")} == wanted

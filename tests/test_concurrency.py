"""Concurrent writers through a real HTTP server: the database decides, clients get 201 or 409, never 500."""

from __future__ import annotations

import threading
from collections import Counter

import httpx
import pytest
import sqlalchemy as sa

from tests.factories import new_room


def race(url: str, requests: list[tuple[str, str, dict, dict]]) -> list[httpx.Response]:
    """Fire the requests at once from one thread each, released together by a barrier."""
    barrier = threading.Barrier(len(requests))
    responses: list[httpx.Response | None] = [None] * len(requests)

    def worker(index: int, method: str, path: str, body: dict, headers: dict) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            barrier.wait()
            responses[index] = client.request(method, path, json=body, headers=headers)

    threads = [threading.Thread(target=worker, args=(i, *r)) for i, r in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [r for r in responses if r is not None]


@pytest.mark.parametrize("database_url", ["postgresql", "sqlite"], indirect=True)
def test_twenty_parallel_creates_of_one_url_give_one_201_and_nineteen_409(live_server, auth, engine):
    body = new_room(url="https://example.com/contested")
    responses = race(live_server.url, [("POST", "/v1/rooms", body, auth)] * 20)
    assert len(responses) == 20
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 1, 409: 19}, [r.text for r in responses if r.status_code not in (201, 409)]
    winner = next(r.json() for r in responses if r.status_code == 201)
    assert all(r.json()["conflicting_id"] == winner["id"] for r in responses if r.status_code == 409)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM rooms")).scalar_one() == 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_parallel_patches_with_the_same_if_match_let_exactly_one_win(live_server, auth):
    with httpx.Client(base_url=live_server.url) as client:
        created = client.post("/v1/rooms", json=new_room(), headers=auth)
    room_id, etag = created.json()["id"], created.headers["ETag"]
    headers = {**auth, "If-Match": etag, "Content-Type": "application/merge-patch+json"}
    barrier = threading.Barrier(10)
    statuses: list[int] = []

    def worker(price: int) -> None:
        with httpx.Client(base_url=live_server.url, timeout=60) as client:
            barrier.wait()
            statuses.append(client.patch(f"/v1/rooms/{room_id}", content=f'{{"price": {price}}}', headers=headers).status_code)

    threads = [threading.Thread(target=worker, args=(price,)) for price in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Counter(statuses) == {200: 1, 412: 9}

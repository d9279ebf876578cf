"""Concurrent writers through a real HTTP server: the database decides, clients get 201 or 409, never 500."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from collections import Counter

import httpx
import pytest
import sqlalchemy as sa

from app import create_app, dispose_app
from tests.support.entity_check import EntityCheckingClient
from tests.support.factories import new_room


def race(url: str, requests: list[tuple[str, str, dict | bytes, dict]]) -> list[httpx.Response]:
    """Fire the requests at once from one thread each, released together by a barrier (a dict body is sent as JSON)."""
    barrier = threading.Barrier(len(requests))
    responses: list[httpx.Response | None] = [None] * len(requests)

    def worker(index: int, method: str, path: str, body: dict | bytes, headers: dict) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            barrier.wait()
            if isinstance(body, bytes):
                responses[index] = client.request(method, path, content=body or None, headers=headers)
            else:
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


@pytest.mark.parametrize("database_url", ["postgresql", "sqlite"], indirect=True)
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


@pytest.mark.parametrize("database_url", ["postgresql", "sqlite"], indirect=True)
def test_twenty_parallel_patches_of_one_room_all_succeed_in_turn(live_server, auth):
    # On SQLite a deferred transaction that read could not become a writer after another committed:
    # up to 18 of these were 500 "database is locked" before writes began IMMEDIATE.
    headers = {**auth, "Content-Type": "application/merge-patch+json"}
    with httpx.Client(base_url=live_server.url) as client:
        room_id = client.post("/v1/rooms", json=new_room(), headers=auth).json()["id"]
    responses = race(live_server.url, [("PATCH", f"/v1/rooms/{room_id}", f'{{"price": {p}}}'.encode(), headers)
                                           for p in range(1, 21)])
    assert Counter(r.status_code for r in responses) == {200: 20}, [r.text for r in responses if r.status_code != 200]
    with httpx.Client(base_url=live_server.url) as client:
        assert client.get(f"/v1/rooms/{room_id}").headers["ETag"] == '"21"'


@pytest.mark.parametrize("database_url", ["postgresql", "sqlite"], indirect=True)
def test_twenty_parallel_patches_and_deletes_of_twenty_rooms_get_their_documented_answers(live_server, auth):
    with httpx.Client(base_url=live_server.url) as client:
        ids = [client.post("/v1/rooms", json=new_room(), headers=auth).json()["id"] for _ in range(20)]
    patch = {**auth, "Content-Type": "application/merge-patch+json", "If-Match": '"1"'}
    patched = race(live_server.url, [("PATCH", f"/v1/rooms/{room_id}", b'{"price": 7}', patch) for room_id in ids])
    assert Counter(r.status_code for r in patched) == {200: 20}, [r.text for r in patched if r.status_code != 200]
    # Each room deleted twice at once: one 204 and one 404 per room, whatever the order.
    deleted = race(live_server.url, [("DELETE", f"/v1/rooms/{room_id}", b"", auth) for room_id in ids * 2])
    assert Counter(r.status_code for r in deleted) == {204: 20, 404: 20}, [r.text for r in deleted if r.status_code >= 500]



@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_write_that_waits_out_the_sqlite_lock_timeout_is_a_503_with_retry_after(settings, database_url, auth):
    app = create_app(dataclasses.replace(settings, sqlite_lock_timeout_seconds=1))
    holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        client = EntityCheckingClient(app)
        holder.execute("BEGIN IMMEDIATE")  # another writer that keeps the write lock
        waited = client.post("/v1/items", json={"name": "lamp"}, headers=auth)
        assert waited.status_code == 503, waited.text
        assert waited.headers["content-type"] == "application/problem+json"
        assert waited.headers["retry-after"] == str(settings.retry_after_seconds)
        assert client.get("/v1/items").json()["data"] == []  # reads go on meanwhile
        holder.execute("ROLLBACK")
        assert client.post("/v1/items", json={"name": "lamp"}, headers=auth).status_code == 201
    finally:
        holder.close()
        dispose_app(app)

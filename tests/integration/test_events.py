"""The outbox and the feed: one event per committed change, none for failures, nothing skipped or repeated."""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
import pytest
import sqlalchemy as sa

from contract.avro import AvroSchemas
from tests.integration.test_avro_api import apache_records
from tests.integration.test_rooms_api import assert_problem
from tests.support.factories import new_room

SCHEMAS = AvroSchemas()


def events(client, **params) -> list[dict]:
    response = client.get("/v1/events", params=params)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def table_positions(engine) -> list[int]:
    with engine.connect() as connection:
        return connection.execute(sa.text("SELECT position FROM events ORDER BY position")).scalars().all()


def test_every_change_appends_exactly_one_event_with_the_entity_after_it(client, auth):
    room = client.post("/v1/rooms", json=new_room(), headers=auth).json()
    client.patch(f"/v1/rooms/{room['id']}", content=b'{"price": 1}',
                 headers={**auth, "Content-Type": "application/merge-patch+json"})
    client.delete(f"/v1/rooms/{room['id']}", headers=auth)
    item = client.post("/v1/items", json={"name": "a"}, headers=auth).json()
    client.put(f"/v1/items/{item['id']}", json={"name": "b"}, headers=auth)
    client.delete(f"/v1/items/{item['id']}", headers=auth)
    client.post("/v1/questions", json={"question_code": "7", "category": "c", "message": "m"}, headers=auth)
    client.delete("/v1/questions/7", headers=auth)
    feed = events(client)
    assert [e["type"] for e in feed] == [
        "room.created", "room.updated", "room.deleted", "item.created", "item.updated", "item.deleted",
        "question.created", "question.deleted",
    ]
    positions = [e["position"] for e in feed]
    assert positions == sorted(positions) and len(set(positions)) == 8
    assert feed[0]["entity"] == room and feed[0]["key"] == room["id"] and feed[0]["subject"] == "roomservice.Room"
    assert feed[1]["entity"]["price"] == 1 and feed[2]["entity"] is None
    assert feed[4]["entity"] == {"id": item["id"], "name": "b"} and feed[4]["key"] == str(item["id"])
    assert feed[6]["entity"] == {"question_code": "7", "category": "c", "message": "m"}
    assert feed[0]["entity_fingerprint"] == SCHEMAS.get("Room").fingerprint


def test_failed_requests_leave_no_event(client, auth):
    first = client.post("/v1/rooms", json=new_room(url="https://example.com/one"), headers=auth).json()
    assert_problem(client.post("/v1/rooms", json=new_room(url="https://example.com/one"), headers=auth), 409)
    assert_problem(client.post("/v1/rooms", json=new_room(price=-1), headers=auth), 400)
    assert_problem(client.patch(f"/v1/rooms/{first['id']}", content=b'{"price": 2}',
                                headers={**auth, "If-Match": '"9"', "Content-Type": "application/merge-patch+json"}), 412)
    assert_problem(client.post("/v1/items", json={"name": "x"}, headers={**auth, "Accept": "text/html"}), 406)
    assert_problem(client.delete("/v1/items/4242", headers=auth), 404)
    assert [e["type"] for e in events(client)] == ["room.created"]


def test_the_feed_pages_by_position_and_filters_by_type(client, auth):
    for n in range(5):
        client.post("/v1/items", json={"name": f"i{n}"}, headers=auth)
        client.post("/v1/questions", json={"question_code": str(n), "category": "c", "message": "m"}, headers=auth)
    page = client.get("/v1/events?limit=3").json()
    assert len(page["data"]) == 3 and page["last_position"] == page["data"][-1]["position"]
    rest = events(client, after=page["last_position"], limit=1000)
    assert len(rest) == 7
    only_items = events(client, type="item.created")
    assert [e["entity"]["name"] for e in only_items] == [f"i{n}" for n in range(5)]
    assert len(events(client, type="item.created,question.created")) == 10
    assert client.get(f"/v1/events?after={rest[-1]['position']}").json() == {"data": [], "last_position": rest[-1]["position"]}


def test_the_feed_as_avro_holds_event_records_with_the_entities_inside(client, auth):
    room = client.post("/v1/rooms", json=new_room(), headers=auth).json()
    response = client.get("/v1/events", headers={"Accept": "application/avro"})
    writer_schema, records = apache_records(response.content)
    assert writer_schema["name"] == "roomservice.Event"
    assert records[0]["type"] == "room.created" and records[0]["position"] == 1
    schema, entity = SCHEMAS.decode_single_object(records[0]["entity"])
    assert schema.name == "roomservice.Room" and entity["id"] == room["id"]


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "after=-1", "wait=31", "type=room.exploded"])
def test_bad_feed_parameters_are_400(client, query):
    assert_problem(client.get(f"/v1/events?{query}"), 400)


def test_a_long_poll_answers_as_soon_as_an_event_commits(live_server, auth):
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        started = time.monotonic()
        assert http.get("/v1/events?wait=0.3").json()["data"] == []
        assert time.monotonic() - started >= 0.3
        result = {}

        def poll():
            result["response"] = http.get("/v1/events?wait=20")
            result["elapsed"] = time.monotonic() - started

        started = time.monotonic()
        poller = threading.Thread(target=poll)
        poller.start()
        time.sleep(0.5)
        with httpx.Client(base_url=live_server.url, timeout=30) as writer:
            assert writer.post("/v1/items", json={"name": "x"}, headers=auth).status_code == 201
        poller.join()
    assert [e["type"] for e in result["response"].json()["data"]] == ["item.created"]
    assert 0.5 <= result["elapsed"] < 5


def test_a_polling_reader_sees_every_committed_event_exactly_once_under_concurrent_writers(live_server, auth, engine):
    writers, per_writer = 6, 25
    done = threading.Event()
    seen: list[int] = []
    failures: list[str] = []

    def write(n: int) -> None:
        with httpx.Client(base_url=live_server.url, timeout=60) as http:
            for i in range(per_writer):
                if i % 3 == 0:
                    r = http.post("/v1/rooms", json=new_room(), headers=auth)
                else:
                    r = http.post("/v1/items", json={"name": f"w{n}-{i}"}, headers=auth)
                if r.status_code != 201:
                    failures.append(r.text)

    def read() -> None:
        after = 0
        with httpx.Client(base_url=live_server.url, timeout=60) as http:
            while True:
                finished = done.is_set()  # read the flag first: one more full pass after the writers end
                page = http.get("/v1/events", params={"after": after, "limit": 7}).json()
                seen.extend(e["position"] for e in page["data"])
                after = page["last_position"]
                if finished and not page["data"]:
                    return

    reader = threading.Thread(target=read)
    reader.start()
    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    reader.join(timeout=120)
    assert not failures
    duplicates = [p for p, count in Counter(seen).items() if count > 1]
    assert not duplicates
    assert seen == table_positions(engine)
    assert len(seen) == writers * per_writer


def outbox_keys(engine) -> list[str]:
    with engine.connect() as connection:
        return connection.execute(sa.text("SELECT key FROM events ORDER BY position")).scalars().all()


def test_the_outbox_writes_at_commit_and_forgets_what_a_rollback_undid(engine):
    from providers.sql_events import SqlOutbox

    with engine.connect() as connection:
        outbox = SqlOutbox(lambda: connection, SCHEMAS)
        outbox.append("room.deleted", "roomservice.Room", "first", None)
        assert outbox_keys(engine) == []  # nothing is written before the commit
        connection.rollback()
        outbox.append("room.deleted", "roomservice.Room", "second", None)
        with connection.begin_nested():
            outbox.append("room.deleted", "roomservice.Room", "third", None)
        assert outbox_keys(engine) == []  # releasing a savepoint is not the commit
        connection.commit()
        outbox.append("room.deleted", "roomservice.Room", "fourth", None)
        connection.commit()
    assert outbox_keys(engine) == ["second", "third", "fourth"]

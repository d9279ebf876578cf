"""A Node consumer of the Avro contract (avsc): container files over HTTP both ways, and the relayed events on RabbitMQ,
each processed in a span that continues the trace of the request that wrote it (OpenTelemetry JS)."""

from __future__ import annotations

import uuid

import pytest

from app import create_app, dispose_app
from contract.avro import AvroSchemas
from relay import Relay
from tests.conftest import API_KEY, LiveServer
from tests.integration.test_relay import relay_settings, run_in_thread, table_event_ids, unpublished, wait_until
from tests.support.entity_check import EntityCheckingClient
from tests.support.factories import MERGE_PATCH, new_room
from tests.support.node_tools import RunningScript, require_node, run_script, tsc
from tests.support.tracing import TRACEPARENT, CapturedSpans, span_id, trace_id, traceparent_of

SCHEMAS = AvroSchemas()


@pytest.fixture(scope="module")
def avro_scripts() -> None:
    """Type-check the Node Avro consumers once: tsx runs TypeScript without checking it."""
    require_node()
    checked = tsc("tsconfig.avro.json")
    assert checked.returncode == 0, f"tsc found type errors:\n{checked.stdout}{checked.stderr}"


def test_node_writes_rooms_with_avsc_and_reads_rooms_and_pages_as_avro(avro_scripts, live_server, client):
    code, summary, stderr = run_script("src/avro/http.ts", ROOMS_URL=live_server.url, ROOMS_API_KEY=API_KEY)
    assert summary["failures"] == [] and code == 0, stderr
    assert summary["checks"] >= 150  # every field of every record, not a handful of spot checks
    # Node computed the fingerprints itself; they are the ones this side computes.
    assert summary["fingerprints"] == {"NewRoom": SCHEMAS.get("NewRoom").fingerprint,
                                       "Room": SCHEMAS.get("Room").fingerprint}
    assert summary["pages"] == [2, 1]
    # The rooms avsc wrote are stored as written, with the schema's defaults where Node left fields out.
    stored = {}
    for created in summary["created"]:
        room = client.get(f"/v1/rooms/{created['id']}").json()
        assert {key: room[key] for key in created["sent"]} == created["sent"]
        assert set(room) - set(created["sent"]) == {"id", "created_at", "updated_at"}
        stored[room["name"]] = room
    assert stored["Avro room 1"]["is_visible"] is False and len(stored["Avro room 1"]["images"]) == 2
    assert stored["Avro room 2"]["is_visible"] is True and stored["Avro room 2"]["images"] == []
    assert "area" not in stored["Avro room 2"] and "coordinates" not in stored["Avro room 3 – ümlaut"]["area"]
    page = client.get("/v1/rooms", params={"provider": summary["provider"], "sort": "-price"}).json()
    assert [room["id"] for room in page["data"]] == summary["order"]


@pytest.fixture
def exchange() -> str:
    """A topic exchange of this test's own, so no other test's events reach its consumer."""
    return f"rooms.events.node.{uuid.uuid4().hex[:8]}"


def make_changes(client, auth) -> list[tuple[str, str]]:
    """Change rooms, an item and a question; return the (type, key) of the events, in commit order."""
    full = client.post("/v1/rooms", json=new_room(images=[{"url": "https://example.com/i.jpg"}]), headers=auth).json()
    bare = client.post("/v1/rooms", json=new_room(area=None), headers=auth).json()
    client.patch(f"/v1/rooms/{full['id']}", content=b'{"price": 7, "area": null}',
                 headers={**auth, "Content-Type": MERGE_PATCH})
    item = client.post("/v1/items", json={"name": "lamp"}, headers=auth).json()
    client.post("/v1/questions", json={"question_code": "42", "category": "c", "message": "m"}, headers=auth)
    client.delete("/v1/questions/42", headers=auth)
    client.delete(f"/v1/rooms/{bare['id']}", headers=auth)
    return [("room.created", full["id"]), ("room.created", bare["id"]), ("room.updated", full["id"]),
            ("item.created", str(item["id"])), ("question.created", "42"), ("question.deleted", "42"),
            ("room.deleted", bare["id"])]


@pytest.fixture
def traced_app(settings):
    """The app with tracing on, and the spans it made."""
    spans = CapturedSpans()
    application = create_app(settings, tracing=spans.tracing)
    yield application, spans
    dispose_app(application)


def test_node_decodes_the_relayed_events_off_rabbitmq_and_continues_each_trace(avro_scripts, traced_app, auth, settings,
                                                                               rabbitmq_url, exchange, engine):
    app, request_spans = traced_app
    client = EntityCheckingClient(app)
    expected = make_changes(client, auth)
    writes = [span for span in request_spans.server_spans() if span.attributes["http.request.method"] != "GET"]
    relay_spans = CapturedSpans()
    with LiveServer(app) as live_server:
        consumer = RunningScript("src/avro/events.ts", ROOMS_URL=live_server.url, AMQP_URL=rabbitmq_url,
                                 EXCHANGE=exchange)
        try:
            # The consumer has bound its queue before the relay publishes anything: nothing can be missed.
            ready = consumer.next_json_line(timeout=30)
            assert ready["ready"] is True and ready["expecting"] == len(expected)
            assert unpublished(engine) == len(expected)
            relay = Relay(relay_settings(settings, rabbitmq_url, exchange), tracing=relay_spans.tracing)
            thread = run_in_thread(relay)
            try:
                wait_until(lambda: unpublished(engine) == 0, timeout=30)
            finally:
                relay.stopping.set()
                thread.join(timeout=30)
            code, summary = consumer.finish(timeout=30)
        finally:
            consumer.stop()
    assert summary["failures"] == [] and code == 0, consumer_output(summary)
    assert summary["event_fingerprint"] == SCHEMAS.get("roomservice.Event").fingerprint
    assert summary["event_ids"] == table_event_ids(engine)
    assert list(zip(summary["types"], summary["keys"], strict=True)) == expected
    assert summary["subjects"] == ["roomservice.Room"] * 3 + ["roomservice.Item"] + ["roomservice.Question"] * 2 + [
        "roomservice.Room"]
    entities = summary["entities"]
    assert entities[2]["price"] == 7 and entities[2]["area"] is None  # the update, decoded from its bytes
    assert entities[3] == {"id": int(expected[3][1]), "name": "lamp"}
    assert entities[5] is None and entities[6] is None  # deletes carry no entity
    # Tracing: each event recorded its request's server span; Node read it in the payload, and continued the
    # trace from the header, whose parent is the relay's publish span (a child of that server span).
    assert len(writes) == len(expected)
    assert summary["traceparents"] == [traceparent_of(span) for span in writes]
    publishes = relay_spans.finished()
    assert [p.parent.span_id for p in publishes] == [w.context.span_id for w in writes]
    assert summary["header_traceparents"] == [traceparent_of(p) for p in publishes]
    assert summary["consumer_spans"] == [{"trace_id": trace_id(w), "parent_id": span_id(p), "remote_parent": True}
                                         for w, p in zip(writes, publishes, strict=True)]
    assert all(TRACEPARENT.fullmatch(header) for header in summary["header_traceparents"])


def consumer_output(summary: dict) -> str:
    """The first mismatches the Node consumer reported, one a line."""
    return "\n".join(summary["failures"][:20])

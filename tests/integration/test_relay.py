"""The relay against a real RabbitMQ broker: ordered, confirmed, at least once, one relay at a time."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator

import avro.io
import avro.schema
import fastavro
import pika
import pytest
import sqlalchemy as sa

import relay as relay_module
from contract.avro import SINGLE_OBJECT_MARKER, AvroSchemas
from providers.database import make_engine
from relay import AmqpPublisher, Relay, publish_pending
from settings import Settings
from tests.support.factories import large_room, new_room
from tests.support.rabbitmq import connect, declare_consumer_queue, drain

SCHEMAS = AvroSchemas()
EVENT = SCHEMAS.get("roomservice.Event")


@pytest.fixture
def exchange() -> str:
    return f"rooms.events.{uuid.uuid4().hex[:8]}"


@pytest.fixture
def queue(rabbitmq_url: str, exchange: str) -> Iterator[str]:
    """A durable queue bound to every event type on this test's exchange."""
    name = f"consumer.{uuid.uuid4().hex[:8]}"
    with connect(rabbitmq_url) as connection:
        declare_consumer_queue(connection.channel(), exchange, name)
    yield name


def relay_settings(settings: Settings, rabbitmq_url: str, exchange: str, **changes) -> Settings:
    from dataclasses import replace

    return replace(settings, amqp_url=rabbitmq_url, relay_exchange=exchange, relay_batch_size=10, **changes)


def decode(body: bytes) -> dict:
    """Decode a message body as a consumer in another language would: marker, fingerprint, datum."""
    assert body[:2] == SINGLE_OBJECT_MARKER and body[2:10].hex() == EVENT.fingerprint
    return fastavro.schemaless_reader(io.BytesIO(body[10:]), EVENT.parsed, None)


def consume_all(rabbitmq_url: str, queue: str, count: int) -> list[tuple[pika.BasicProperties, bytes]]:
    with connect(rabbitmq_url) as connection:
        return drain(connection.channel(), queue, count, timeout=20)


def table_event_ids(engine) -> list[str]:
    with engine.connect() as connection:
        return [str(uuid.UUID(str(v))) for v in connection.execute(sa.text("SELECT event_id FROM events ORDER BY position")).scalars()]


def unpublished(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.text("SELECT count(*) FROM events WHERE published_at IS NULL")).scalar_one()


def make_changes(client, auth, rooms: int = 3) -> None:
    for _ in range(rooms):
        room = client.post("/v1/rooms", json=new_room(), headers=auth).json()
        client.patch(f"/v1/rooms/{room['id']}", content=b'{"price": 7}',
                     headers={**auth, "Content-Type": "application/merge-patch+json"})
    client.post("/v1/questions", json={"question_code": "5", "category": "c", "message": "m"}, headers=auth)
    client.delete("/v1/questions/5", headers=auth)


def publish_everything(database_url: str, rabbitmq_url: str, exchange: str, batch_size: int = 10, tracing=None) -> None:
    """Run relay batches in this thread until nothing is left to publish (traced with `tracing`, if given)."""
    db = make_engine(database_url, pool_size=2)
    publisher = AmqpPublisher(rabbitmq_url, exchange, SCHEMAS, tracing)
    try:
        while publish_pending(db, publisher, batch_size):
            pass
    finally:
        publisher.close()
        db.dispose()


def test_events_arrive_in_order_with_confirmed_persistent_avro_messages(client, auth, settings, rabbitmq_url, exchange,
                                                                         queue, engine):
    make_changes(client, auth)
    publish_everything(settings.database_url, rabbitmq_url, exchange, batch_size=4)
    expected = table_event_ids(engine)
    messages = consume_all(rabbitmq_url, queue, len(expected))
    assert [p.message_id for p, _ in messages] == expected
    assert unpublished(engine) == 0
    apache_schema = avro.schema.parse(json.dumps(EVENT.document))
    room_schema = SCHEMAS.get("Room")
    positions = []
    for properties, body in messages:
        assert properties.delivery_mode == pika.DeliveryMode.Persistent.value
        assert properties.content_type == "application/avro"
        assert properties.headers["avro-schema"] == "roomservice.Event"
        assert properties.headers["avro-fingerprint"] == EVENT.fingerprint
        event = decode(body)
        apache_event = avro.io.DatumReader(apache_schema).read(avro.io.BinaryDecoder(io.BytesIO(body[10:])))
        assert str(event["event_id"]) == properties.message_id == str(apache_event["event_id"])
        assert event["type"] == properties.type == apache_event["type"]
        positions.append(event["position"])
        if event["entity"] is not None:
            assert event["entity"][2:10].hex() == event["entity_fingerprint"]
            if event["subject"] == "roomservice.Room":
                entity = fastavro.schemaless_reader(io.BytesIO(event["entity"][10:]), room_schema.parsed, None)
                assert str(entity["id"]) == event["key"]
    assert positions == sorted(positions)
    assert [decode(b)["type"] for _, b in messages][:2] == ["room.created", "room.updated"]


def test_a_batch_of_large_events_ends_at_the_byte_bound_and_the_next_goes_on(client, auth, settings, rabbitmq_url,
                                                                             exchange, queue, engine):
    for _ in range(5):
        assert client.post("/v1/rooms", json=large_room(), headers=auth).status_code == 201
    db = make_engine(settings.database_url, pool_size=2)
    publisher = AmqpPublisher(rabbitmq_url, exchange, SCHEMAS)
    try:
        # About 30 KB an event: three start under 64 KiB, then the other two; the batch size is never reached.
        counts = [publish_pending(db, publisher, 100, max_batch_bytes=64 * 1024) for _ in range(3)]
    finally:
        publisher.close()
        db.dispose()
    assert counts == [3, 2, 0] and unpublished(engine) == 0
    messages = consume_all(rabbitmq_url, queue, 5)
    assert [properties.message_id for properties, _ in messages] == table_event_ids(engine)


def test_routing_keys_are_event_types(client, auth, settings, rabbitmq_url, exchange):
    with connect(rabbitmq_url) as connection:
        channel = connection.channel()
        channel.exchange_declare(exchange, exchange_type="topic", durable=True)
        only_deletes = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(only_deletes, exchange, routing_key="*.deleted")
        make_changes(client, auth, rooms=1)
        publish_everything(settings.database_url, rabbitmq_url, exchange)
        received = drain(channel, only_deletes, 1)
        assert [decode(body)["type"] for _, body in received] == ["question.deleted"]


def test_a_crash_between_publish_and_mark_becomes_a_duplicate_not_a_loss(client, auth, settings, rabbitmq_url,
                                                                           exchange, queue, engine, monkeypatch):
    make_changes(client, auth, rooms=1)
    db = make_engine(settings.database_url, pool_size=2)
    publisher = AmqpPublisher(rabbitmq_url, exchange, SCHEMAS)

    def crash(*_args, **_kwargs):
        raise RuntimeError("relay died after publishing")

    try:
        monkeypatch.setattr(relay_module, "mark_published", crash)
        with pytest.raises(RuntimeError):
            publish_pending(db, publisher, 100)
        monkeypatch.undo()
        assert unpublished(engine) == 4
        while publish_pending(db, publisher, 100):
            pass
    finally:
        publisher.close()
        db.dispose()
    expected = table_event_ids(engine)
    ids = [p.message_id for p, _ in consume_all(rabbitmq_url, queue, 2 * len(expected))]
    assert ids == expected + expected  # every event twice, in order: duplicates identified by message_id
    assert unpublished(engine) == 0


def run_in_thread(relay: Relay) -> threading.Thread:
    thread = threading.Thread(target=relay.run, daemon=True)
    thread.start()
    return thread


def wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_broker_restart_mid_stream_loses_nothing_and_keeps_order(client, auth, settings, rabbitmq_broker,
                                                                    rabbitmq_url, exchange, queue, engine, caplog):
    relay = Relay(relay_settings(settings, rabbitmq_url, exchange))
    thread = run_in_thread(relay)
    try:
        make_changes(client, auth, rooms=5)
        rabbitmq_broker.restart()  # the relay's connection drops mid-stream
        with caplog.at_level(logging.WARNING, logger="relay"):
            make_changes(client, auth, rooms=5)
            wait_until(lambda: unpublished(engine) == 0)
    finally:
        relay.stopping.set()
        thread.join(timeout=30)
    expected = table_event_ids(engine)
    with connect(rabbitmq_url) as connection:
        channel = connection.channel()
        received = []
        for method, properties, _body in channel.consume(queue, inactivity_timeout=3):
            if method is None:
                break
            channel.basic_ack(method.delivery_tag)
            received.append(properties.message_id)
        channel.cancel()
    first_seen = list(dict.fromkeys(received))
    assert first_seen == expected  # all of them, in order (a resent batch only repeats what came before)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_while_the_broker_is_down_the_relay_retries_and_the_service_keeps_answering(client, auth, settings, caplog,
                                                                                       exchange, engine):
    from tests.support.postgres import free_port

    relay = Relay(relay_settings(settings, f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F", exchange))
    with caplog.at_level(logging.WARNING, logger="relay"):
        thread = run_in_thread(relay)
        try:
            assert client.post("/v1/items", json={"name": "still works"}, headers=auth).status_code == 201
            wait_until(lambda: sum("retrying" in r.message for r in caplog.records) >= 2, timeout=20)
        finally:
            relay.stopping.set()
            thread.join(timeout=30)
    assert unpublished(engine) == 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_several_relays_publish_each_event_once_and_in_order(client, auth, settings, rabbitmq_url, exchange, queue,
                                                              engine):
    relays = [Relay(relay_settings(settings, rabbitmq_url, exchange)) for _ in range(3)]
    threads = [run_in_thread(r) for r in relays]
    try:
        for _ in range(4):
            make_changes(client, auth, rooms=3)
        wait_until(lambda: unpublished(engine) == 0)
    finally:
        for r in relays:
            r.stopping.set()
        for t in threads:
            t.join(timeout=30)
    expected = table_event_ids(engine)
    ids = [p.message_id for p, _ in consume_all(rabbitmq_url, queue, len(expected))]
    assert ids == expected
    assert sum(r.published for r in relays) == len(expected)

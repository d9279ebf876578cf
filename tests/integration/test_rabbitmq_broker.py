"""The throwaway RabbitMQ broker works: topic routing with publisher confirms, and durability across a restart."""

from __future__ import annotations

import uuid

import pika
import pika.exceptions
import pytest

from tests.support.rabbitmq import ThrowawayRabbitMQ, connect, declare_consumer_queue, drain, unique

PERSISTENT = pika.DeliveryMode.Persistent.value  # 2; received properties carry the plain int


def test_topic_routing_with_publisher_confirms(rabbitmq_url: str) -> None:
    exchange, queue = unique("rooms.events"), unique("rooms.created")
    connection = connect(rabbitmq_url)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        declare_consumer_queue(channel, exchange, queue, "rooms.*.created")

        message_id = str(uuid.uuid4())
        body = b'{"room_id": 42}'
        # With confirms on, pika raises if the broker nacks; mandatory makes an unroutable message raise too.
        channel.basic_publish(
            exchange, "rooms.eu.created", body,
            properties=pika.BasicProperties(delivery_mode=PERSISTENT, message_id=message_id,
                                            content_type="application/json"),
            mandatory=True,
        )
        with pytest.raises(pika.exceptions.UnroutableError):
            channel.basic_publish(exchange, "rooms.eu.deleted", b"{}", mandatory=True)

        [(properties, received)] = drain(channel, queue, 1)
        assert received == body
        assert properties.message_id == message_id
        assert properties.delivery_mode == PERSISTENT
        channel.queue_delete(queue)
        channel.exchange_delete(exchange)
    finally:
        connection.close()


def test_persistent_messages_survive_a_broker_restart(rabbitmq_broker: ThrowawayRabbitMQ) -> None:
    url = rabbitmq_broker.url
    exchange, queue = unique("rooms.events"), unique("rooms.outbox")
    sent = {str(uuid.uuid4()): f"event {n}".encode() for n in range(50)}

    connection = connect(url)
    channel = connection.channel()
    channel.confirm_delivery()
    declare_consumer_queue(channel, exchange, queue, "rooms.#")
    for message_id, body in sent.items():
        channel.basic_publish(
            exchange, "rooms.eu.updated", body,
            properties=pika.BasicProperties(delivery_mode=PERSISTENT, message_id=message_id), mandatory=True,
        )
    connection.close()

    rabbitmq_broker.restart()
    assert rabbitmq_broker.url == url

    connection = connect(url)
    try:
        channel = connection.channel()
        assert channel.queue_declare(queue, durable=True, passive=True).method.message_count == len(sent)
        received = drain(channel, queue, len(sent))
        assert {properties.message_id: body for properties, body in received} == sent

        # The exchange and binding came back too: routing still works after the restart.
        channel.confirm_delivery()
        channel.basic_publish(exchange, "rooms.eu.deleted", b"after", mandatory=True)
        [(_, body)] = drain(channel, queue, 1)
        assert body == b"after"
        channel.queue_delete(queue)
        channel.exchange_delete(exchange)
    finally:
        connection.close()

"""One contract for the events: every message the relay publishes is what swagger/asyncapi.yaml says it is.

The expectations are read from the AsyncAPI document (its send operation, channel, bindings, message
headers, AMQP properties and Avro payload), not written here, so a relay change the document does not
describe fails these tests, and so does a document change the relay does not follow.
"""

from __future__ import annotations

import ast
import io
import json
import logging
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
import pika
import pytest
import sqlalchemy as sa
import yaml
from jsonschema import Draft7Validator

import relay as relay_module
from app import create_app, dispose_app
from contract.avro import SINGLE_OBJECT_MARKER, AvroSchemas, crc64_fingerprint
from contract.spec import ASYNCAPI_PATH, load_spec
from relay import Relay
from settings import Settings
from tests.integration.test_relay import publish_everything, relay_settings, run_in_thread, unpublished, wait_until
from tests.support.entity_check import EntityCheckingClient
from tests.support.factories import MERGE_PATCH, new_room
from tests.support.rabbitmq import connect
from tests.support.tracing import CapturedSpans

PROJECT_ROOT = ASYNCAPI_PATH.parent.parent
AVRO_SCHEMA_FORMAT = re.compile(r"application/vnd\.apache\.avro(\+json)?;version=1\.\d+\.\d+")
SCHEMAS = AvroSchemas()


def _resolve(node: Any, document: dict, base: Path) -> Any:
    """Follow a `$ref`: a JSON pointer into the document, or a relative path to a JSON or YAML file."""
    if not (isinstance(node, dict) and "$ref" in node):
        return node
    reference = node["$ref"]
    if reference.startswith("#/"):
        target: Any = document
        for part in reference[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        return _resolve(target, document, base)
    assert "#" not in reference and "://" not in reference, f"unsupported $ref {reference!r}"
    return yaml.safe_load((base / reference).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Received:
    """One message as a consumer gets it."""

    exchange: str
    routing_key: str
    properties: pika.BasicProperties
    body: bytes


class EventsContract:
    """What the AsyncAPI document says about the messages the relay sends, and a check of a message against it."""

    def __init__(self, path: Path = ASYNCAPI_PATH) -> None:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))

        def resolve(node: Any) -> Any:
            return _resolve(node, document, path.parent)

        (operation,) = [op for op in document["operations"].values() if op["action"] == "send"]
        channel = resolve(operation["channel"])
        amqp_channel = channel["bindings"]["amqp"]
        assert amqp_channel["is"] == "routingKey", "the channel's address is a routing key on an exchange"
        self.exchange: dict[str, Any] = amqp_channel["exchange"]
        self.address: str = channel["address"]
        self.parameters: dict[str, dict[str, Any]] = {name: resolve(p) for name, p in channel["parameters"].items()}
        self._address_pattern = re.compile(
            "".join(f"(?P<{part[1:-1]}>.+?)" if part.startswith("{") else re.escape(part)
                    for part in re.split(r"(\{[^}]+\})", self.address) if part) + r"\Z")
        self.publishing: dict[str, Any] = operation["bindings"]["amqp"]
        (message,) = [resolve(m) for m in operation["messages"]]
        self.content_type: str = message.get("contentType", document.get("defaultContentType"))
        self.headers = Draft7Validator(resolve(message["headers"]), format_checker=Draft7Validator.FORMAT_CHECKER)
        self.properties = Draft7Validator(resolve(message["x-amqp-properties"]),
                                          format_checker=Draft7Validator.FORMAT_CHECKER)
        payload = message["payload"]
        assert AVRO_SCHEMA_FORMAT.fullmatch(payload["schemaFormat"]), payload["schemaFormat"]
        self.payload_schema: dict[str, Any] = resolve(payload["schema"])
        self.payload_name = f"{self.payload_schema['namespace']}.{self.payload_schema['name']}"
        self.payload_fingerprint = crc64_fingerprint(self.payload_schema)
        self._payload_parsed = fastavro.parse_schema(self.payload_schema)

    @property
    def routing_keys(self) -> set[str]:
        """Every routing key the channel's address allows (its parameters' enums; one parameter here)."""
        (parameter,) = self.parameters.values()
        return set(parameter["enum"])

    def violations(self, message: Received, exchange: str) -> list[str]:
        """Everything about `message` that the document does not describe; empty when it conforms.

        `exchange` is the one the relay publishes to: the document's by default, a test's own here.
        """
        found: list[str] = []
        properties = message.properties
        headers = properties.headers or {}
        if message.exchange != exchange:
            found.append(f"exchange {message.exchange!r} is not the channel's exchange")
        found += [f"headers: {error.message}" for error in self.headers.iter_errors(headers)]
        basic = {name: value for name, value in vars(properties).items() if value is not None and name != "headers"}
        found += [f"AMQP properties: {error.message}" for error in self.properties.iter_errors(basic)]
        if properties.content_type != self.content_type:
            found.append(f"content type {properties.content_type!r}, not {self.content_type!r}")
        if properties.delivery_mode != self.publishing["deliveryMode"]:
            found.append(f"delivery mode {properties.delivery_mode}, not {self.publishing['deliveryMode']}")
        if (properties.timestamp is not None) != self.publishing["timestamp"]:
            found.append(f"timestamp {properties.timestamp!r} where the binding says timestamp: {self.publishing['timestamp']}")
        record, problems = self._decode(message.body, headers)
        found += problems
        found += self._routing_key_violations(message.routing_key, record, headers)
        if record is not None:
            found += self._described_relations(record, properties, headers, message.routing_key)
        return found

    def _decode(self, body: bytes, headers: dict) -> tuple[dict | None, list[str]]:
        """The payload decoded with the Avro schema the document references, checked to be that schema's."""
        if body[:2] != SINGLE_OBJECT_MARKER:
            return None, [f"body does not start with the single-object marker C3 01: {body[:2].hex()}"]
        fingerprint = body[2:10].hex()
        if fingerprint != self.payload_fingerprint:
            return None, [f"body written with schema fingerprint {fingerprint}, not the document's "
                          f"{self.payload_name} ({self.payload_fingerprint})"]
        problems = []
        if headers.get("avro-fingerprint") != fingerprint:
            problems.append(f"avro-fingerprint header {headers.get('avro-fingerprint')!r} is not the body's {fingerprint}")
        if headers.get("avro-schema") != self.payload_name:
            problems.append(f"avro-schema header {headers.get('avro-schema')!r} is not {self.payload_name}")
        datum = io.BytesIO(body[10:])
        try:
            record = fastavro.schemaless_reader(datum, self._payload_parsed, None)
        except Exception as error:  # noqa: BLE001 - any decoding failure is the finding
            return None, [*problems, f"body does not decode as {self.payload_name}: {error!r}"]
        if datum.read():
            problems.append(f"bytes left over after one {self.payload_name}")
        return record, problems

    def _routing_key_violations(self, routing_key: str, record: dict | None, headers: dict) -> list[str]:
        match = self._address_pattern.match(routing_key)
        if match is None:
            return [f"routing key {routing_key!r} does not match the channel address {self.address!r}"]
        found = []
        for name, value in match.groupdict().items():
            parameter = self.parameters[name]
            if value not in parameter.get("enum", [value]):
                found.append(f"routing key {routing_key!r}: {name} {value!r} is not one of {parameter['enum']}")
            where, _, pointer = parameter.get("location", "").partition("#")
            source = {"$message.payload": record, "$message.header": headers}.get(where)
            if where and source is not None:
                located = source
                for part in pointer.strip("/").split("/"):
                    located = located.get(part) if isinstance(located, dict) else None
                if located != value:
                    found.append(f"routing key {routing_key!r}: {name} is {value!r} but {parameter['location']} is {located!r}")
        return found

    @staticmethod
    def _described_relations(record: dict, properties: pika.BasicProperties, headers: dict, routing_key: str) -> list[str]:
        """The relations the document states in words (message and header descriptions)."""
        found = []
        if properties.message_id != str(record["event_id"]):
            found.append(f"message_id {properties.message_id!r} is not the event_id {record['event_id']}")
        if properties.type != routing_key:
            found.append(f"AMQP type {properties.type!r} is not the routing key {routing_key!r}")
        if headers.get("position") != record["position"]:
            found.append(f"position header {headers.get('position')!r} is not the payload's {record['position']}")
        if properties.timestamp != int(record["occurred_at"].timestamp()):
            found.append(f"timestamp {properties.timestamp} is not occurred_at {record['occurred_at']} in seconds")
        stored, sent = record.get("traceparent"), headers.get("traceparent")
        if stored is not None and sent is None:
            found.append("the payload has a traceparent and the message no traceparent header")
        elif stored is not None and sent.split("-")[1:2] != stored.split("-")[1:2]:
            found.append(f"traceparent header {sent!r} is not in the payload's trace {stored!r}")
        entity = record["entity"]
        if entity is not None:
            subject = SCHEMAS.get(record["subject"])
            if entity[:2] != SINGLE_OBJECT_MARKER or entity[2:10].hex() != record["entity_fingerprint"]:
                found.append("entity is not single-object encoded with its entity_fingerprint")
            elif record["entity_fingerprint"] != subject.fingerprint:
                found.append(f"entity_fingerprint {record['entity_fingerprint']} is not {subject.name}'s")
            else:
                entity_id = fastavro.schemaless_reader(io.BytesIO(entity[10:]), subject.parsed, None)
                key = entity_id.get("id", entity_id.get("question_code"))
                if str(key) != record["key"]:
                    found.append(f"key {record['key']!r} is not the entity's id {key!r}")
        return found


CONTRACT = EventsContract()


def consume(rabbitmq_url: str, queue: str, count: int, timeout: float = 20.0) -> list[Received]:
    """Consume and ack `count` messages with their routing keys, failing if they stop coming."""
    received: list[Received] = []
    with connect(rabbitmq_url) as connection:
        channel = connection.channel()
        for method, properties, body in channel.consume(queue, inactivity_timeout=timeout):
            assert method is not None, f"only {len(received)} of {count} messages arrived"
            channel.basic_ack(method.delivery_tag)
            received.append(Received(method.exchange, method.routing_key, properties, body))
            if len(received) == count:
                break
        channel.cancel()
    return received


@pytest.fixture
def exchange(rabbitmq_url: str) -> str:
    """This test's own exchange, declared as the document declares the relay's."""
    name = f"{CONTRACT.exchange['name']}.{uuid.uuid4().hex[:8]}"
    with connect(rabbitmq_url) as connection:
        # If the relay declared the exchange any other way, its own declaration would now fail
        # (PRECONDITION_FAILED), so the exchange's kind is checked by the broker itself.
        connection.channel().exchange_declare(name, exchange_type=CONTRACT.exchange["type"],
                                              durable=CONTRACT.exchange["durable"],
                                              auto_delete=CONTRACT.exchange["autoDelete"])
    return name


@pytest.fixture
def queue(rabbitmq_url: str, exchange: str) -> str:
    """A queue bound to every routing key of the exchange."""
    name = f"asyncapi.{uuid.uuid4().hex[:8]}"
    with connect(rabbitmq_url) as connection:
        channel = connection.channel()
        channel.queue_declare(name, durable=True)
        channel.queue_bind(name, exchange, routing_key="#")
    return name


def change_every_kind_of_entity(client, auth) -> None:
    """Create, update and delete a room, an item and a question through the API: every event type there is."""
    room = client.post("/v1/rooms", json=new_room(), headers=auth).json()
    assert client.patch(f"/v1/rooms/{room['id']}", content=b'{"price": 7}',
                        headers={**auth, "Content-Type": MERGE_PATCH}).status_code == 200
    assert client.delete(f"/v1/rooms/{room['id']}", headers=auth).status_code == 204
    item = client.post("/v1/items", json={"name": "lamp"}, headers=auth).json()
    assert client.put(f"/v1/items/{item['id']}", json={"name": "desk lamp"}, headers=auth).status_code == 200
    assert client.delete(f"/v1/items/{item['id']}", headers=auth).status_code == 204
    question = {"question_code": "12", "category": "c", "message": "m"}
    assert client.post("/v1/questions", json=question, headers=auth).status_code == 201
    assert client.delete("/v1/questions/12", headers=auth).status_code == 204


def relay_failures(caplog) -> list[str]:
    """What the relay logged as failures so far."""
    return [record.getMessage() for record in caplog.records if record.name == "relay"]


def outbox_event_ids(engine) -> list[str]:
    with engine.connect() as connection:
        ids = connection.execute(sa.text("SELECT event_id FROM events ORDER BY position")).scalars()
        return [str(uuid.UUID(str(event_id))) for event_id in ids]


def test_every_message_the_relay_publishes_is_what_the_asyncapi_document_describes(
        client, auth, settings, rabbitmq_url, exchange, queue, engine, caplog):
    change_every_kind_of_entity(client, auth)
    relay = Relay(relay_settings(settings, rabbitmq_url, exchange))
    with caplog.at_level(logging.WARNING, logger="relay"):
        thread = run_in_thread(relay)
        try:
            # A relay that declares the exchange otherwise than the document is refused by the broker, and says so.
            wait_until(lambda: unpublished(engine) == 0 or relay_failures(caplog))
        finally:
            relay.stopping.set()
            thread.join(timeout=30)
    assert relay_failures(caplog) == []
    expected = outbox_event_ids(engine)
    messages = consume(rabbitmq_url, queue, len(expected))
    assert {m.properties.message_id: CONTRACT.violations(m, exchange) for m in messages} == {event_id: [] for event_id in expected}
    assert [m.properties.message_id for m in messages] == expected  # in position order
    assert {m.routing_key for m in messages} == CONTRACT.routing_keys  # every routing key the document lists, produced


def test_the_relays_default_exchange_is_the_documents():
    assert Settings().relay_exchange == CONTRACT.exchange["name"]


def with_properties(message: Received, **changes: Any) -> Received:
    """The same message with some AMQP properties changed (None removes one)."""
    return Received(message.exchange, message.routing_key, pika.BasicProperties(**{**vars(message.properties), **changes}),
                    message.body)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_message_the_document_does_not_describe_is_reported(client, auth, settings, rabbitmq_url, exchange, queue,
                                                              monkeypatch):
    assert client.post("/v1/items", json={"name": "lamp"}, headers=auth).status_code == 201
    declared = pika.BasicProperties

    def with_an_undeclared_header(**properties):
        return declared(**{**properties, "headers": {**properties["headers"], "schema-version": 2}})

    # A relay change: one more header, which the document does not declare.
    monkeypatch.setattr(relay_module.pika, "BasicProperties", with_an_undeclared_header)
    publish_everything(settings.database_url, rabbitmq_url, exchange)
    monkeypatch.undo()
    (published,) = consume(rabbitmq_url, queue, 1)
    assert CONTRACT.violations(published, exchange) == [
        "headers: Additional properties are not allowed ('schema-version' was unexpected)"]

    conforming = with_properties(published, headers={k: v for k, v in published.properties.headers.items()
                                                      if k != "schema-version"})
    assert CONTRACT.violations(conforming, exchange) == []
    room_schema = SCHEMAS.get("roomservice.Room")
    mutations = {
        "unknown routing key": (Received(exchange, "item.renamed", conforming.properties, conforming.body),
                                "routing key 'item.renamed': eventType 'item.renamed' is not one of"),
        "transient": (with_properties(conforming, delivery_mode=1), "delivery mode 1, not 2"),
        "undeclared property": (with_properties(conforming, priority=5), "AMQP properties: Additional properties"),
        "missing header": (with_properties(conforming, headers={k: v for k, v in conforming.properties.headers.items()
                                                               if k != "position"}),
                           "headers: 'position' is a required property"),
        "another writer schema": (Received(exchange, conforming.routing_key, conforming.properties,
                                           conforming.body[:2] + bytes.fromhex(room_schema.fingerprint) + conforming.body[10:]),
                                  f"body written with schema fingerprint {room_schema.fingerprint}"),
        "another exchange": (Received("amq.topic", conforming.routing_key, conforming.properties, conforming.body),
                             "exchange 'amq.topic' is not the channel's exchange"),
    }
    reported = {what: CONTRACT.violations(message, exchange) for what, (message, _) in mutations.items()}
    for what, (_, expected) in mutations.items():
        assert any(expected in violation for violation in reported[what]), (what, reported[what])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_traced_messages_carry_the_trace_headers_the_document_describes(settings, auth, rabbitmq_url, exchange, queue, engine):
    traced_app = create_app(settings, tracing=CapturedSpans().tracing)
    try:
        change_every_kind_of_entity(EntityCheckingClient(traced_app), auth)
    finally:
        dispose_app(traced_app)
    publish_everything(settings.database_url, rabbitmq_url, exchange, tracing=CapturedSpans().tracing)
    messages = consume(rabbitmq_url, queue, len(outbox_event_ids(engine)))
    assert {m.properties.message_id: CONTRACT.violations(m, exchange) for m in messages} == {
        m.properties.message_id: [] for m in messages}
    assert all("traceparent" in m.properties.headers for m in messages)
    first = messages[0]
    other_trace = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    moved = with_properties(first, headers={**first.properties.headers, "traceparent": other_trace})
    assert CONTRACT.violations(moved, exchange) == [f"traceparent header {other_trace!r} is not in the payload's trace "
                                                    f"{decode_payload(first)['traceparent']!r}"]
    malformed = with_properties(first, headers={**first.properties.headers, "traceparent": "00-abc"})
    assert any(v.startswith("headers: '00-abc' does not match") for v in CONTRACT.violations(malformed, exchange))


def decode_payload(message: Received) -> dict:
    """The message's roomservice.Event record."""
    return fastavro.schemaless_reader(io.BytesIO(message.body[10:]), SCHEMAS.get("roomservice.Event").parsed, None)


def _service_sources() -> Iterator[Path]:
    """The service's own Python files (not tests, tools, migrations or installed packages)."""
    skipped = {"tests", "bench", "migrations", "scripts", "clients", "var", "node_modules"}
    for top in sorted(PROJECT_ROOT.iterdir()):
        if top.name.startswith(".") or top.name in skipped:
            continue
        if top.suffix == ".py":
            yield top
        elif top.is_dir():
            yield from sorted(top.rglob("*.py"))


def event_types_in_code() -> set[str]:
    """Every event type the code appends: the literal first argument of calls to functions taking `event_type` first."""
    trees = [ast.parse(path.read_text(encoding="utf-8"), str(path)) for path in _service_sources()]
    takes_event_type = set()
    for node in (n for tree in trees for n in ast.walk(tree)):
        if isinstance(node, ast.FunctionDef):
            names = [a.arg for a in node.args.args if a.arg != "self"]
            if names[:1] == ["event_type"]:
                takes_event_type.add(node.name)
    found = set()
    for node in (n for tree in trees for n in ast.walk(tree)):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if called in takes_event_type and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    return found


def test_the_routing_keys_the_document_lists_are_the_event_types_the_code_appends():
    in_code = event_types_in_code()
    assert {"room.created", "question.deleted"} <= in_code  # the scan finds what it looks for
    assert CONTRACT.routing_keys == in_code
    assert CONTRACT.routing_keys == set(load_spec()["components"]["schemas"]["EventType"]["enum"])  # and the HTTP feed's


def test_the_payload_is_the_avro_schema_in_schemas_with_the_fingerprint_the_service_publishes():
    event = SCHEMAS.get("roomservice.Event")
    assert CONTRACT.payload_name == event.name
    assert CONTRACT.payload_fingerprint == event.fingerprint
    assert CONTRACT.payload_schema == json.loads((PROJECT_ROOT / "schemas" / "roomservice.Event.avsc").read_text())

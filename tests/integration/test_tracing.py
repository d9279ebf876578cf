"""One trace from the HTTP request through the outbox to the broker (observability/tracing.py, docs/tracing.md).

Through the real stack (HTTP → Connexion → handler → provider → database), with the spans kept in memory;
the relay publishes to the session's RabbitMQ broker. tests/e2e/test_tracing_otlp.py exports over the wire.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from functools import partial

import fastavro
import pytest
import sqlalchemy as sa
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from app import create_app, dispose_app, middleware_stack
from contract.avro import AvroSchemas
from observability.logs import RequestContextFilter, logging_config
from observability.tracing import ServerSpanNaming
from providers.database import make_engine
from relay import AmqpPublisher, publish_pending
from tests.support.entity_check import EntityCheckingClient
from tests.support.factories import MERGE_PATCH, new_room
from tests.support.rabbitmq import connect, declare_consumer_queue, drain
from tests.support.tracing import TRACEPARENT, CapturedSpans, caller_context, span_id, trace_id, traceparent_of

SCHEMAS = AvroSchemas()


@pytest.fixture
def spans() -> CapturedSpans:
    return CapturedSpans()


@pytest.fixture
def traced_app(settings, spans):
    application = create_app(settings, tracing=spans.tracing)
    yield application
    dispose_app(application)


@pytest.fixture
def traced(traced_app) -> EntityCheckingClient:
    """A client of the app with tracing on."""
    return EntityCheckingClient(traced_app)


def stored_trace_context(engine) -> list[tuple[str, str | None, str | None]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(
            sa.text("SELECT type, traceparent, tracestate FROM events ORDER BY position")).all()]


def test_a_create_is_a_server_span_named_create_room_with_its_statements_under_it_and_its_context_in_the_outbox(
        traced, auth, spans, engine, database_url):
    caller, caller_trace, caller_span = caller_context()
    response = traced.post("/v1/rooms", json=new_room(), headers={**auth, "traceparent": caller, "tracestate": "vendor=a1,other=b2"})
    assert response.status_code == 201, response.text

    (server,) = spans.server_spans()
    assert server.name == "create_room"
    # The caller's context honoured: the same trace, and the caller's span is the parent.
    assert trace_id(server) == caller_trace and f"{server.parent.span_id:016x}" == caller_span and server.parent.is_remote
    assert server.context.trace_state.to_header() == "vendor=a1,other=b2"
    attributes = dict(server.attributes)
    assert {key: attributes.get(key) for key in ("http.request.method", "url.path", "url.scheme", "http.route",
                                                  "http.response.status_code")} == {
        "http.request.method": "POST", "url.path": "/v1/rooms", "url.scheme": "http", "http.route": "/v1/rooms",
        "http.response.status_code": 201}
    assert attributes["http.response.header.x-request-id"] == (response.headers["X-Request-ID"],)

    statements = spans.children_of(server)
    assert statements and all(span.kind is SpanKind.CLIENT for span in statements)
    queries = [span.attributes["db.query.text"] for span in statements]
    backend = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    assert {span.attributes["db.system.name"] for span in statements} == {backend}
    assert any(query.startswith("INSERT INTO rooms") for query in queries), queries
    assert any(query.startswith("INSERT INTO events") for query in queries), queries
    assert all(trace_id(span) == caller_trace for span in statements)

    # The outbox row holds the context of the request's server span (and the caller's tracestate).
    assert stored_trace_context(engine) == [("room.created", traceparent_of(server), "vendor=a1,other=b2")]
    (event,) = traced.get("/v1/events").json()["data"]
    assert (event["traceparent"], event["tracestate"]) == (traceparent_of(server), "vendor=a1,other=b2")
    avro = traced.get("/v1/events", headers={"Accept": "application/avro"})
    (record,) = list(fastavro.reader(io.BytesIO(avro.content)))
    assert (record["traceparent"], record["tracestate"]) == (traceparent_of(server), "vendor=a1,other=b2")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_without_a_caller_a_request_starts_a_trace_and_each_span_is_named_by_its_operation_and_route(traced, auth, spans):
    room = traced.post("/v1/rooms", json=new_room(), headers=auth).json()
    assert traced.get(f"/v1/rooms/{room['id']}").status_code == 200
    assert traced.patch(f"/v1/rooms/{room['id']}", content=b'{"price": 3}',
                        headers={**auth, "Content-Type": MERGE_PATCH}).status_code == 200
    assert traced.get("/v1/nowhere").status_code == 404
    assert traced.post("/v1/rooms", json=new_room()).status_code == 401  # answered by Connexion's security, routed first
    servers = spans.server_spans()
    assert [(span.name, span.attributes.get("http.route"), span.attributes["http.response.status_code"]) for span in servers] == [
        ("create_room", "/v1/rooms", 201), ("get_room", "/v1/rooms/{room_id}", 200),
        ("update_room", "/v1/rooms/{room_id}", 200),
        ("GET", None, 404),  # no route: the method alone, never the raw path
        ("create_room", "/v1/rooms", 401),
    ]
    assert all(span.parent is None for span in servers) and len({trace_id(span) for span in servers}) == 5


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_malformed_caller_context_is_ignored_and_a_new_trace_begins(traced, auth, spans, engine):
    response = traced.post("/v1/rooms", json=new_room(), headers={**auth, "traceparent": "00-not-a-context-01"})
    assert response.status_code == 201
    (server,) = spans.server_spans()
    assert server.parent is None
    assert stored_trace_context(engine) == [("room.created", traceparent_of(server), None)]


@pytest.fixture
def access_lines(request):
    """The access log's lines in the given format, written through logging_config's own formatter and filter."""
    access = logging.getLogger("rooms.access")
    previous = access.level
    handlers: list[logging.Handler] = []

    def attach(log_format: str) -> io.StringIO:
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.addFilter(RequestContextFilter())
        handler.setFormatter(logging_config(log_format)["formatters"]["default"]["()"]())
        access.addHandler(handler)
        handlers.append(handler)
        return stream

    access.setLevel(logging.INFO)
    yield attach
    for handler in handlers:
        access.removeHandler(handler)
    access.setLevel(previous)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_log_lines_carry_the_trace_and_span_id_when_tracing(traced, client, auth, spans, access_lines):
    text, json_lines = access_lines("text"), access_lines("json")
    traced_answer = traced.get("/v1/health", headers={"X-Request-ID": "traced-1"})
    (server,) = spans.server_spans()
    untraced_answer = client.get("/v1/health", headers={"X-Request-ID": "untraced-1"})
    assert traced_answer.status_code == untraced_answer.status_code == 200
    traced_text, untraced_text = text.getvalue().splitlines()
    assert f"[traced-1 trace_id={trace_id(server)} span_id={span_id(server)}]" in traced_text
    assert "[untraced-1] GET /v1/health 200" in untraced_text  # tracing off: the line as it always was
    traced_json, untraced_json = (json.loads(line) for line in json_lines.getvalue().splitlines())
    assert (traced_json["request_id"], traced_json["trace_id"], traced_json["span_id"]) == ("traced-1", trace_id(server), span_id(server))
    assert untraced_json["request_id"] == "untraced-1" and "trace_id" not in untraced_json and "span_id" not in untraced_json


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_tracing_off_adds_nothing_to_the_stack_and_records_no_context(client, app, auth, engine, settings):
    caller, _, _ = caller_context()
    assert client.post("/v1/rooms", json=new_room(), headers={**auth, "traceparent": caller}).status_code == 201
    assert stored_trace_context(engine) == [("room.created", None, None)]
    (event,) = client.get("/v1/events").json()["data"]
    assert event["traceparent"] is None and event["tracestate"] is None
    outermost = middleware_stack(settings, app.metrics)[0]
    assert outermost.func.__name__ == "RequestTelemetry"
    traced_stack = middleware_stack(settings, app.metrics, tracing=CapturedSpans().tracing)
    assert [getattr(m, "func", m) for m in traced_stack[:3]] == [OpenTelemetryMiddleware, ServerSpanNaming, outermost.func]
    assert isinstance(traced_stack[0], partial)


# The relay: the publish span continues the request's trace, and the message carries it on.

@pytest.fixture
def exchange() -> str:
    return f"rooms.events.trace.{uuid.uuid4().hex[:8]}"


@pytest.fixture
def queue(rabbitmq_url: str, exchange: str) -> Iterator[str]:
    name = f"trace.{uuid.uuid4().hex[:8]}"
    with connect(rabbitmq_url) as connection:
        declare_consumer_queue(connection.channel(), exchange, name, durable=False)
        yield name


def relay_all(database_url: str, rabbitmq_url: str, exchange: str, tracing=None) -> None:
    db = make_engine(database_url, pool_size=1)
    publisher = AmqpPublisher(rabbitmq_url, exchange, SCHEMAS, tracing)
    try:
        while publish_pending(db, publisher, 100):
            pass
    finally:
        publisher.close()
        db.dispose()


def process(tracer, exchange: str, routing_key: str, properties, handle) -> None:
    """How a Python consumer continues the trace: docs/tracing.md shows this code."""
    parent = TraceContextTextMapPropagator().extract(properties.headers or {})
    with tracer.start_as_current_span(f"process {exchange}", context=parent, kind=SpanKind.CONSUMER, attributes={
            "messaging.system": "rabbitmq", "messaging.operation.type": "process",
            "messaging.rabbitmq.destination.routing_key": routing_key}):
        handle()


def received(rabbitmq_url: str, queue: str, count: int) -> list:
    with connect(rabbitmq_url) as connection:
        return drain(connection.channel(), queue, count)


def test_the_relay_publishes_in_a_producer_span_under_the_request_and_the_message_carries_its_trace(
        traced, auth, spans, settings, rabbitmq_url, exchange, queue):
    caller, caller_trace, _ = caller_context()
    room = traced.post("/v1/rooms", json=new_room(), headers={**auth, "traceparent": caller, "tracestate": "vendor=a1"}).json()
    traced.delete(f"/v1/rooms/{room['id']}", headers=auth)  # no caller: a trace of its own
    create, delete = spans.server_spans()
    relay_spans = CapturedSpans()  # the relay is another process: its own provider
    relay_all(settings.database_url, rabbitmq_url, exchange, relay_spans.tracing)

    messages = received(rabbitmq_url, queue, 2)
    publishes = relay_spans.finished()
    assert [span.name for span in publishes] == [f"publish {exchange}"] * 2
    for (properties, body), publish, request in zip(messages, publishes, (create, delete), strict=True):
        assert publish.kind is SpanKind.PRODUCER
        # A child of the request's server span, through the context the outbox stored.
        assert trace_id(publish) == trace_id(request) and publish.parent.span_id == request.context.span_id
        # The message names the publish span as the consumer's parent.
        assert properties.headers["traceparent"] == traceparent_of(publish)
        record = fastavro.schemaless_reader(io.BytesIO(body[10:]), SCHEMAS.get("roomservice.Event").parsed, None)
        assert record["traceparent"] == traceparent_of(request)
        attributes = dict(publish.attributes)
        assert attributes == {
            "messaging.system": "rabbitmq", "messaging.operation.type": "send", "messaging.operation.name": "publish",
            "messaging.destination.name": exchange, "messaging.rabbitmq.destination.routing_key": record["type"],
            "messaging.message.id": properties.message_id, "messaging.message.body.size": len(body),
            "server.address": "127.0.0.1", "server.port": attributes["server.port"], "network.protocol.name": "amqp",
        }
    assert trace_id(create) == caller_trace
    assert [TRACEPARENT.fullmatch(p.headers["traceparent"])["trace_id"] for p, _ in messages] == [caller_trace, trace_id(delete)]
    assert messages[0][0].headers["tracestate"] == "vendor=a1" and "tracestate" not in messages[1][0].headers

    consumer = CapturedSpans()
    for properties, _ in messages:
        process(consumer.tracing.tracer("consumer"), exchange, properties.type, properties, lambda: None)
    assert [(trace_id(span), span.parent.span_id) for span in consumer.finished()] == [
        (trace_id(publish), publish.context.span_id) for publish in publishes]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_relay_without_tracing_forwards_the_stored_context_and_without_any_sends_none(
        traced, client, auth, spans, settings, rabbitmq_url, exchange, queue):
    traced.post("/v1/rooms", json=new_room(), headers=auth)  # written while tracing
    client.post("/v1/rooms", json=new_room(), headers=auth)  # written by an app that does not trace
    (request,) = spans.server_spans()
    relay_all(settings.database_url, rabbitmq_url, exchange)
    (traced_message, _), (untraced_message, body) = received(rabbitmq_url, queue, 2)
    assert traced_message.headers["traceparent"] == traceparent_of(request)
    assert "traceparent" not in untraced_message.headers and "tracestate" not in untraced_message.headers
    record = fastavro.schemaless_reader(io.BytesIO(body[10:]), SCHEMAS.get("roomservice.Event").parsed, None)
    assert record["traceparent"] is None and record["tracestate"] is None

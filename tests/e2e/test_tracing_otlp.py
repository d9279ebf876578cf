"""The wire path of tracing: `python serve.py` and `python relay.py`, configured by OTEL_* variables only, export
over OTLP/HTTP to a receiver the test runs, and the trace of one create goes from the caller to the broker."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid

import httpx

from tests.conftest import API_KEY
from tests.support.factories import new_room
from tests.support.otlp import OtlpReceiver
from tests.support.rabbitmq import connect, declare_consumer_queue, drain
from tests.support.serve_process import PROJECT_ROOT, ServeProcess
from tests.support.tracing import TRACEPARENT, caller_context

SERVER, CLIENT, PRODUCER = 2, 3, 4  # OTLP's span kinds


def test_serve_and_the_relay_export_one_trace_of_a_create_over_otlp_http(tmp_path, rabbitmq_url):
    database_url = f"sqlite:///{tmp_path / 'rooms.sqlite3'}"
    exchange, queue = f"rooms.events.otlp.{uuid.uuid4().hex[:8]}", f"otlp.{uuid.uuid4().hex[:8]}"
    caller, caller_trace, caller_span = caller_context()
    with OtlpReceiver() as receiver:
        exporting = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "50",
                     "OTEL_TRACES_EXPORTER": "", "OTEL_SDK_DISABLED": ""}
        served = ServeProcess(database_url, tmp_path / "serve.log", APP_WORKERS="2", OTEL_SERVICE_NAME="rooms-e2e", **exporting)
        with served:
            created = httpx.post(f"{served.url}/v1/rooms", json=new_room(), timeout=10,
                                 headers={"X-API-Key": API_KEY, "X-Request-ID": "otlp-create", "traceparent": caller})
            assert created.status_code == 201, created.text
            spans = receiver.wait_for(lambda got: any(s.trace_id == caller_trace and s.span.kind == SERVER for s in got))
            log = served.output()
        (server,) = [s for s in spans if s.trace_id == caller_trace and s.span.kind == SERVER]
        assert server.span.name == "create_room" and server.parent_id == caller_span
        assert server.resource["service.name"] == "rooms-e2e" and server.content_type == "application/x-protobuf"
        assert {key: server.attributes[key] for key in ("http.request.method", "http.route", "http.response.status_code")} == {
            "http.request.method": "POST", "http.route": "/v1/rooms", "http.response.status_code": 201}
        statements = [s for s in spans if s.parent_id == server.span_id]
        assert {s.span.kind for s in statements} == {CLIENT}
        assert any(s.attributes["db.query.text"].startswith("INSERT INTO events") for s in statements)
        assert "tracing to otlp" in log
        (access_line,) = [line for line in log.splitlines() if "[otlp-create " in line]
        assert f"trace_id={caller_trace} span_id={server.span_id}]" in access_line

        # The relay, its own process with its own provider, continues the trace from the stored context.
        with connect(rabbitmq_url) as connection:
            channel = connection.channel()
            declare_consumer_queue(channel, exchange, queue, durable=False)
            relay = subprocess.Popen(
                [sys.executable, "relay.py"], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                env={**served.environment, "AMQP_URL": rabbitmq_url, "RELAY_EXCHANGE": exchange, "OTEL_SERVICE_NAME": "",
                     "OTEL_EXPORTER_OTLP_ENDPOINT": "", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{receiver.url}/v1/traces"})
            try:
                ((properties, _body),) = drain(channel, queue, 1, timeout=30)
            finally:
                relay.send_signal(signal.SIGTERM)
                relay_output, _ = relay.communicate(timeout=30)
        assert relay.returncode == 0, relay_output.decode()
        spans = receiver.wait_for(lambda got: any(s.span.kind == PRODUCER for s in got))
        (publish,) = [s for s in spans if s.span.kind == PRODUCER]
        assert publish.span.name == f"publish {exchange}" and publish.resource["service.name"] == "rooms-relay"
        assert (publish.trace_id, publish.parent_id) == (caller_trace, server.span_id)
        assert publish.attributes["messaging.rabbitmq.destination.routing_key"] == "room.created"
        header = TRACEPARENT.fullmatch(properties.headers["traceparent"])
        assert (header["trace_id"], header["parent_id"]) == (caller_trace, publish.span_id)

"""Tracing's configuration: the standard OTEL_* variables, off by default (observability/tracing.py, docs/tracing.md)."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.sdk.resources import SERVICE_NAME

import relay
import serve
from contract.avro import AvroSchemas
from contract.spec import load_spec
from observability.tracing import (
    MAX_TRACESTATE,
    TracingConfigurationError,
    bounded_tracestate,
    exporters_from_env,
    operation_routes,
    tracing_from_env,
)
from providers.events import TraceContext
from providers.memory_events import InMemoryEvents

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}


@pytest.mark.parametrize(("environ", "exporters"), [
    ({}, ()),  # off by default, unlike the SDK's own default exporter (otlp)
    ({"OTEL_SERVICE_NAME": "rooms", "OTEL_TRACES_SAMPLER": "always_on"}, ()),  # naming a service turns nothing on
    (ENDPOINT, ("otlp",)),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, ("otlp",)),
    ({"OTEL_TRACES_EXPORTER": "console"}, ("console",)),
    ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ("otlp", "console")),
    ({**ENDPOINT, "OTEL_TRACES_EXPORTER": "none"}, ()),
    ({**ENDPOINT, "OTEL_SDK_DISABLED": "true"}, ()),
    ({**ENDPOINT, "OTEL_SDK_DISABLED": "false"}, ("otlp",)),
    ({**ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, ("otlp",)),
    # The signal's own protocol variable wins over the general one, as the specification says.
    ({**ENDPOINT, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, ("otlp",)),
])
def test_tracing_is_on_only_when_an_exporter_or_an_endpoint_is_configured(environ, exporters):
    assert exporters_from_env(environ) == exporters


@pytest.mark.parametrize(("environ", "message"), [
    ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER must be a list of otlp, console (or none), got 'zipkin'"),
    ({**ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf"),
])
def test_a_configuration_this_service_cannot_follow_names_the_variable(environ, message):
    with pytest.raises(TracingConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        exporters_from_env(environ)


def test_serve_and_the_relay_stop_before_starting_on_a_bad_tracing_variable(monkeypatch, caplog):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "jaeger")
    with caplog.at_level(logging.ERROR):
        assert serve.main() == 2
        assert relay.main() == 2
    assert caplog.text.count("OTEL_TRACES_EXPORTER must be a list of otlp, console (or none), got 'jaeger'") == 2


def resource_of(default_service_name: str) -> dict:
    tracing = tracing_from_env(default_service_name)
    assert tracing is not None
    tracing.shutdown()  # its exporter's thread
    return dict(tracing.provider.resource.attributes)


def test_the_service_name_defaults_to_the_process_and_follows_otel_service_name(monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    assert resource_of("rooms-relay")[SERVICE_NAME] == "rooms-relay"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "rooms-eu-1")
    assert resource_of("rooms-relay")[SERVICE_NAME] == "rooms-eu-1"
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=rooms-eu-2,deployment.environment=test")
    resource = resource_of("rooms-relay")
    assert (resource[SERVICE_NAME], resource["deployment.environment"]) == ("rooms-eu-2", "test")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert tracing_from_env("rooms-relay") is None


def test_a_long_tracestate_is_cut_as_w3c_says_long_entries_first_then_from_the_end():
    assert bounded_tracestate(None) is None and bounded_tracestate("") is None
    assert bounded_tracestate("a=1,b=2") == "a=1,b=2"
    long_entry = "big=" + "x" * 200
    entries = [f"k{n}={'v' * 40}" for n in range(20)]  # 20 entries of 44 characters: 899 with the commas
    cut = bounded_tracestate(",".join([entries[0], long_entry, *entries[1:]]))
    assert len(cut) <= MAX_TRACESTATE and "big=" not in cut
    assert cut == ",".join(entries[:11])  # the first ones kept, in order: 11 × 44 + 10 commas = 494
    assert bounded_tracestate(long_entry + ",z=" + "y" * 400) is None  # nothing short enough to keep


def test_every_operation_of_the_spec_has_its_route_template():
    spec = load_spec()
    routes = operation_routes(spec, "/v1")
    operation_ids = {op["operationId"] for item in spec["paths"].values() for op in item.values()
                     if isinstance(op, dict) and "operationId" in op}
    assert set(routes) == operation_ids
    assert routes["get_room"] == "/v1/rooms/{room_id}" and routes["create_room"] == "/v1/rooms"


def test_the_in_memory_outbox_records_the_trace_context_as_the_sql_one_does():
    contexts = iter([TraceContext("00-" + "a" * 32 + "-" + "b" * 16 + "-01", "vendor=1"), None])
    events = InMemoryEvents(AvroSchemas(), lambda: next(contexts))
    events.append("item.created", "Item", "1", {"id": 1, "name": "lamp"})
    events.append("item.deleted", "Item", "1", None)
    traced, untraced = events.read(0, 10)
    assert (traced.traceparent, traced.tracestate) == ("00-" + "a" * 32 + "-" + "b" * 16 + "-01", "vendor=1")
    assert traced.as_record()["traceparent"] == traced.traceparent
    assert (untraced.traceparent, untraced.tracestate) == (None, None)

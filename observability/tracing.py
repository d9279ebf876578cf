"""OpenTelemetry tracing: off unless the standard OTEL_* variables ask for it; one tracer provider per process.

On (docs/tracing.md) when OTEL_SDK_DISABLED is not true and either OTEL_TRACES_EXPORTER names an exporter
(`otlp`, `console`; `none` is off) or an OTLP endpoint is set (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
OTEL_EXPORTER_OTLP_ENDPOINT). Everything else (service name, sampler, propagators, batching, headers) the
SDK reads from its own variables. Off, nothing of this module is in a request's path: no middleware, no
statement listeners, and outboxes get no trace-context source.

On, a request gets a server span from opentelemetry-instrumentation-asgi in front of Connexion's stack
(Connexion's FlaskApp breaks Flask's instrumentation, connexion issue #2036), renamed to the operationId
once Connexion has routed it; the app's engine gets statement spans from opentelemetry-instrumentation-sqlalchemy;
each outbox event records the W3C context of the span that wrote it, and the relay continues it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from functools import partial

from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.http import get_excluded_urls
from sqlalchemy import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from observability.request_ids import routed_operation_id
from providers.events import TraceContext

DISABLED = "OTEL_SDK_DISABLED"
EXPORTER = "OTEL_TRACES_EXPORTER"
ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
PROTOCOLS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
SEMCONV_OPT_IN = "OTEL_SEMCONV_STABILITY_OPT_IN"
EXPORTERS = ("otlp", "console")
MAX_TRACESTATE = 512  # W3C: propagate at least 512 characters; the outbox column holds this many
_LONG_TRACESTATE_ENTRY = 128  # W3C: when truncating, drop entries longer than this first
_W3C = TraceContextTextMapPropagator()


class TracingConfigurationError(ValueError):
    """Raised when the OTEL_* variables ask for tracing this service cannot do."""


def exporters_from_env(environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """Return the trace exporters the OTEL_* variables ask for; empty when tracing is off.

    Unlike the SDK's default (`otlp`), an unset OTEL_TRACES_EXPORTER means off unless an OTLP endpoint is
    set: a service started with no OpenTelemetry variables must not try to reach a collector.
    """
    if environ.get(DISABLED, "").strip().lower() == "true":
        return ()
    named = [name.strip().lower() for name in environ.get(EXPORTER, "").split(",") if name.strip()]
    if not named:
        named = ["otlp"] if any(environ.get(name) for name in ENDPOINTS) else []
    if named == ["none"]:
        return ()
    unknown = [name for name in named if name not in EXPORTERS]
    if unknown:
        raise TracingConfigurationError(f"{EXPORTER} must be a list of {', '.join(EXPORTERS)} (or none), got {environ[EXPORTER]!r}")
    if "otlp" in named:
        for variable in PROTOCOLS:
            protocol = environ.get(variable)
            if protocol and protocol != "http/protobuf":
                raise TracingConfigurationError(f"{variable} must be http/protobuf (the OTLP exporter installed), got {protocol!r}")
            if protocol:
                break
    return tuple(dict.fromkeys(named))


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    # Imported only when used: it brings requests and protobuf.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout, compression: OTEL_EXPORTER_OTLP_* (the SDK reads them)


class Tracing:
    """A process's tracing: the tracer provider, and what the service instruments with it."""

    def __init__(self, provider: TracerProvider) -> None:
        # The instrumentations emit the deprecated HTTP and database attribute names unless this opts in to
        # the stable ones; an operator's own OTEL_SEMCONV_STABILITY_OPT_IN (e.g. `http/dup`) is kept. It is
        # read once per process, by the first instrumentation built.
        os.environ.setdefault(SEMCONV_OPT_IN, "http,database")
        self.provider = provider
        self._meters = NoOpMeterProvider()  # the service's metrics are Prometheus's (observability/metrics.py)

    def tracer(self, name: str) -> trace.Tracer:
        """Return a tracer of this provider for the instrumenting module `name`."""
        return self.provider.get_tracer(name)

    def server_middleware(self, routes: Mapping[str, str]) -> list[Callable[[ASGIApp], ASGIApp]]:
        """Return the ASGI middleware that gives each request its server span, outermost first.

        `routes` maps each operationId to its path template (`http.route`). URLs in
        OTEL_PYTHON_ASGI_EXCLUDED_URLS (or OTEL_PYTHON_EXCLUDED_URLS) get no span.
        """
        return [
            partial(
                OpenTelemetryMiddleware, tracer_provider=self.provider, meter_provider=self._meters,
                excluded_urls=get_excluded_urls("ASGI"), default_span_details=_method_only,
                # The receive and send of each body chunk as spans of their own: noise for this service.
                exclude_spans=["receive", "send"],
            ),
            partial(ServerSpanNaming, routes=routes),
        ]

    def instrument_engine(self, engine: Engine) -> None:
        """Give every statement run on `engine` a client span (opentelemetry-instrumentation-sqlalchemy)."""
        # Per engine, with this provider: SQLAlchemyInstrumentor().instrument() is once per process and also
        # wraps create_engine and Engine.connect for every engine after it (docs/library-internals.md).
        usage = self._meters.get_meter(__name__).create_up_down_counter("db.client.connections.usage")
        EngineTracer(self.tracer("opentelemetry.instrumentation.sqlalchemy"), engine, usage)

    @staticmethod
    def trace_context() -> TraceContext | None:
        """Return the W3C trace context of the current span, for the outbox; None outside a valid span."""
        carrier: dict[str, str] = {}
        _W3C.inject(carrier)
        traceparent = carrier.get("traceparent")
        if traceparent is None:
            return None
        return TraceContext(traceparent, bounded_tracestate(carrier.get("tracestate")))

    def force_flush(self, timeout_millis: int = 5000) -> None:
        """Export the spans still queued (before a process stops), waiting at most `timeout_millis`."""
        # Bounded: a stopping worker or relay must not wait out the exporter's retries on an absent collector.
        self.provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Export what is queued and stop the exporters."""
        self.provider.shutdown()


def bounded_tracestate(tracestate: str | None) -> str | None:
    """Return `tracestate` cut to MAX_TRACESTATE characters as W3C says: long entries first, then from the end."""
    if not tracestate or len(tracestate) <= MAX_TRACESTATE:
        return tracestate or None
    entries = [entry for entry in tracestate.split(",") if len(entry) <= _LONG_TRACESTATE_ENTRY]
    while entries and len(",".join(entries)) > MAX_TRACESTATE:
        entries.pop()
    return ",".join(entries) or None


def tracing_from_env(default_service_name: str) -> Tracing | None:
    """Build the tracing the OTEL_* variables configure, or return None when they leave it off.

    The SDK reads its variables from the process's environment, so this does too.
    """
    exporters = exporters_from_env(os.environ)
    if not exporters:
        return None
    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = Resource.create({**resource.attributes, SERVICE_NAME: default_service_name})
    provider = TracerProvider(resource=resource)  # the sampler: OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG
    for name in exporters:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))  # OTEL_BSP_*
    return Tracing(provider)


_process_tracing: dict[int, Tracing | None] = {}


def process_tracing(default_service_name: str) -> Tracing | None:
    """Return this process's tracing, configured from the environment on the first call (each uvicorn worker has its own).

    It is also installed as OpenTelemetry's global tracer provider, so code of the service's users that asks
    `opentelemetry.trace.get_tracer(...)` gets spans in the same traces.
    """
    pid = os.getpid()
    if pid not in _process_tracing:
        tracing = _process_tracing[pid] = tracing_from_env(default_service_name)
        if tracing is not None:
            trace.set_tracer_provider(tracing.provider)
    return _process_tracing[pid]


def _method_only(scope: Scope) -> tuple[str, dict]:
    # The name until routing has happened, and for what is never routed (404s, /metrics, the docs): the
    # HTTP semantic conventions name a span without a route by its method alone, never by its raw path.
    return scope.get("method", "HTTP"), {}


class ServerSpanNaming:
    """Name the server span by the operationId Connexion routed the request to, with its `http.route`.

    It sits right inside the OpenTelemetry middleware, whose span ends with the last body chunk sent, so the
    name is set when the response starts, after routing. The operationId comes from the scope extensions
    Connexion's routing writes to (observability/request_ids.py); this middleware creates that dict, so
    routing's shallow copy of the scope shares it. The response's X-Request-ID (observability/telemetry.py)
    is recorded as `http.response.header.x-request-id`, linking the span to the request's logs.
    """

    def __init__(self, app: ASGIApp, *, routes: Mapping[str, str]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        span = trace.get_current_span()
        if scope["type"] != "http" or not span.is_recording():
            await self.app(scope, receive, send)
            return
        extensions = scope.get("extensions")
        if extensions is None:
            extensions = scope["extensions"] = {}

        async def send_naming_span(message: Message) -> None:
            if message["type"] == "http.response.start":
                operation_id = routed_operation_id(extensions)
                if operation_id is not None:
                    span.update_name(operation_id)
                    route = self.routes.get(operation_id)
                    if route is not None:
                        span.set_attribute("http.route", route)
                request_ids = [value.decode("latin-1") for name, value in message.get("headers", ()) if name == b"x-request-id"]
                if request_ids:
                    span.set_attribute("http.response.header.x-request-id", request_ids)
            await send(message)

        await self.app(scope, receive, send_naming_span)


def operation_routes(spec: Mapping, base_path: str, methods: Iterable[str] = ("get", "put", "post", "delete", "patch", "head", "options")) -> dict[str, str]:
    """Map each operationId of an OpenAPI document to its path template under `base_path` (`http.route`)."""
    return {
        operation["operationId"]: f"{base_path}{path}"
        for path, item in spec.get("paths", {}).items()
        for method, operation in item.items()
        if method in methods and isinstance(operation, Mapping) and "operationId" in operation
    }

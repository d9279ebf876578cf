"""The outbox relay: publishes committed events to a RabbitMQ topic exchange, in order, at least once.

Run with `make relay` (or `python relay.py`); configure with DATABASE_URL/APP_DB_*, AMQP_URL and
RELAY_EXCHANGE. Several relays may run against one database: one publishes at a time. With the service's
PROMETHEUS_MULTIPROC_DIR, its counters appear in the service's /metrics (docs/operations.md, Metrics). With the
OTEL_* variables (docs/tracing.md), each message is published in a span that continues the trace of the
request that wrote its event, and carries that trace on in its `traceparent` header.
"""

from __future__ import annotations

import logging
import logging.config
import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Sequence

import pika
import pika.exceptions
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from contract.avro import AvroSchemas
from observability.logs import logging_config
from observability.metrics import MULTIPROC_DIR_VARIABLE, RELAY_FAILURES, RELAY_PUBLISHED
from observability.tracing import Tracing, TracingConfigurationError, process_tracing
from providers.database import make_engine
from providers.events import EVENT_SCHEMA, Event
from providers.paging import DEFAULT_MAX_PAGE_BYTES
from providers.sql_events import claim_unpublished, mark_published
from settings import ConfigurationError, Settings

logger = logging.getLogger("relay")

CONTENT_TYPE = "application/avro"
"""The body is one roomservice.Event in Avro single-object encoding (C3 01, fingerprint, datum)."""

IDLE_SECONDS = 0.2
MAX_BACKOFF_SECONDS = 30.0
SERVICE_NAME = "rooms-relay"
"""OpenTelemetry's service.name of the relay's spans unless OTEL_SERVICE_NAME says otherwise."""
_W3C = TraceContextTextMapPropagator()  # the outbox stores W3C trace context, and the headers carry it


class AmqpPublisher:
    """Publishes events as persistent messages to a durable topic exchange, waiting for broker confirms.

    With `tracing`, each message is published in a PRODUCER span, a child of the trace context its event
    recorded (the writing request's server span), and its `traceparent`/`tracestate` headers are that
    span's. A child rather than a link: a consumer then continues one trace from the HTTP request through
    the relay to itself, which is what an operator following a change asks for; the delay the outbox adds
    shows as the gap between the request's spans and the publish span. Without tracing, the event's own
    recorded context is sent as it is, so consumers still join the writer's trace.
    """

    def __init__(self, amqp_url: str, exchange: str, schemas: AvroSchemas, tracing: Tracing | None = None) -> None:
        self._parameters = pika.URLParameters(amqp_url)
        self._parameters.blocked_connection_timeout = 30
        self._parameters.connection_attempts = 1
        self._exchange = exchange
        self._schemas = schemas
        self._tracer = tracing.tracer(__name__) if tracing is not None else None
        self._connection: pika.BlockingConnection | None = None
        self._channel = None

    def _ensure_channel(self):
        if self._channel is None or not self._channel.is_open:
            self.close()
            self._connection = pika.BlockingConnection(self._parameters)
            channel = self._channel = self._connection.channel()
            channel.exchange_declare(self._exchange, exchange_type="topic", durable=True)
            channel.confirm_delivery()
        return self._channel

    def publish(self, events: Sequence[Event]) -> None:
        """Publish the events in order; return only once the broker has confirmed every one."""
        channel = self._ensure_channel()
        schema = self._schemas.get(EVENT_SCHEMA)
        for event in events:
            headers = {
                "avro-encoding": "single-object",
                "avro-schema": schema.name,
                "avro-fingerprint": schema.fingerprint,
                "position": event.position,
            }
            properties = pika.BasicProperties(
                content_type=CONTENT_TYPE,
                delivery_mode=pika.DeliveryMode.Persistent,
                message_id=event.event_id,
                type=event.type,
                timestamp=int(event.occurred_at.timestamp()),
                app_id="rooms-service",
                headers=headers,
            )
            body = self._schemas.encode_single_object(EVENT_SCHEMA, event.as_record())
            if self._tracer is None:
                if event.traceparent is not None:
                    headers["traceparent"] = event.traceparent
                    if event.tracestate is not None:
                        headers["tracestate"] = event.tracestate
                self._publish(channel, event, body, properties)
                continue
            with self._tracer.start_as_current_span(
                f"publish {self._exchange}", context=_recorded_context(event), kind=trace.SpanKind.PRODUCER,
                attributes=self._span_attributes(event, body),
            ):
                _W3C.inject(headers)  # the publish span's context: the consumer's parent
                self._publish(channel, event, body, properties)

    def _publish(self, channel, event: Event, body: bytes, properties: pika.BasicProperties) -> None:
        # With confirms on, basic_publish blocks until the broker acks, and raises on a nack.
        channel.basic_publish(self._exchange, event.type, body, properties)

    def _span_attributes(self, event: Event, body: bytes) -> dict[str, str | int]:
        # The OpenTelemetry semantic conventions for messaging spans, RabbitMQ's part included.
        return {
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "send",
            "messaging.operation.name": "publish",
            "messaging.destination.name": self._exchange,
            "messaging.rabbitmq.destination.routing_key": event.type,
            "messaging.message.id": event.event_id,
            "messaging.message.body.size": len(body),
            "server.address": self._parameters.host,
            "server.port": self._parameters.port,
            "network.protocol.name": "amqp",
        }

    def close(self) -> None:
        """Close the connection, ignoring a broker that is already gone."""
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except pika.exceptions.AMQPError:
                pass


def _recorded_context(event: Event):
    """The OpenTelemetry context of the trace the event recorded (an empty context, a new trace, if none)."""
    carrier = {"traceparent": event.traceparent} if event.traceparent is not None else {}
    if event.tracestate is not None:
        carrier["tracestate"] = event.tracestate
    return _W3C.extract(carrier)


def publish_pending(engine: Engine, publisher: AmqpPublisher, batch_size: int,
                    max_batch_bytes: int = DEFAULT_MAX_PAGE_BYTES) -> int:
    """Publish one batch of unpublished events and mark them; return how many went out (0 if none or not our turn)."""
    try:
        events = _publish_batch(engine, publisher, batch_size, max_batch_bytes)
    except Exception as error:
        RELAY_FAILURES.labels(failure_reason(error)).inc()
        raise
    for event_type, count in Counter(event.type for event in events).items():
        RELAY_PUBLISHED.labels(event_type).inc(count)
    return len(events)


def _publish_batch(engine: Engine, publisher: AmqpPublisher, batch_size: int, max_batch_bytes: int) -> list[Event]:
    with engine.connect() as connection:
        events = claim_unpublished(connection, batch_size, max_batch_bytes)
        if not events:
            connection.rollback()
            return []
        publisher.publish(events)
        # Marked only after every confirm: a crash before this commit re-publishes (a duplicate), never loses.
        mark_published(connection, [event.position for event in events])
        connection.commit()
        return events


class Relay:
    """The relay loop with exponential backoff while the broker or the database is unavailable."""

    def __init__(self, settings: Settings, schemas: AvroSchemas | None = None, tracing: Tracing | None = None) -> None:
        self._settings = settings
        self._engine = make_engine(settings.database_url, pool_size=1)
        self._publisher = AmqpPublisher(settings.amqp_url, settings.relay_exchange, schemas or AvroSchemas(), tracing)
        self._tracing = tracing
        self.stopping = threading.Event()
        self.published = 0

    def run(self) -> None:
        """Publish until `stopping` is set."""
        backoff = 0.5
        logger.info("Relaying events to exchange %r", self._settings.relay_exchange)
        try:
            while not self.stopping.is_set():
                try:
                    count = publish_pending(self._engine, self._publisher, self._settings.relay_batch_size,
                                            self._settings.max_page_bytes)
                    backoff = 0.5
                except Exception as error:  # noqa: BLE001 - a relay must outlive surprises; nothing was marked
                    self._publisher.close()
                    _log_failure(error, backoff)
                    self.stopping.wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                    continue
                self.published += count
                if count == 0:  # a batch cut short by its size is followed at once by the next
                    self.stopping.wait(IDLE_SECONDS)
        finally:
            self._publisher.close()
            self._engine.dispose()
            if self._tracing is not None:
                self._tracing.force_flush()
            logger.info("Relay stopped after publishing %d events", self.published)


def failure_reason(error: BaseException) -> str:
    """Name what a failed batch found unavailable: `broker`, `database`, or `other`."""
    if isinstance(error, (pika.exceptions.AMQPError, OSError)):
        return "broker"
    if isinstance(error, SQLAlchemyError):
        return "database"
    return "other"


def _log_failure(error: Exception, backoff: float) -> None:
    reason = failure_reason(error)
    if reason == "broker":
        logger.warning("Broker unavailable (%s); retrying in %.1f s", error or type(error).__name__, backoff)
    elif reason == "database":
        logger.warning("Database unavailable (%s); retrying in %.1f s", error, backoff)
    else:
        logger.error("Unexpected failure while relaying; retrying in %.1f s", backoff, exc_info=error)


def main() -> int:
    """Run the relay until SIGINT or SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    try:
        settings = Settings.from_env()
        tracing = process_tracing(SERVICE_NAME)
    except (ConfigurationError, TracingConfigurationError) as error:
        logger.error("%s", error)
        return 2
    logging.config.dictConfig(logging_config(settings.log_format))
    if os.environ.get(MULTIPROC_DIR_VARIABLE):
        # The counters' files go there (the first is created with the first event counted).
        os.makedirs(os.environ[MULTIPROC_DIR_VARIABLE], exist_ok=True)
    relay = Relay(settings, tracing=tracing)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: relay.stopping.set())
    relay.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The outbox relay: publishes committed events to a RabbitMQ topic exchange, in order, at least once.

Run with `make relay` (or `python relay.py`); configure with DATABASE_URL/APP_DB_*, AMQP_URL and
RELAY_EXCHANGE. Several relays may run against one database: one publishes at a time. With the service's
PROMETHEUS_MULTIPROC_DIR, its counters appear in the service's /metrics (docs/operations.md, Metrics).
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
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from contract.avro import AvroSchemas
from observability.logs import logging_config
from observability.metrics import MULTIPROC_DIR_VARIABLE, RELAY_FAILURES, RELAY_PUBLISHED
from providers.database import make_engine
from providers.events import EVENT_SCHEMA, Event
from providers.sql_events import claim_unpublished, mark_published
from settings import ConfigurationError, Settings

logger = logging.getLogger("relay")

CONTENT_TYPE = "application/avro"
"""The body is one roomservice.Event in Avro single-object encoding (C3 01, fingerprint, datum)."""

IDLE_SECONDS = 0.2
MAX_BACKOFF_SECONDS = 30.0


class AmqpPublisher:
    """Publishes events as persistent messages to a durable topic exchange, waiting for broker confirms."""

    def __init__(self, amqp_url: str, exchange: str, schemas: AvroSchemas) -> None:
        self._parameters = pika.URLParameters(amqp_url)
        self._parameters.blocked_connection_timeout = 30
        self._parameters.connection_attempts = 1
        self._exchange = exchange
        self._schemas = schemas
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
            properties = pika.BasicProperties(
                content_type=CONTENT_TYPE,
                delivery_mode=pika.DeliveryMode.Persistent,
                message_id=event.event_id,
                type=event.type,
                timestamp=int(event.occurred_at.timestamp()),
                app_id="rooms-service",
                headers={
                    "avro-encoding": "single-object",
                    "avro-schema": schema.name,
                    "avro-fingerprint": schema.fingerprint,
                    "position": event.position,
                },
            )
            body = self._schemas.encode_single_object(EVENT_SCHEMA, event.as_record())
            # With confirms on, basic_publish blocks until the broker acks, and raises on a nack.
            channel.basic_publish(self._exchange, event.type, body, properties)

    def close(self) -> None:
        """Close the connection, ignoring a broker that is already gone."""
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except pika.exceptions.AMQPError:
                pass


def publish_pending(engine: Engine, publisher: AmqpPublisher, batch_size: int) -> int:
    """Publish one batch of unpublished events and mark them; return how many went out (0 if none or not our turn)."""
    try:
        events = _publish_batch(engine, publisher, batch_size)
    except Exception as error:
        RELAY_FAILURES.labels(failure_reason(error)).inc()
        raise
    for event_type, count in Counter(event.type for event in events).items():
        RELAY_PUBLISHED.labels(event_type).inc(count)
    return len(events)


def _publish_batch(engine: Engine, publisher: AmqpPublisher, batch_size: int) -> list[Event]:
    with engine.connect() as connection:
        events = claim_unpublished(connection, batch_size)
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

    def __init__(self, settings: Settings, schemas: AvroSchemas | None = None) -> None:
        self._settings = settings
        self._engine = make_engine(settings.database_url, pool_size=1)
        self._publisher = AmqpPublisher(settings.amqp_url, settings.relay_exchange, schemas or AvroSchemas())
        self.stopping = threading.Event()
        self.published = 0

    def run(self) -> None:
        """Publish until `stopping` is set."""
        backoff = 0.5
        logger.info("Relaying events to exchange %r", self._settings.relay_exchange)
        try:
            while not self.stopping.is_set():
                try:
                    count = publish_pending(self._engine, self._publisher, self._settings.relay_batch_size)
                    backoff = 0.5
                except Exception as error:  # noqa: BLE001 - a relay must outlive surprises; nothing was marked
                    self._publisher.close()
                    _log_failure(error, backoff)
                    self.stopping.wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                    continue
                self.published += count
                if count < self._settings.relay_batch_size:
                    self.stopping.wait(IDLE_SECONDS)
        finally:
            self._publisher.close()
            self._engine.dispose()
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
    except ConfigurationError as error:
        logger.error("%s", error)
        return 2
    logging.config.dictConfig(logging_config(settings.log_format))
    if os.environ.get(MULTIPROC_DIR_VARIABLE):
        # The counters' files go there (the first is created with the first event counted).
        os.makedirs(os.environ[MULTIPROC_DIR_VARIABLE], exist_ok=True)
    relay = Relay(settings)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: relay.stopping.set())
    relay.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

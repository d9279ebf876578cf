"""The outbox and the feed on SQLAlchemy, and the relay's claim of unpublished events."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    DateTime,
    Engine,
    Index,
    Integer,
    LargeBinary,
    String,
    Uuid,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from contract.avro import AvroSchemas
from providers.database import Base, ConnectionSource, OnConnection
from providers.events import Event, EventFeed, Outbox, TraceContextSource
from providers.paging import DEFAULT_MAX_PAGE_BYTES, within_bytes
from providers.sql_paging import bounded_in_bytes

OUTBOX_LOCK_KEY = 0x726F6F6D73  # "rooms": the advisory lock that orders writers' events on PostgreSQL
RELAY_LOCK_KEY = 0x72656C6179  # "relay": held by the one relay that publishes at a time
POLL_INTERVAL_SECONDS = 0.05
MAX_WAITERS = 4


class EventRow(Base):
    """One outbox row; `published_at` is set once the broker has confirmed it."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_type_position", "type", "position"),
        Index(
            "ix_events_unpublished",
            "position",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
        {"sqlite_autoincrement": True},
    )

    position: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    type: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(100))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    entity: Mapped[bytes | None] = mapped_column(LargeBinary)
    entity_fingerprint: Mapped[str | None] = mapped_column(String(16))
    # W3C trace context of the writing transaction (docs/tracing.md); tracestate is bounded to W3C's 512 characters.
    traceparent: Mapped[str | None] = mapped_column(String(55))
    tracestate: Mapped[str | None] = mapped_column(String(512))
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


COLUMNS = (
    EventRow.event_id, EventRow.type, EventRow.subject, EventRow.key, EventRow.occurred_at,
    EventRow.position, EventRow.entity, EventRow.entity_fingerprint, EventRow.traceparent, EventRow.tracestate,
)
# An event's stored size for a page's bound: its entity and about what its other columns take.
EVENT_BYTES = func.coalesce(func.length(EventRow.entity), 0) + 256
# Built once: a write already runs three statements, and building each anew showed in its profile.
LOCK_OUTBOX = text("SELECT pg_advisory_xact_lock(:key)").bindparams(key=OUTBOX_LOCK_KEY)
APPEND_EVENT = insert(EventRow)


def event_from_row(row: Any) -> Event:
    """Build an Event from a row of COLUMNS, in that order."""
    # Unpacked by position, as rooms are: a Row's members read by name cost about half a microsecond each.
    event_id, type_, subject, key, occurred_at, position, entity, fingerprint, traceparent, tracestate = row
    occurred = occurred_at if occurred_at.tzinfo else occurred_at.replace(tzinfo=UTC)
    return Event(str(event_id), type_, subject, key, occurred, position, entity, fingerprint, traceparent, tracestate)


class SqlOutbox(OnConnection, Outbox):
    """Records events in the request's transaction, so they commit or roll back with the change.

    Events are encoded when appended but written just before the transaction commits. On PostgreSQL
    the writer first takes a transaction-scoped advisory lock: positions come from a sequence at
    insert time, not at commit, and holding the lock until commit makes writers take positions in
    commit order, so a reader polling with `position > last seen` never skips an event that commits
    late. Writing at commit keeps that lock for two statements instead of the rest of the request,
    which was the ceiling of concurrent writes (bench/RESULTS.md).

    Each event also records the trace context `trace_context` returns when it is appended (the request's
    server span, when tracing is on; docs/tracing.md), so the relay can continue the writer's trace.
    """

    def __init__(self, connect: ConnectionSource, schemas: AvroSchemas, trace_context: TraceContextSource | None = None) -> None:
        super().__init__(connect)
        self._schemas = schemas
        self._trace_context = trace_context
        self._pending: list[dict[str, Any]] = []
        self._listening = False

    def append(self, event_type: str, subject: str, key: str, entity: Mapping[str, Any] | None) -> None:
        # The event belongs to the transaction in progress (begun here if nothing else began it), so
        # that transaction's rollback also forgets it.
        if not self._connection.in_transaction():
            self._connection.begin()
        schema = self._schemas.get(subject)
        traced = self._trace_context() if self._trace_context is not None else None
        self._pending.append({
            "event_id": uuid.uuid4(),
            "type": event_type,
            "subject": schema.name,
            "key": key,
            "occurred_at": datetime.now(UTC),
            "entity": self._schemas.encode_single_object(subject, entity) if entity is not None else None,
            "entity_fingerprint": schema.fingerprint,
            "traceparent": traced.traceparent if traced is not None else None,
            "tracestate": traced.tracestate if traced is not None else None,
        })
        if not self._listening:
            # The connection's commit event runs before the database commits, inside the transaction;
            # a savepoint's release is a different event, and so is a savepoint's rollback.
            event.listen(self._connection, "commit", self._write_pending)
            event.listen(self._connection, "rollback", self._forget_pending)
            self._listening = True

    def _write_pending(self, connection: Connection) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        if connection.dialect.name == "postgresql":
            connection.execute(LOCK_OUTBOX)
        connection.execute(APPEND_EVENT, pending)

    def _forget_pending(self, _connection: Connection) -> None:
        self._pending = []


class SqlEventFeed(EventFeed):
    """Reads committed events with short connections of its own, so a long poll sees each new commit.

    A long poll ends early, answering what it has (nothing new), once `stopping` is set: a graceful
    shutdown finishes the requests in flight, and a poll of up to 30 s would otherwise outlast it.
    A read also stops at the event that takes the stored size of what it read to `max_page_bytes`.
    """

    def __init__(self, engine: Engine, stopping: threading.Event | None = None, *,
                 max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES) -> None:
        self._engine = engine
        self._max_page_bytes = max_page_bytes
        self._waiters = threading.BoundedSemaphore(MAX_WAITERS)
        self._stopping = stopping if stopping is not None else threading.Event()

    def read(self, after: int, limit: int, types: Sequence[str] | None = None, wait_seconds: float = 0) -> list[Event]:
        events = self._read_once(after, limit, types)
        # A long poll holds one of the worker's threads, so only a few may wait at once; the others
        # answer at once (possibly empty) and their clients simply poll again.
        if events or wait_seconds <= 0 or self._stopping.is_set() or not self._waiters.acquire(blocking=False):
            return events
        try:
            deadline = time.monotonic() + wait_seconds
            while not events and time.monotonic() < deadline:
                if self._stopping.wait(POLL_INTERVAL_SECONDS):
                    break
                events = self._read_once(after, limit, types)
            return events
        finally:
            self._waiters.release()

    def _read_once(self, after: int, limit: int, types: Sequence[str] | None) -> list[Event]:
        statement = select(*COLUMNS).where(EventRow.position > after)
        if types:
            statement = statement.where(EventRow.type.in_(types))
        statement = bounded_in_bytes(statement.order_by(EventRow.position).limit(limit), (EventRow.position,), EVENT_BYTES)
        with self._engine.connect() as connection:
            rows = connection.execute(statement, {"max_page_bytes": self._max_page_bytes}).all()
        return [event_from_row(row) for row in rows]


def claim_unpublished(connection: Connection, limit: int, max_bytes: int = DEFAULT_MAX_PAGE_BYTES) -> list[Event] | None:
    """Lock and return the oldest unpublished events for this relay; None if another relay holds the turn.

    One relay publishes at a time (a transaction-scoped advisory lock on PostgreSQL, the database
    write lock on SQLite), so events go out in position order and never twice concurrently. A batch
    holds at most `limit` events and ends at the one that takes their stored size past `max_bytes`;
    the events' sizes are read first, so a batch of large rooms is never read whole.
    """
    dialect = connection.dialect.name
    if dialect == "postgresql":
        if not connection.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": RELAY_LOCK_KEY}).scalar_one():
            return None
    else:
        # Take SQLite's write lock now rather than at the final UPDATE, so two relays cannot both read the batch.
        connection.execute(update(EventRow).where(EventRow.position < 0).values(published_at=None))
    sizes = (
        select(EventRow.position, EVENT_BYTES)
        .where(EventRow.published_at.is_(None))
        .order_by(EventRow.position)
        .limit(limit)
    )
    if dialect == "postgresql":
        sizes = sizes.with_for_update(skip_locked=True)
    sized = connection.execute(sizes).all()
    positions, _ = within_bytes([position for position, _ in sized], [size for _, size in sized], max_bytes)
    if not positions:
        return []
    statement = select(*COLUMNS).where(EventRow.position.in_(positions)).order_by(EventRow.position)
    return [event_from_row(row) for row in connection.execute(statement).all()]


def mark_published(connection: Connection, positions: Sequence[int]) -> None:
    """Record that the broker confirmed these events."""
    if positions:
        connection.execute(
            update(EventRow).where(EventRow.position.in_(positions)).values(published_at=datetime.now(UTC))
        )

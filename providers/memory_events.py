"""In-memory outbox and feed for unit tests."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from contract.avro import AvroSchemas
from providers.events import Event, EventFeed, Outbox, TraceContextSource


class InMemoryEvents(Outbox, EventFeed):
    """Both ends of the outbox in one list (changes apply at once, so events do too)."""

    def __init__(self, schemas: AvroSchemas, trace_context: TraceContextSource | None = None) -> None:
        self._schemas = schemas
        self._trace_context = trace_context
        self._events: list[Event] = []
        self._lock = threading.Lock()

    def append(self, event_type: str, subject: str, key: str, entity: Mapping[str, Any] | None) -> None:
        schema = self._schemas.get(subject)
        traced = self._trace_context() if self._trace_context is not None else None
        with self._lock:
            self._events.append(Event(
                str(uuid.uuid4()), event_type, schema.name, key, datetime.now(UTC), len(self._events) + 1,
                self._schemas.encode_single_object(subject, entity) if entity is not None else None,
                schema.fingerprint,
                traced.traceparent if traced is not None else None,
                traced.tracestate if traced is not None else None,
            ))

    def read(self, after: int, limit: int, types: Sequence[str] | None = None, wait_seconds: float = 0) -> list[Event]:
        matching = [e for e in self._events if e.position > after and (not types or e.type in types)]
        return matching[:limit]

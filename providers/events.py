"""Domain events: the outbox every change appends to, and the feed that reads it back in order."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

EVENT_SCHEMA = "roomservice.Event"


class TraceContext(NamedTuple):
    """The W3C trace context of the transaction that wrote an event: `traceparent` and `tracestate` as in HTTP headers."""

    traceparent: str
    tracestate: str | None = None


TraceContextSource = Callable[[], TraceContext | None]
"""What an outbox calls at each append for the trace context in effect (None: not tracing); see observability/tracing.py."""


@dataclass(frozen=True, slots=True)
class Event:
    """One committed change: the entity after it (Avro single-object bytes; None for deletes)."""

    event_id: str
    type: str
    subject: str
    key: str
    occurred_at: datetime
    position: int
    entity: bytes | None
    entity_fingerprint: str | None
    traceparent: str | None = None
    tracestate: str | None = None

    def as_record(self) -> dict[str, Any]:
        """The event as a roomservice.Event record."""
        return {
            "event_id": self.event_id,
            "type": self.type,
            "subject": self.subject,
            "key": self.key,
            "occurred_at": self.occurred_at,
            "position": self.position,
            "entity": self.entity,
            "entity_fingerprint": self.entity_fingerprint,
            "traceparent": self.traceparent,
            "tracestate": self.tracestate,
        }


class Outbox(abc.ABC):
    """Where providers record each change, in the same transaction as the change itself."""

    @abc.abstractmethod
    def append(self, event_type: str, subject: str, key: str, entity: Mapping[str, Any] | None) -> None:
        """Record that `entity` (API shape; None for a delete) changed as `event_type`."""


class EventFeed(abc.ABC):
    """Committed events in position order."""

    @abc.abstractmethod
    def read(self, after: int, limit: int, types: Sequence[str] | None = None, wait_seconds: float = 0) -> list[Event]:
        """Return up to `limit` events past `after` (fewer once they reach a page's size); with `wait_seconds`, wait that long for the first one."""

"""Domain events: the outbox every change appends to, and the feed that reads it back in order."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

EVENT_SCHEMA = "roomservice.Event"


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
        """Return up to `limit` events past `after`; with `wait_seconds`, wait that long for the first one."""

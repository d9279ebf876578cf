"""Handler of the event feed."""

from __future__ import annotations

from typing import Any

from injector import Inject

from contract.avro import AvroSchemas
from providers.events import EVENT_SCHEMA, Event, EventFeed
from rest.representation import HandlerResult, Representer


def read_events(
    feed: Inject[EventFeed],
    schemas: Inject[AvroSchemas],
    represent: Inject[Representer],
    after: int = 0,
    limit: int = 100,
    type: list[str] | None = None,  # noqa: A002 - the spec's parameter name
    wait: float = 0,
) -> HandlerResult:
    """Return the committed events past `after`, in position order (long-polling up to `wait` seconds)."""
    events = feed.read(after, limit, type or None, wait_seconds=wait)
    last_position = events[-1].position if events else after
    body = {"data": [_as_json(event, schemas) for event in events], "last_position": last_position}
    return represent.render(EVENT_SCHEMA, body, [event.as_record() for event in events])


def _as_json(event: Event, schemas: AvroSchemas) -> dict[str, Any]:
    record = event.as_record() | {"occurred_at": event.occurred_at}
    record["entity"] = schemas.decode_single_object(event.entity)[1] if event.entity is not None else None
    return record

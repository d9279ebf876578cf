"""Handlers of the /rooms operations."""

from __future__ import annotations

from typing import Any

from connexion import NoContent
from injector import Inject

from contract.errors import FieldError, InvalidInput
from contract.rules import ContractRules
from providers.rooms import Cursor, GeoCircle, RoomQuery, RoomsProvider, writable_fields
from rest.conditional import entity_tag, require_match
from rest.idempotency import IdempotentCreates
from rest.merge_patch import merge_patch
from rest.representation import Answer, HandlerResult, Representer
from rest.request import RequestFacts


def search_rooms(
    rooms: Inject[RoomsProvider],
    represent: Inject[Representer],
    city: str | None = None,
    country: str | None = None,
    provider: str | None = None,
    min_price: int | None = None,
    max_price: int | None = None,
    visible: bool | None = None,
    near: str | None = None,
    radius_km: float | None = None,
    sort: str = "created_at",
    limit: int = 20,
    cursor: str | None = None,
) -> HandlerResult:
    """Return one page of the rooms matching the filters."""
    query = RoomQuery(
        city=city,
        country=country,
        provider=provider,
        min_price=min_price,
        max_price=max_price,
        visible=visible,
        near=_geo_circle(near, radius_km),
        sort=sort,
        limit=limit,
        after=Cursor.decode(cursor, sort) if cursor else None,
    )
    page = rooms.search(query)
    return represent.many("Room", page.items, page.next_cursor)


def create_room(body: dict[str, Any], rooms: Inject[RoomsProvider], represent: Inject[Representer],
                once: Inject[IdempotentCreates]) -> Answer:
    """Store a new room; a retry with the same Idempotency-Key gets the first answer again."""

    def create() -> HandlerResult:
        stored = rooms.create(body)
        return represent.created("Room", stored.room, stored.room["id"], entity_tag(stored.version))

    return once.run("create_room", "roomservice.NewRoom", body, create)


def get_room(room_id: str, rooms: Inject[RoomsProvider], represent: Inject[Representer]) -> HandlerResult:
    """Return one room, or 304 when If-None-Match names its current ETag."""
    stored = rooms.get(room_id)
    return represent.read("Room", stored.room, entity_tag(stored.version))


def update_room(
    room_id: str,
    body: dict[str, Any],
    rooms: Inject[RoomsProvider],
    rules: Inject[ContractRules],
    represent: Inject[Representer],
    http: Inject[RequestFacts],
) -> HandlerResult:
    """Apply a JSON merge patch to a room; the result must be a valid new room."""
    current = rooms.get(room_id, for_update=True)
    require_match(http.header("If-Match"), current.version)
    merged = merge_patch(writable_fields(current.room), body)
    rules.check("NewRoom", merged, what="patched room")
    stored = rooms.replace(room_id, merged)
    return represent.one("Room", stored.room, 200, {"ETag": entity_tag(stored.version)})


def delete_room(room_id: str, rooms: Inject[RoomsProvider], http: Inject[RequestFacts]) -> tuple[Any, int]:
    """Delete a room."""
    precondition = http.header("If-Match")
    if precondition is not None:
        require_match(precondition, rooms.get(room_id, for_update=True).version)
    rooms.delete(room_id)
    return NoContent, 204


def _geo_circle(near: str | None, radius_km: float | None) -> GeoCircle | None:
    if near is None and radius_km is None:
        return None
    if near is None or radius_km is None:
        missing = "near" if near is None else "radius_km"
        message = "near and radius_km go together"
        raise InvalidInput(f"{message}: {missing} is missing.", [FieldError(f"query.{missing}", message)])
    lat, lon = (float(part) for part in near.split(","))
    errors = []
    if not -90 <= lat <= 90:
        errors.append(FieldError("query.near", f"latitude {lat} is outside -90..90"))
    if not -180 <= lon <= 180:
        errors.append(FieldError("query.near", f"longitude {lon} is outside -180..180"))
    if errors:
        raise InvalidInput("; ".join(e.message for e in errors), errors)
    return GeoCircle(lat, lon, radius_km)

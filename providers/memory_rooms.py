"""In-memory RoomsProvider for unit tests: same contract as the SQL one, no database."""

from __future__ import annotations

import copy
import threading
import uuid
from datetime import UTC, datetime

from contract.errors import Conflict, NotFound
from providers.events import Outbox
from providers.rooms import (
    SORT_ORDERS,
    Room,
    RoomPage,
    RoomQuery,
    RoomsProvider,
    StoredRoom,
    haversine_term,
    page_from,
)


class InMemoryRoomsProvider(RoomsProvider):
    """Rooms kept in a dict; changes apply at once (there is no transaction to join)."""

    def __init__(self, outbox: Outbox | None = None) -> None:
        self._outbox = outbox
        self._rooms: dict[str, StoredRoom] = {}
        self._lock = threading.Lock()

    def create(self, new_room: Room) -> StoredRoom:
        with self._lock:
            self._ensure_url_free(new_room["url"], None)
            now = datetime.now(UTC)
            room = _with_defaults(new_room) | {"id": str(uuid.uuid4()), "created_at": now, "updated_at": now}
            stored = StoredRoom(room, 1)
            self._rooms[room["id"]] = stored
            self._record("room.created", room["id"], room)
            return _copy(stored)

    def get(self, room_id: str, *, for_update: bool = False) -> StoredRoom:
        stored = self._rooms.get(room_id.lower())
        if stored is None:
            raise NotFound(f"Room {room_id} does not exist.")
        return _copy(stored)

    def replace(self, room_id: str, room: Room) -> StoredRoom:
        with self._lock:
            current = self.get(room_id)
            self._ensure_url_free(room["url"], current.room["id"])
            keep = {k: current.room[k] for k in ("id", "created_at")}
            updated = StoredRoom(
                _with_defaults(room) | keep | {"updated_at": datetime.now(UTC)}, current.version + 1
            )
            self._rooms[keep["id"]] = updated
            self._record("room.updated", keep["id"], updated.room)
            return _copy(updated)

    def delete(self, room_id: str) -> None:
        with self._lock:
            if self._rooms.pop(room_id.lower(), None) is None:
                raise NotFound(f"Room {room_id} does not exist.")
            self._record("room.deleted", room_id.lower(), None)

    def search(self, query: RoomQuery) -> RoomPage:
        field, descending = SORT_ORDERS[query.sort]
        matches = [s.room for s in self._rooms.values() if _matches(s.room, query)]
        matches.sort(key=lambda r: (r[field], r["id"]), reverse=descending)
        if query.after is not None:
            position = (query.after.value, query.after.room_id)
            matches = [
                r for r in matches if ((r[field], r["id"]) < position if descending else (r[field], r["id"]) > position)
            ]
        return page_from([copy.deepcopy(r) for r in matches[: query.limit + 1]], query)

    def _record(self, event_type: str, key: str, room: Room | None) -> None:
        if self._outbox is not None:
            self._outbox.append(event_type, "roomservice.Room", key, room)

    def _ensure_url_free(self, url: str, own_id: str | None) -> None:
        for stored in self._rooms.values():
            if stored.room["url"] == url and stored.room["id"] != own_id:
                raise Conflict(f"Room {stored.room['id']} already has the url {url}.", stored.room["id"])


def _with_defaults(room: Room) -> Room:
    return {"is_visible": True, "images": []} | copy.deepcopy(room)


def _copy(stored: StoredRoom) -> StoredRoom:
    return StoredRoom(copy.deepcopy(stored.room), stored.version)


def _matches(room: Room, query: RoomQuery) -> bool:
    area = room.get("area") or {}
    if query.city is not None and area.get("city") != query.city:
        return False
    if query.country is not None and area.get("country") != query.country:
        return False
    if query.provider is not None and room["provider"] != query.provider:
        return False
    if query.min_price is not None and room["price"] < query.min_price:
        return False
    if query.max_price is not None and room["price"] > query.max_price:
        return False
    if query.visible is not None and room["is_visible"] != query.visible:
        return False
    if query.near is not None:
        bound = query.near.haversine_bound()
        point = room["coordinates"]
        if bound is not None and haversine_term(query.near.lat, query.near.lon, point["lat"], point["lon"]) > bound:
            return False
    return True

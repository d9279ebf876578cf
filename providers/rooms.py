"""The Rooms aggregate: its provider interface, search query, keyset cursor and geographic math."""

from __future__ import annotations

import abc
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from providers.paging import Page, bad_cursor, decode_cursor, encode_cursor, int64, page_of

EARTH_RADIUS_KM = 6371.0088
"""Mean Earth radius (IUGG) used for great-circle distances."""

# sort name -> (room field, descending)
SORT_ORDERS: dict[str, tuple[str, bool]] = {
    "created_at": ("created_at", False),
    "-created_at": ("created_at", True),
    "price": ("price", False),
    "-price": ("price", True),
}

Room = dict[str, Any]
"""A room in its API shape; `created_at`/`updated_at` are timezone-aware datetimes."""


@dataclass(frozen=True, slots=True)
class StoredRoom:
    """A room together with its version, which is the basis of its ETag."""

    room: Room
    version: int


@dataclass(frozen=True, slots=True)
class GeoCircle:
    """The rooms within `radius_km` great-circle distance of (`lat`, `lon`)."""

    lat: float
    lon: float
    radius_km: float

    def haversine_bound(self) -> float | None:
        """Return the bound on the haversine term for this radius; None when it covers the globe."""
        half_angle = self.radius_km / (2 * EARTH_RADIUS_KM)
        if half_angle >= math.pi / 2:
            return None
        return math.sin(half_angle) ** 2

    def latitude_band(self) -> tuple[float, float]:
        """Return the latitudes a point in the circle can have, clamped to the poles."""
        delta = math.degrees(self.radius_km / EARTH_RADIUS_KM)
        return max(-90.0, self.lat - delta), min(90.0, self.lat + delta)

    def longitude_band(self) -> tuple[float, float] | None:
        """Return the longitudes a point in the circle can have, or None when the band wraps."""
        angular = self.radius_km / EARTH_RADIUS_KM
        low_lat, high_lat = self.latitude_band()
        if low_lat <= -90.0 or high_lat >= 90.0:
            return None
        ratio = math.sin(angular) / math.cos(math.radians(self.lat))
        if ratio >= 1:
            return None
        delta = math.degrees(math.asin(ratio))
        if self.lon - delta < -180.0 or self.lon + delta > 180.0:
            return None
        return self.lon - delta, self.lon + delta


def haversine_term(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Return the haversine of the central angle between two points (0 same point, 1 antipodes)."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlambda = math.radians(lon2 - lon1)
    return math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Return the great-circle distance between two points in kilometres."""
    term = min(1.0, haversine_term(lat1, lon1, lat2, lon2))
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(term))


@dataclass(frozen=True, slots=True)
class Cursor:
    """Position after the last room of a page: the sort key's value and the room id."""

    sort: str
    value: Any
    room_id: str

    def encode(self) -> str:
        """Return the opaque, URL-safe form handed to clients."""
        value = self.value.isoformat() if isinstance(self.value, datetime) else self.value
        return encode_cursor({"s": self.sort, "v": value, "i": self.room_id})

    @classmethod
    def decode(cls, token: str, sort: str) -> Cursor:
        """Parse a client's cursor for a search with this sort order, or raise InvalidInput."""
        cursor = decode_cursor(token, cls._from_payload)
        if cursor.sort != sort:
            raise bad_cursor(f"The cursor belongs to sort={cursor.sort}, not sort={sort}.")
        return cursor

    @classmethod
    def _from_payload(cls, payload: dict[str, Any]) -> Cursor:
        sort, value, room_id = payload["s"], payload["v"], str(uuid.UUID(payload["i"]))
        field, _ = SORT_ORDERS[sort]
        if field == "created_at":
            value = datetime.fromisoformat(value)
            if value.tzinfo is None:
                raise ValueError("naive timestamp")
            # Year 9999 at -23:59 is year 10000 in UTC, which neither Python nor PostgreSQL can hold.
            value.astimezone(UTC)
        else:
            value = int64(value)
        return cls(sort, value, room_id)


@dataclass(frozen=True, slots=True)
class RoomQuery:
    """A search over rooms: filters (all optional, combined with AND), order and page."""

    city: str | None = None
    country: str | None = None
    provider: str | None = None
    min_price: int | None = None
    max_price: int | None = None
    visible: bool | None = None
    near: GeoCircle | None = None
    sort: str = "created_at"
    limit: int = 20
    after: Cursor | None = None


RoomPage = Page[Room]


def page_from(rows: list[Room], query: RoomQuery, *, cut_short: bool = False) -> RoomPage:
    """Cut `limit + 1` sorted rows (fewer if `cut_short` by their size) into a page and the cursor after it."""
    field, _ = SORT_ORDERS[query.sort]
    return page_of(rows, query.limit, lambda last: Cursor(query.sort, last[field], last["id"]).encode(), cut_short=cut_short)


def writable_fields(room: Mapping[str, Any]) -> Room:
    """Return the client-writable part of a stored room (what a merge patch applies to)."""
    return {k: v for k, v in room.items() if k not in READ_ONLY_FIELDS}


READ_ONLY_FIELDS = frozenset({"id", "created_at", "updated_at"})


class RoomsProvider(abc.ABC):
    """Persistence of rooms. Implementations join the caller's transaction and never commit."""

    @abc.abstractmethod
    def create(self, new_room: Room) -> StoredRoom:
        """Store a validated new room; raise Conflict if its url is taken."""

    @abc.abstractmethod
    def get(self, room_id: str, *, for_update: bool = False) -> StoredRoom:
        """Return the room; raise NotFound. `for_update` locks it until the transaction ends."""

    @abc.abstractmethod
    def replace(self, room_id: str, room: Room) -> StoredRoom:
        """Overwrite a room's writable fields and bump its version; raise NotFound or Conflict."""

    @abc.abstractmethod
    def delete(self, room_id: str) -> None:
        """Remove the room; raise NotFound."""

    @abc.abstractmethod
    def search(self, query: RoomQuery) -> RoomPage:
        """Return one page of the rooms matching the query, in its stable order."""

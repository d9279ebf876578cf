"""SQLAlchemy RoomsProvider: rooms in one table, on PostgreSQL or SQLite."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Double,
    Index,
    Integer,
    Select,
    String,
    Text,
    TextualSelect,
    UniqueConstraint,
    Uuid,
    bindparam,
    case,
    delete,
    func,
    null,
    select,
    text,
    tuple_,
    type_coerce,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from contract.errors import Conflict, NotFound
from providers.database import Base, ConnectionSource, OnConnection
from providers.events import Outbox
from providers.paging import DEFAULT_MAX_PAGE_BYTES, within_bytes
from providers.rooms import (
    SORT_ORDERS,
    Room,
    RoomPage,
    RoomQuery,
    RoomsProvider,
    StoredRoom,
    page_from,
)

ROOM_SCHEMA = "roomservice.Room"
MAX_SEARCH_LIMIT = 100  # the spec's maximum `limit` of a search
ROOM_OVERHEAD_BYTES = 512  # about what a room's fields other than the long ones take in an answer


class RoomRow(Base):
    """One stored room; `area` and `coordinates` are flattened into columns so they can be searched."""

    __tablename__ = "rooms"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    price: Mapped[int] = mapped_column(BigInteger)
    recurrency: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str] = mapped_column(String(100))
    url: Mapped[str] = mapped_column(String(2048))
    monthly_price: Mapped[int] = mapped_column(BigInteger)
    property_size: Mapped[str] = mapped_column(String(100))
    lat: Mapped[float] = mapped_column(Double)
    lon: Mapped[float] = mapped_column(Double)
    area_name: Mapped[str | None] = mapped_column(String(200))
    area_country: Mapped[str | None] = mapped_column(String(100))
    area_city: Mapped[str | None] = mapped_column(String(100))
    area_lat: Mapped[float | None] = mapped_column(Double)
    area_lon: Mapped[float | None] = mapped_column(Double)
    is_visible: Mapped[bool] = mapped_column(Boolean)
    images: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # What the long fields (url, description, image URLs) take in UTF-8 bytes: bounds a page (search) before
    # reading them. Not part of the entity; 0 from writers that predate it (migration 0006).
    stored_bytes: Mapped[int] = mapped_column(Integer, server_default="0")

    __table_args__ = (
        UniqueConstraint("url", name="uq_rooms_url"),
        Index("ix_rooms_created_at_id", "created_at", "id"),
        Index("ix_rooms_price_id", "price", "id"),
        Index("ix_rooms_area_city", "area_city"),
        Index("ix_rooms_area_country", "area_country"),
        Index("ix_rooms_provider", "provider"),
        Index("ix_rooms_lat", "lat"),
    )


COLUMNS = tuple(column for column in RoomRow.__table__.columns if column.name != "stored_bytes")
"""The columns a room is read from (room_from_row), in that order."""
LARGE = RoomRow.stored_bytes > bindparam("large_room_bytes", type_=Integer)
# Built once: constructing a select is a measurable share of a simple read (bench/RESULTS.md).
GET_ROOM = select(*COLUMNS).where(RoomRow.id == bindparam("room_id"))
GET_ROOM_FOR_UPDATE = GET_ROOM.with_for_update()
GET_ROOMS = select(*COLUMNS).where(RoomRow.id.in_(bindparam("room_ids", expanding=True)))
# A search reads a large room's description and images only once it knows the page keeps the room: each
# row comes with its stored size last, and those two fields null when it is over `large_room_bytes`.
SELECT_ROOMS = select(
    *(type_coerce(case((LARGE, null()), else_=column), column.type).label(column.name)
      if column.name in ("description", "images") else column for column in COLUMNS),
    RoomRow.stored_bytes,
)


def _insert_room_on_postgresql() -> TextualSelect:
    # SQLAlchemy never caches the compiled form of PostgreSQL's INSERT ... ON CONFLICT (its Insert
    # sets inherit_cache = False), so each POST compiled it again: about a quarter of a create's
    # Python work in bench/. A typed text() statement is compiled once.
    written = (*COLUMNS, RoomRow.__table__.c.stored_bytes)
    names = [column.name for column in written]
    sql = (
        f"INSERT INTO rooms ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)}) "
        f"ON CONFLICT (url) DO NOTHING RETURNING {', '.join(column.name for column in COLUMNS)}"
    )
    typed = [bindparam(column.name, type_=column.type) for column in written]
    return text(sql).bindparams(*typed).columns(*COLUMNS)


INSERT_ROOM_POSTGRESQL = _insert_room_on_postgresql()


def columns_from_room(room: Room) -> dict[str, Any]:
    """Flatten a room's writable fields into column values (defaults applied)."""
    area = room.get("area")
    area_point = (area or {}).get("coordinates") or {}
    images = [{"url": image["url"]} for image in room.get("images", [])]
    return {
        "name": room["name"],
        "description": room["description"],
        "price": room["price"],
        "recurrency": room["recurrency"],
        "provider": room["provider"],
        "url": room["url"],
        "monthly_price": room["monthly_price"],
        "property_size": room["property_size"],
        "lat": float(room["coordinates"]["lat"]),
        "lon": float(room["coordinates"]["lon"]),
        "area_name": area["name"] if area else None,
        "area_country": area["country"] if area else None,
        "area_city": area["city"] if area else None,
        "area_lat": float(area_point["lat"]) if area_point else None,
        "area_lon": float(area_point["lon"]) if area_point else None,
        "is_visible": room.get("is_visible", True),
        "images": images,
        "stored_bytes": _utf8_bytes(room["url"]) + _utf8_bytes(room["description"])
        + sum(_utf8_bytes(image["url"]) + 10 for image in images),
    }


def room_from_row(row: Sequence[Any]) -> Room:
    """Rebuild the API shape of a room from a row of COLUMNS, in that order."""
    # Unpacked by position: reading 21 members of a Row by name cost about 11 µs a row against 2 µs
    # unpacked, 0.2 ms of CPU in a 20-room search (bench/RESULTS.md, tuning log).
    (room_id, name, description, price, recurrency, provider, url, monthly_price, property_size, lat, lon,
     area_name, area_country, area_city, area_lat, area_lon, is_visible, images, _version, created_at,
     updated_at) = row
    room: Room = {
        "id": str(room_id),
        "name": name,
        "description": description,
        "price": price,
        "recurrency": recurrency,
        "provider": provider,
        "url": url,
        "monthly_price": monthly_price,
        "property_size": property_size,
        "coordinates": {"lat": float(lat), "lon": float(lon)},
        "is_visible": is_visible,
        "images": list(images or []),
        "created_at": _utc(created_at),
        "updated_at": _utc(updated_at),
    }
    if area_name is not None:
        area: dict[str, Any] = {"name": area_name, "country": area_country, "city": area_city}
        if area_lat is not None:
            area["coordinates"] = {"lat": float(area_lat), "lon": float(area_lon)}
        room["area"] = area
    return room


def _utf8_bytes(text: str) -> int:
    return len(text.encode())


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything is stored in UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _room_uuid(room_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(room_id)
    except ValueError:
        raise NotFound(f"Room {room_id} does not exist.") from None


class SqlRoomsProvider(OnConnection, RoomsProvider):
    """Rooms stored through the request's database connection; the caller owns the transaction."""

    def __init__(self, connect: ConnectionSource, outbox: Outbox, *, max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES) -> None:
        super().__init__(connect)
        self._outbox = outbox
        self._max_page_bytes = max_page_bytes

    def create(self, new_room: Room) -> StoredRoom:
        now = datetime.now(UTC)
        values = columns_from_room(new_room) | {
            "id": uuid.uuid4(),
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
        # ON CONFLICT DO NOTHING waits for a concurrent insert of the same url to finish
        # and then yields no row, so a race ends as one 201 and 409s, never as an error.
        if self._dialect == "postgresql":
            row = self._connection.execute(INSERT_ROOM_POSTGRESQL, values).one_or_none()
        else:
            statement = sqlite.insert(RoomRow).values(values).on_conflict_do_nothing(index_elements=["url"])
            row = self._connection.execute(statement.returning(*COLUMNS)).one_or_none()
        if row is None:
            raise self._url_conflict(new_room["url"])
        stored = StoredRoom(room_from_row(row), row.version)
        self._outbox.append("room.created", ROOM_SCHEMA, stored.room["id"], stored.room)
        return stored

    def get(self, room_id: str, *, for_update: bool = False) -> StoredRoom:
        statement = GET_ROOM_FOR_UPDATE if for_update else GET_ROOM
        row = self._connection.execute(statement, {"room_id": _room_uuid(room_id)}).one_or_none()
        if row is None:
            raise NotFound(f"Room {room_id} does not exist.")
        return StoredRoom(room_from_row(row), row.version)

    def replace(self, room_id: str, room: Room) -> StoredRoom:
        statement = (
            update(RoomRow)
            .where(RoomRow.id == _room_uuid(room_id))
            .values(columns_from_room(room) | {"version": RoomRow.version + 1, "updated_at": datetime.now(UTC)})
            .returning(*COLUMNS)
        )
        try:
            with self._connection.begin_nested():
                row = self._connection.execute(statement).one_or_none()
        except IntegrityError:
            raise self._url_conflict(room["url"]) from None
        if row is None:
            raise NotFound(f"Room {room_id} does not exist.")
        stored = StoredRoom(room_from_row(row), row.version)
        self._outbox.append("room.updated", ROOM_SCHEMA, stored.room["id"], stored.room)
        return stored

    def delete(self, room_id: str) -> None:
        key = _room_uuid(room_id)
        result = self._connection.execute(delete(RoomRow).where(RoomRow.id == key))
        if result.rowcount == 0:
            raise NotFound(f"Room {room_id} does not exist.")
        self._outbox.append("room.deleted", ROOM_SCHEMA, str(key), None)

    def search(self, query: RoomQuery) -> RoomPage:
        shape, parameters = _search_shape(query)
        # A page keeps rooms while what it holds is under max_page_bytes; a room small enough that 101 of
        # them fit (the largest limit and the row that says more follow) is read whole in the first query.
        large_room_bytes = self._max_page_bytes // (MAX_SEARCH_LIMIT + 1)
        parameters["large_room_bytes"] = large_room_bytes
        rows = self._connection.execute(_search_statement(*shape), parameters).all()
        kept, cut_short = within_bytes(rows, [ROOM_OVERHEAD_BYTES + row[-1] for row in rows], self._max_page_bytes)
        rooms = [room_from_row(row[:-1]) for row in kept]
        large = [row[0] for row in kept if row[-1] > large_room_bytes]
        if large:
            rooms = self._with_large_rooms_whole(rooms, large)
        return page_from(rooms, query, cut_short=cut_short)

    def _with_large_rooms_whole(self, rooms: list[Room], large: list[uuid.UUID]) -> list[Room]:
        # Each large room read again whole, so it is one version of itself; one deleted meanwhile leaves the page.
        fresh = {str(row[0]): room_from_row(row) for row in self._connection.execute(GET_ROOMS, {"room_ids": large})}
        gone = {str(room_id) for room_id in large} - fresh.keys()
        return [fresh.get(room["id"], room) for room in rooms if room["id"] not in gone]

    def _url_conflict(self, url: str) -> Conflict:
        existing = self._connection.scalar(select(RoomRow.id).where(RoomRow.url == url))
        owner = str(existing) if existing is not None else None
        return Conflict(f"Room {owner} already has the url {url}.", owner)

    @property
    def _dialect(self) -> str:
        return self._connection.dialect.name


# The search filters that compare one column with the query's value of the same name.
_EQUALITY_FILTERS = {"city": RoomRow.area_city, "country": RoomRow.area_country, "provider": RoomRow.provider,
                     "visible": RoomRow.is_visible}


def _search_shape(query: RoomQuery) -> tuple[tuple[tuple[str, ...], str | None, str, bool], dict[str, Any]]:
    """Split a query into its shape (which filters, sort, cursor) and the values bound into it."""
    parameters: dict[str, Any] = {"limit": query.limit + 1}
    filters = []
    for name in ("city", "country", "provider", "visible", "min_price", "max_price"):
        value = getattr(query, name)
        if value is not None:
            filters.append(name)
            parameters[name] = value
    near = None
    circle = query.near
    if circle is not None and (bound := circle.haversine_bound()) is not None:
        low_lat, high_lat = circle.latitude_band()
        parameters |= {"lat": circle.lat, "lon": circle.lon, "low_lat": low_lat, "high_lat": high_lat, "bound": bound}
        near = "circle"
        if (band := circle.longitude_band()) is not None:
            parameters |= {"low_lon": band[0], "high_lon": band[1]}
            near = "circle in longitude band"
    if query.after is not None:
        parameters |= {"after_value": query.after.value, "after_id": uuid.UUID(query.after.room_id)}
    return (tuple(filters), near, query.sort, query.after is not None), parameters


@functools.lru_cache(maxsize=512)
def _search_statement(filters: tuple[str, ...], near: str | None, sort: str, after: bool) -> Select[Any]:
    # One statement per query shape, values bound at execution: building a select and computing its
    # cache key on every search cost about as much as running it (bench/RESULTS.md).
    statement = SELECT_ROOMS
    for name in filters:
        if name in _EQUALITY_FILTERS:
            statement = statement.where(_EQUALITY_FILTERS[name] == bindparam(name))
        elif name == "min_price":
            statement = statement.where(RoomRow.price >= bindparam(name))
        else:
            statement = statement.where(RoomRow.price <= bindparam(name))
    if near is not None:
        statement = statement.where(RoomRow.lat.between(bindparam("low_lat"), bindparam("high_lat")))
        if near == "circle in longitude band":
            statement = statement.where(RoomRow.lon.between(bindparam("low_lon"), bindparam("high_lon")))
        statement = statement.where(_haversine_term(bindparam("lat", type_=Double), bindparam("lon", type_=Double))
                                    <= bindparam("bound", type_=Double))
    field, descending = SORT_ORDERS[sort]
    sort_column = getattr(RoomRow, field)
    if after:
        position = tuple_(sort_column, RoomRow.id)
        cursor = tuple_(bindparam("after_value", type_=sort_column.type), bindparam("after_id", type_=Uuid()))
        statement = statement.where(position < cursor if descending else position > cursor)
    order = (sort_column.desc(), RoomRow.id.desc()) if descending else (sort_column.asc(), RoomRow.id.asc())
    return statement.order_by(*order).limit(bindparam("limit", type_=Integer))


def _haversine_term(lat: Any, lon: Any) -> Any:
    """SQL for the haversine of the central angle between each room and (lat, lon)."""
    phi = func.radians(RoomRow.lat)
    half_dphi = (phi - func.radians(lat)) / 2
    half_dlambda = (func.radians(RoomRow.lon) - func.radians(lon)) / 2
    sin_dphi, sin_dlambda = func.sin(half_dphi), func.sin(half_dlambda)
    return sin_dphi * sin_dphi + func.cos(func.radians(lat)) * func.cos(phi) * sin_dlambda * sin_dlambda

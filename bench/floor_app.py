"""The floor: the least a Flask + SQLAlchemy app must do to answer the benchmarked room operations.

It answers `GET /v1/health`, `GET /v1/rooms/{id}`, `GET /v1/rooms?city=...&limit=...` and `POST /v1/rooms` from the
service's database with the service's JSON shape, SQL and pool size, but without OpenAPI routing,
validation, dependency injection or an ORM session. It exists only so the benchmark can say how far
the service is from what the same stack costs at minimum; never serve it for real. Its database work
(`read_room`, `search_page`, `store_room`) is also what bench/stock_app.py's handlers call.

Configuration comes from the same variables as the service: DATABASE_URL, APP_DB_CONNECTIONS,
APP_DB_STALE_TIMEOUT and APP_API_KEYS.
"""

from __future__ import annotations

import base64
import io
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import fastavro
import orjson
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form
from flask import Flask, Response, request
from sqlalchemy import create_engine, text

_POOL_SIZE = int(os.environ.get("APP_DB_CONNECTIONS") or 10)
API_KEYS = frozenset(key.strip() for key in os.environ.get("APP_API_KEYS", "").split(",") if key.strip())

# Same pool size, overflow and recycle as providers.database.make_engine; no pre-ping, because a
# floor does only what answering needs.
engine = create_engine(
    os.environ["DATABASE_URL"],
    pool_size=_POOL_SIZE,
    max_overflow=_POOL_SIZE,
    pool_recycle=int(os.environ.get("APP_DB_STALE_TIMEOUT") or 300),
)

_COLUMNS = (
    "id, name, description, price, recurrency, provider, url, monthly_price, property_size, lat, lon, "
    "area_name, area_country, area_city, area_lat, area_lon, is_visible, images, version, created_at, updated_at"
)
_GET = text(f"SELECT {_COLUMNS} FROM rooms WHERE id = CAST(:id AS uuid)")
_SEARCH = text(f"SELECT {_COLUMNS} FROM rooms WHERE area_city = :city ORDER BY created_at, id LIMIT :limit")
_INSERT = text(
    "INSERT INTO rooms (id, name, description, price, recurrency, provider, url, monthly_price, property_size, "
    "lat, lon, area_name, area_country, area_city, area_lat, area_lon, is_visible, images, version, "
    "created_at, updated_at) VALUES (CAST(:id AS uuid), :name, :description, :price, :recurrency, :provider, "
    ":url, :monthly_price, :property_size, :lat, :lon, :area_name, :area_country, :area_city, :area_lat, "
    ":area_lon, :is_visible, CAST(:images AS json), 1, :now, :now) "
    f"ON CONFLICT (url) DO NOTHING RETURNING {_COLUMNS}"
)

# Every change is also an outbox event, in the change's transaction, under the same advisory lock
# that keeps positions in commit order, with the room in Avro single-object encoding: the same job
# as the service's, done the shortest way.
_LOCK_OUTBOX = text("SELECT pg_advisory_xact_lock(:key)").bindparams(key=0x726F6F6D73)
_APPEND_EVENT = text(
    "INSERT INTO events (event_id, type, subject, key, occurred_at, entity, entity_fingerprint) "
    "VALUES (CAST(:event_id AS uuid), 'room.created', 'roomservice.Room', :key, :now, :entity, :fingerprint)"
)
_ROOM_SCHEMA = load_schema(str(Path(__file__).resolve().parent.parent / "schemas" / "roomservice.Room.avsc"),
                           _write_hint=False)
_ROOM_FINGERPRINT = fingerprint(to_parsing_canonical_form(_ROOM_SCHEMA), "CRC-64-AVRO")
_ROOM_HEADER = b"\xc3\x01" + bytes.fromhex(_ROOM_FINGERPRINT)

app = Flask(__name__)


def _single_object(room: dict) -> bytes:
    buffer = io.BytesIO()
    buffer.write(_ROOM_HEADER)
    fastavro.schemaless_writer(buffer, _ROOM_SCHEMA, room)
    return buffer.getvalue()


def _json(body, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS), status, headers, mimetype="application/json")


def _problem(status: int, title: str, detail: str) -> Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return Response(orjson.dumps(body), status, mimetype="application/problem+json")


def room_from_row(row) -> dict:
    """Return the API shape of a room row (the same members as providers.sql_rooms.room_from_row).

    Members are read by name, as plain SQLAlchemy code reads them; the service unpacks by position,
    and docs/performance.md says what that is worth.
    """
    room = {
        "id": str(row.id),
        "name": row.name,
        "description": row.description,
        "price": row.price,
        "recurrency": row.recurrency,
        "provider": row.provider,
        "url": row.url,
        "monthly_price": row.monthly_price,
        "property_size": row.property_size,
        "coordinates": {"lat": float(row.lat), "lon": float(row.lon)},
        "is_visible": row.is_visible,
        "images": list(row.images or []),
        "created_at": row.created_at.astimezone(UTC),
        "updated_at": row.updated_at.astimezone(UTC),
    }
    if row.area_name is not None:
        area = {"name": row.area_name, "country": row.area_country, "city": row.area_city}
        if row.area_lat is not None:
            area["coordinates"] = {"lat": float(row.area_lat), "lon": float(row.area_lon)}
        room["area"] = area
    return room


# The database work, shared with bench/stock_app.py so that both do exactly the same.


def read_room(room_id: str) -> tuple[dict, dict[str, str]] | None:
    """Return a room and its headers (ETag), or None when no room has this id."""
    with engine.connect() as connection:
        row = connection.execute(_GET, {"id": room_id}).one_or_none()
    if row is None:
        return None
    return room_from_row(row), {"ETag": f'"{row.version}"'}


def search_page(city: str | None, limit: int, path: str) -> tuple[dict, dict[str, str]]:
    """Return one page of the rooms in `city`, oldest first (the service's default sort), and its headers (Link)."""
    with engine.connect() as connection:
        rows = connection.execute(_SEARCH, {"city": city, "limit": limit + 1}).all()
    rooms = [room_from_row(row) for row in rows[:limit]]
    next_cursor = None
    headers = {}
    if len(rows) > limit:
        last = rooms[-1]
        payload = {"s": "created_at", "v": last["created_at"].isoformat(), "i": last["id"]}
        next_cursor = base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode()
        headers["Link"] = f'<{path}?city={city}&limit={limit}&cursor={next_cursor}>; rel="next"'
    return {"data": rooms, "next_cursor": next_cursor}, headers


def store_room(room: dict) -> tuple[dict, dict[str, str]] | None:
    """Insert a room given as its JSON document, with its outbox event in the same transaction.

    Return the stored room and its headers (Location, ETag), or None when another room has its url.
    """
    area = room.get("area")
    area_point = (area or {}).get("coordinates") or {}
    values = {
        "id": str(uuid.uuid4()),
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
        "images": orjson.dumps([{"url": image["url"]} for image in room.get("images", [])]).decode(),
        "now": datetime.now(UTC),
    }
    with engine.begin() as connection:
        row = connection.execute(_INSERT, values).one_or_none()
        if row is None:
            return None
        created = room_from_row(row)
        event = {"event_id": str(uuid.uuid4()), "key": created["id"], "now": values["now"],
                 "entity": _single_object(created), "fingerprint": _ROOM_FINGERPRINT}
        connection.execute(_LOCK_OUTBOX)
        connection.execute(_APPEND_EVENT, event)
    return created, {"Location": f"/v1/rooms/{row.id}", "ETag": f'"{row.version}"'}


# The floor's own routes: plain Flask views.


@app.get("/v1/health")
def check_health() -> Response:
    """Answer the liveness check: measures what the server and framework cost by themselves."""
    return _json({"status": "ok"})


@app.get("/v1/rooms/<room_id>")
def get_room(room_id: str) -> Response:
    """Return one room."""
    try:
        uuid.UUID(room_id)
    except ValueError:
        return _problem(404, "Not Found", f"Room {room_id} does not exist.")
    found = read_room(room_id)
    if found is None:
        return _problem(404, "Not Found", f"Room {room_id} does not exist.")
    return _json(found[0], 200, found[1])


@app.get("/v1/rooms")
def search_rooms() -> Response:
    """Return one page of the rooms in `city`."""
    page, headers = search_page(request.args.get("city"), int(request.args.get("limit", 20)), request.path)
    return _json(page, 200, headers)


@app.post("/v1/rooms")
def create_room() -> Response:
    """Store a new room and its outbox event (no validation: the floor trusts its benchmark client)."""
    if request.headers.get("X-API-Key") not in API_KEYS:
        return _problem(401, "Unauthorized", "A valid X-API-Key header is required.")
    room = orjson.loads(request.get_data())
    stored = store_room(room)
    if stored is None:
        return _problem(409, "Conflict", f"A room already has the url {room['url']}.")
    return _json(stored[0], 201, stored[1])

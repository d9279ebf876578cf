"""Stock Connexion 3: the service's API as one would write it from Connexion's documentation alone.

`connexion.FlaskApp(__name__)` with its default settings (validators, middleware, jsonifier, a2wsgi's
thread pool, Swagger UI), `add_api` of the project's `swagger/openapi.yaml`, and plain handler
functions that take the spec's parameters and return dicts or `(body, status, headers)` tuples. They
do the floor's database work by calling it (`bench/floor_app.py`: same engine settings, same SQL,
same rows to JSON, same outbox event), so the floor, this app and the service differ only in what
serves the request. Served as Connexion's documentation shows, by bench/run.py:

    DATABASE_URL=... APP_API_KEYS=... uvicorn bench.stock_app:app --workers 2 --no-access-log

(the access log is off as it is for the service and the floor; uvicorn picks uvloop and httptools
when they are installed, as they are here). Also as shipped: the spec accepts JSON and Avro bodies on
`POST /v1/rooms`, so Connexion logs "this operation accepts multiple content types" four times per
POST, and with no logging configured Python writes them to stderr (bench/logs/stock-*.log).

Only the operations the benchmark runs have handlers: `check_health`, `get_room`, `search_rooms`
(`city` and `limit`, the floor's query) and `create_room`. Every other operationId resolves to
`not_implemented`, which answers 501. `GET /v1/rooms/{id}` answers JSON only, as the floor does in
the Avro scenario. Nothing here is served for real.
"""

from __future__ import annotations

from pathlib import Path

import connexion
import yaml
from connexion.resolver import Resolver

from bench.floor_app import API_KEYS, read_room, search_page, store_room

SPEC_FILE = Path(__file__).resolve().parent.parent / "swagger" / "openapi.yaml"
# The spec lists JSON and Avro for these responses, so Connexion needs to be told which one a handler returns.
JSON = {"Content-Type": "application/json"}


def check_api_key(apikey, required_scopes):
    """The `x-apikeyInfoFunc` of the spec's `ApiKeyAuth` scheme: token info for a known key, else None (401)."""
    return {"sub": "bench"} if apikey in API_KEYS else None


def check_health():
    """GET /health."""
    return {"status": "ok"}


def get_room(room_id):
    """GET /rooms/{room_id}."""
    found = read_room(room_id)
    if found is None:
        return connexion.problem(404, "Not Found", f"Room {room_id} does not exist.")
    room, headers = found
    return room, 200, headers | JSON


def search_rooms(city=None, limit=20):
    """GET /rooms: the rooms in `city`, oldest first."""
    page, headers = search_page(city, limit, "/v1/rooms")
    return page, 200, headers | JSON


def create_room(body):
    """POST /rooms (behind `ApiKeyAuth`): store the room and its outbox event."""
    stored = store_room(body)
    if stored is None:
        return connexion.problem(409, "Conflict", f"A room already has the url {body['url']}.")
    room, headers = stored
    return room, 201, headers | JSON


def not_implemented(**kwargs):
    """Every operation the benchmark does not run."""
    return connexion.problem(501, "Not Implemented", "The stock benchmark app serves only the benchmarked operations.")


HANDLERS = {handler.__name__: handler for handler in (check_health, get_room, search_rooms, create_room)}


def resolve(name):
    """Map Connexion's `<x-openapi-router-controller>.<operationId>` (e.g. `api.rooms.get_room`) to a handler here."""
    return HANDLERS.get(name.rpartition(".")[2], not_implemented)


spec = yaml.safe_load(SPEC_FILE.read_text())
spec["components"]["securitySchemes"]["ApiKeyAuth"]["x-apikeyInfoFunc"] = f"{__name__}.check_api_key"

app = connexion.FlaskApp(__name__)
app.add_api(spec, resolver=Resolver(function_resolver=resolve))

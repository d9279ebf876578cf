"""The main API scenarios through the whole HTTP stack on in-memory providers, with the speedups on and off.

No database: the providers are the in-memory fakes of composition.InMemoryProvidersModule. Every answer of a
scenario must be the same whichever speedups are on (web/speedups promises the same behaviour for less CPU).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import fastavro
import pytest

from app import create_app, dispose_app
from composition import InMemoryProvidersModule
from contract.avro import AvroSchemas, to_datum
from settings import Settings
from tests.support.factories import MERGE_PATCH, new_room
from web.speedups import Speedups

KEY = "unit-key"
AUTH = {"X-API-Key": KEY}
SCHEMAS = AvroSchemas()
_VOLATILE = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\d{4}-\d\d-\d\dT[0-9:.+-]+|[0-9a-f]{32}"
    r"|(?<=cursor=)[A-Za-z0-9_-]+"
)


@pytest.fixture(params=["speedups on", "speedups off"])
def client(request, tmp_path) -> Iterator:
    """A test client of the app on fakes; the database URL is never connected to."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'never-opened.sqlite3'}", api_keys=frozenset({KEY}),
                        validate_responses=True)
    speedups = Speedups.all_on() if request.param == "speedups on" else Speedups.all_off()
    app = create_app(settings, modules=[InMemoryProvidersModule()], speedups=speedups)
    try:
        yield app.test_client()
    finally:
        dispose_app(app)
    assert not (tmp_path / "never-opened.sqlite3").exists()


def masked_volatile(document):
    """The document with ids, timestamps and request ids masked, so that two runs compare equal."""
    if isinstance(document, dict):
        return {key: "…" if key == "next_cursor" and value else masked_volatile(value) for key, value in document.items()}
    if isinstance(document, list):
        return [masked_volatile(value) for value in document]
    return _VOLATILE.sub("…", document) if isinstance(document, str) else document


def avro_container(record: str, entity: dict) -> bytes:
    schema = SCHEMAS.get(record)
    buffer = io.BytesIO()
    fastavro.writer(buffer, schema.parsed, [to_datum(schema.document, entity)])
    return buffer.getvalue()


def transcript(client) -> list[tuple]:
    """Run the main scenarios; return what each answer said, ids and timestamps masked."""
    answers: list[tuple] = []

    def call(method: str, path: str, **options):
        response = client.request(method, path, **options)
        is_json = response.content and response.headers.get("content-type", "").endswith("json")
        body = response.json() if is_json else response.content
        masked = masked_volatile(body) if not isinstance(body, bytes) else len(body)
        headers = {name: _VOLATILE.sub("…", response.headers[name])
                   for name in ("etag", "location", "link", "content-type", "vary", "allow", "idempotent-replayed")
                   if name in response.headers}
        answers.append((method, _VOLATILE.sub("…", path), response.status_code, headers, masked))
        return response

    # rooms: create (JSON and Avro), read (JSON, Avro, 304), conditional merge patch, search with pages, delete
    created = call("POST", "/v1/rooms", json=new_room(name="Room one", url="https://example.com/unit/1", price=400), headers=AUTH)
    assert created.status_code == 201, created.text
    room_id = created.json()["id"]
    avro = call("POST", "/v1/rooms", content=avro_container("NewRoom", new_room(name="Room two", url="https://example.com/unit/2")),
                headers={**AUTH, "Content-Type": "application/avro"})
    assert avro.status_code == 201, avro.text
    call("GET", f"/v1/rooms/{room_id}")
    assert call("GET", f"/v1/rooms/{room_id}", headers={"Accept": "application/avro"}).content.startswith(b"Obj\x01")
    assert call("GET", f"/v1/rooms/{room_id}", headers={"If-None-Match": '"1"'}).status_code == 304
    patch = {**AUTH, "Content-Type": MERGE_PATCH}
    assert call("PATCH", f"/v1/rooms/{room_id}", content=b'{"price": 450}', headers={**patch, "If-Match": '"1"'}).status_code == 200
    assert call("PATCH", f"/v1/rooms/{room_id}", content=b'{"price": 460}', headers={**patch, "If-Match": '"1"'}).status_code == 412
    first = call("GET", "/v1/rooms?city=Berlin&sort=price&limit=1")
    assert first.status_code == 200 and "link" in first.headers
    call("GET", f"/v1/rooms?city=Berlin&sort=price&limit=1&cursor={first.json()['next_cursor']}")
    # items: idempotent create and its replay, replace, delete
    keyed = {**AUTH, "Idempotency-Key": "unit-1"}
    item = call("POST", "/v1/items", json={"name": "Desk lamp"}, headers=keyed)
    replay = call("POST", "/v1/items", json={"name": "Desk lamp"}, headers=keyed)
    assert replay.headers["idempotent-replayed"] == "true" and replay.content == item.content
    assert call("POST", "/v1/items", json={"name": "Floor lamp"}, headers=keyed).status_code == 422
    item_path = item.headers["location"]
    assert call("PUT", item_path, json={"name": "Floor lamp"}, headers={**AUTH, "If-Match": '"1"'}).status_code == 200
    call("GET", "/v1/items?name=lamp")
    assert call("DELETE", item_path, headers=AUTH).status_code == 204
    # questions: client-chosen codes, conflicts
    question = {"question_code": "1001", "category": "general", "message": "How far is the station?"}
    assert call("POST", "/v1/questions", json=question, headers=AUTH).status_code == 201
    assert call("POST", "/v1/questions", json=question, headers=AUTH).status_code == 409
    call("GET", "/v1/questions/1001")
    # the feed, the schemas, the docs
    assert call("GET", "/v1/events?after=0&limit=100").json()["last_position"] >= 6
    assert call("GET", "/v1/schemas/roomservice.Room", headers={"If-None-Match": "*"}).status_code == 304
    assert call("GET", "/openapi.json").status_code == 200
    # problems: validation (every field), security, routing, negotiation, media type
    bad = call("POST", "/v1/rooms", json=new_room(price=-1, name="", url="https://example.com/unit/3"), headers=AUTH)
    assert bad.status_code == 400 and len(bad.json()["errors"]) == 2
    assert call("POST", "/v1/rooms", json=new_room(name="Room four", url="https://example.com/unit/4"),
                headers={"X-API-Key": "wrong"}).status_code == 401
    assert call("GET", "/v1/rooms/not-a-uuid").status_code == 400
    assert call("GET", "/v1/items/999").status_code == 404
    assert call("PUT", "/v1/rooms").status_code == 405
    assert call("GET", f"/v1/rooms/{room_id}", headers={"Accept": "text/csv"}).status_code == 406
    assert call("POST", "/v1/items", content=b"name=x", headers={**AUTH, "Content-Type": "text/plain"}).status_code == 415
    assert call("DELETE", f"/v1/rooms/{room_id}", headers=AUTH).status_code == 204
    return answers


def test_the_main_scenarios_answer_as_documented(client):
    answers = transcript(client)
    assert all(status < 500 for _method, _path, status, _headers, _body in answers)


def test_the_speedups_change_no_answer(tmp_path):
    transcripts = []
    for speedups in (Speedups.all_on(), Speedups.all_off()):
        settings = Settings(database_url=f"sqlite:///{tmp_path / 'never-opened.sqlite3'}", api_keys=frozenset({KEY}),
                            validate_responses=True)
        app = create_app(settings, modules=[InMemoryProvidersModule()], speedups=speedups)
        try:
            transcripts.append(transcript(app.test_client()))
        finally:
            dispose_app(app)
    on, off = transcripts
    assert len(on) == len(off)
    for with_speedups, without in zip(on, off, strict=True):
        assert with_speedups == without


class Stamp:
    """An ASGI middleware of the tests' own: it stamps every answer with a header."""

    def __init__(self, app, *, value: str) -> None:
        self.app = app
        self.value = value.encode()

    async def __call__(self, scope, receive, send) -> None:
        async def stamped(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), (b"x-stamp", self.value)]}
            await send(message)

        await self.app(scope, receive, stamped)


class Teapot(Exception):
    """A domain error of the tests' own, mapped by a handler added after the app was built."""


def test_the_built_app_can_still_be_extended_through_public_apis(tmp_path):
    from connexion.lifecycle import ConnexionResponse
    from connexion.middleware import MiddlewarePosition

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'never-opened.sqlite3'}", api_keys=frozenset({KEY}))
    app = create_app(settings, modules=[InMemoryProvidersModule()])
    try:
        app.add_middleware(Stamp, position=MiddlewarePosition.BEFORE_SECURITY, value="added")
        app.add_error_handler(Teapot, lambda _request, _error: ConnexionResponse(status_code=418, body=b"teapot"))
        seen: list[str] = []
        app.app.before_request(lambda: seen.append("flask hook"))

        @app.app.route("/teapot")  # a plain Flask route beside the spec's
        def teapot():
            raise Teapot()

        client = app.test_client()
        health = client.get("/v1/health")
        assert health.status_code == 200 and health.headers["x-stamp"] == "added"
        assert seen == ["flask hook"]
        assert client.get("/teapot").status_code == 418
    finally:
        dispose_app(app)


def test_the_speedups_switch_swaps_the_parts_and_only_those(tmp_path):
    from a2wsgi import WSGIMiddleware

    from contract.rules import validator_for
    from web.speedups.bridge import BufferedWSGIBridge
    from web.speedups.precheck import prechecked_validator_for

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'never-opened.sqlite3'}", api_keys=frozenset({KEY}))
    on = create_app(settings, modules=[InMemoryProvidersModule()])
    off = create_app(Settings(**{**settings.__dict__, "speedups": False}), modules=[InMemoryProvidersModule()])
    try:
        assert isinstance(on._middleware_app.asgi_app, BufferedWSGIBridge)
        assert isinstance(off._middleware_app.asgi_app, WSGIMiddleware)
        on_body = on.middleware.options.validator_map["body"]["application/json"]
        off_body = off.middleware.options.validator_map["body"]["application/json"]
        assert on_body.validator_for is prechecked_validator_for and off_body.validator_for is validator_for
    finally:
        dispose_app(on)
        dispose_app(off)

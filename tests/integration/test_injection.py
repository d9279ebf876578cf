"""Dependency injection survives the real HTTP stack, and an override module swaps in a fake."""

from __future__ import annotations

import sqlalchemy as sa
from flask_injector import request
from injector import Module, provider

from app import create_app, dispose_app
from composition import InMemoryProvidersModule
from contract.avro import AvroSchemas
from providers.memory_rooms import InMemoryRoomsProvider
from providers.rooms import RoomsProvider
from providers.sql_events import SqlOutbox
from providers.sql_rooms import SqlRoomsProvider
from tests.support.factories import new_room
from web.transactions import RequestTransaction

SCHEMAS = AvroSchemas()


class RecordingRoomsModule(Module):
    """Binds RoomsProvider to the real SQL provider, remembering each instance handed to a handler."""

    def __init__(self) -> None:
        self.handed_out: list[RoomsProvider] = []

    @request
    @provider
    def rooms(self, transaction: RequestTransaction) -> RoomsProvider:
        instance = SqlRoomsProvider(transaction.connection, SqlOutbox(transaction.connection, SCHEMAS))
        self.handed_out.append(instance)
        return instance


def test_handlers_receive_the_sql_provider_through_the_http_stack(settings, auth, engine):
    recorder = RecordingRoomsModule()
    app = create_app(settings, modules=[recorder])
    try:
        client = app.test_client()
        created = client.post("/v1/rooms", json=new_room(), headers=auth)
        assert created.status_code == 201
        assert client.get(created.headers["Location"]).status_code == 200
    finally:
        dispose_app(app)
    # One provider per request, each a SqlRoomsProvider, and the row really is in the database.
    assert len(recorder.handed_out) == 2
    assert all(isinstance(p, SqlRoomsProvider) for p in recorder.handed_out)
    assert recorder.handed_out[0] is not recorder.handed_out[1]
    with engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT url FROM rooms")).scalars().all()
    assert stored == [created.json()["url"]]


def test_the_default_composition_stores_rooms_in_the_database(client, auth, engine):
    created = client.post("/v1/rooms", json=new_room(), headers=auth).json()
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM rooms")).scalar_one() == 1
    assert client.get(f"/v1/rooms/{created['id']}").json() == created


def test_an_override_module_swaps_in_the_in_memory_fake(settings, auth, engine):
    fake = InMemoryProvidersModule()
    app = create_app(settings, modules=[fake])
    try:
        client = app.test_client()
        created = client.post("/v1/rooms", json=new_room(), headers=auth)
        assert created.status_code == 201, created.text
        room = created.json()
        assert isinstance(fake.rooms, InMemoryRoomsProvider)
        assert fake.rooms.get(room["id"]).room["url"] == room["url"]
        assert client.get(f"/v1/rooms/{room['id']}").json() == room
        assert client.get("/v1/rooms").json()["data"] == [room]
    finally:
        dispose_app(app)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM rooms")).scalar_one() == 0

"""One owner of each transaction: a failing request leaves nothing behind; faults are 500 problems without internals."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from flask_injector import request
from injector import Module, provider

from app import create_app, dispose_app
from contract.avro import AvroSchemas
from contract.errors import Conflict
from providers.rooms import Room, RoomsProvider, StoredRoom
from providers.sql_events import SqlOutbox
from providers.sql_rooms import SqlRoomsProvider
from tests.support.factories import new_room
from web.transactions import RequestTransaction

SCHEMAS = AvroSchemas()


class WritesThenFails(SqlRoomsProvider):
    """Stores the room, then fails: the request must end with nothing stored."""

    error: Exception = Conflict("refused after writing")

    def create(self, new_room: Room) -> StoredRoom:
        super().create(new_room)
        raise self.error


def _module(error: Exception) -> Module:
    class Failing(Module):
        @request
        @provider
        def rooms(self, transaction: RequestTransaction) -> RoomsProvider:
            provider_ = WritesThenFails(transaction.connection, SqlOutbox(transaction.connection, SCHEMAS))
            provider_.error = error
            return provider_

    return Failing()


def rows(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.text("SELECT count(*) FROM rooms")).scalar_one()


def test_a_domain_error_after_a_write_rolls_the_write_back(settings, auth, engine):
    app = create_app(settings, modules=[_module(Conflict("refused after writing"))])
    try:
        response = app.test_client().post("/v1/rooms", json=new_room(), headers=auth)
    finally:
        dispose_app(app)
    assert response.status_code == 409
    assert rows(engine) == 0


def test_an_unexpected_fault_is_a_logged_500_problem_without_internals(settings, auth, engine, caplog):
    app = create_app(settings, modules=[_module(RuntimeError("secret connection string"))])
    try:
        with caplog.at_level(logging.ERROR):
            response = app.test_client().post("/v1/rooms", json=new_room(), headers=auth)
    finally:
        dispose_app(app)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "secret" not in response.text
    assert response.json()["title"] == "Internal Server Error"
    assert any(record.exc_info and "secret connection string" in str(record.exc_info[1]) for record in caplog.records)
    assert rows(engine) == 0


def test_a_successful_write_is_committed(client, auth, engine):
    assert client.post("/v1/rooms", json=new_room(), headers=auth).status_code == 201
    assert rows(engine) == 1

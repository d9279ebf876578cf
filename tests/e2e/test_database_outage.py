"""A database outage: 503 problems with Retry-After, one warning, health and docs still served; recovery without a restart.

The PostgreSQL tests stop and start a real cluster of this module's own (the session's cluster is shared by
every other test) under a running server. Faults that are not outages (an SQL mistake, a constraint
violation) stay 500 with their stack trace.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import sqlalchemy as sa
from flask_injector import request
from injector import Module, provider

from app import create_app, dispose_app
from providers.availability import DatabaseOutages, unavailable_reason
from providers.database import migrate
from providers.events import Outbox
from providers.rooms import Room, RoomsProvider, StoredRoom
from providers.sql_rooms import SqlRoomsProvider
from settings import Settings
from tests.conftest import API_KEY, LiveServer
from tests.support.factories import new_room
from tests.support.postgres import ThrowawayPostgres
from tests.support.serve_process import ServeProcess
from web.transactions import RequestTransaction

AUTH = {"X-API-Key": API_KEY}
PAUSE = "Paused mid-transaction"
OUTAGE_LOG = "providers.availability"


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[ThrowawayPostgres]:
    """A PostgreSQL cluster for this module alone, with a migrated `rooms` database; its tests stop and start it."""
    server = ThrowawayPostgres()
    try:
        admin = sa.create_engine(server.start(), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.exec_driver_sql("CREATE DATABASE rooms")
        admin.dispose()
        migrate(_rooms_url(server))
        yield server
    finally:
        server.stop()


def _rooms_url(server: ThrowawayPostgres) -> str:
    return server.url.rsplit("/", 1)[0] + "/rooms"


@pytest.fixture
def outage_url(own_postgres: ThrowawayPostgres) -> str:
    """The module cluster's `rooms` database, running and empty."""
    if own_postgres.process is None or own_postgres.process.poll() is not None:
        own_postgres.start_server()  # a failed test may have left it stopped
    engine = sa.create_engine(_rooms_url(own_postgres))
    with engine.begin() as connection:
        connection.exec_driver_sql("TRUNCATE rooms, items, questions, events RESTART IDENTITY CASCADE")
    engine.dispose()
    return _rooms_url(own_postgres)


class PausingRooms(SqlRoomsProvider):
    """Creates a room named PAUSE, then waits for the test: a request caught in the middle of its transaction."""

    entered: threading.Event
    release: threading.Event

    def create(self, new_room: Room) -> StoredRoom:
        stored = super().create(new_room)
        if new_room["name"] == PAUSE:
            self.entered.set()
            self.release.wait(30)
        return stored


def pausing(entered: threading.Event, release: threading.Event) -> Module:
    class Pausing(Module):
        @request
        @provider
        def rooms(self, transaction: RequestTransaction, outbox: Outbox) -> RoomsProvider:
            rooms = PausingRooms(transaction.connection, outbox)
            rooms.entered, rooms.release = entered, release
            return rooms

    return Pausing()


def fill_pool(engine: sa.Engine, count: int) -> None:
    """Leave `count` idle connections in the pool, as a busy moment would."""
    connections = [engine.connect() for _ in range(count)]
    for connection in connections:
        connection.exec_driver_sql("SELECT 1")
    for connection in connections:
        connection.close()
    assert engine.pool.checkedin() >= count


def assert_503(response: httpx.Response, retry_after: int) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == str(retry_after)
    body = response.json()
    assert body["status"] == 503 and body["title"] == "Service Unavailable"
    assert "Traceback" not in response.text and "psycopg2" not in response.text


def stored_urls(url: str) -> set[str]:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        urls = set(connection.execute(sa.text("SELECT url FROM rooms")).scalars())
    engine.dispose()
    return urls


def room_created_events(url: str) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        count = connection.execute(sa.text("SELECT count(*) FROM events WHERE type = 'room.created'")).scalar_one()
    engine.dispose()
    return count


def test_an_outage_is_503_with_one_warning_and_ends_without_a_restart(own_postgres, outage_url, caplog):
    settings = Settings(database_url=outage_url, api_keys=frozenset({API_KEY}), validate_responses=True,
                        pool_size=5, retry_after_seconds=7)
    entered, release = threading.Event(), threading.Event()
    app = create_app(settings, modules=[pausing(entered, release)])
    kept, during, after = new_room(), new_room(), new_room()
    paused_room = new_room(name=PAUSE)
    try:
        with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as http, \
                ThreadPoolExecutor(8) as pool:
            def get(path: str) -> httpx.Response:
                return httpx.get(server.url + path, timeout=30)

            created = http.post("/v1/rooms", json=kept, headers=AUTH)
            assert created.status_code == 201
            room = created.headers["location"]
            # Idle pooled connections, every one of which dies with the cluster.
            fill_pool(app.injector.get(sa.Engine), 4)
            assert http.get("/v1/ready").status_code == 200
            paused = pool.submit(httpx.post, f"{server.url}/v1/rooms", json=paused_room, headers=AUTH, timeout=30)
            assert entered.wait(10), "the paused write never reached its provider"
            caplog.set_level(logging.INFO)
            caplog.clear()

            own_postgres.stop_server()
            for response in [
                http.get(room),
                http.get("/v1/rooms", params={"city": "Berlin"}),
                http.post("/v1/rooms", json=during, headers=AUTH),
                http.delete(room, headers=AUTH),
                http.get("/v1/items"),
                http.get("/v1/questions/1001"),
                http.get("/v1/events"),
                *pool.map(get, ["/v1/rooms"] * 8),
            ]:
                assert_503(response, 7)
            assert http.get("/v1/health").json() == {"status": "ok"}
            assert http.get("/openapi.json").status_code == 200
            assert http.get("/v1/schemas").status_code == 200
            not_ready = http.get("/v1/ready")
            assert_503(not_ready, 7)
            assert not_ready.json()["detail"] == "The database is unreachable."
            # The write caught mid-transaction finds its connection gone at commit: 503, nothing acknowledged.
            release.set()
            assert_503(paused.result(timeout=30), 7)

            warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
            assert [(record.name, record.levelname) for record in warnings] == [(OUTAGE_LOG, "WARNING")]
            assert warnings[0].getMessage().startswith("Database unavailable: ")
            assert not [record for record in caplog.records if record.exc_info]
            caplog.clear()

            own_postgres.start_server()
            assert http.get("/v1/ready").json() == {"status": "ready"}
            # From the first request on, everything succeeds: the pool replaced the connections that died.
            assert http.post("/v1/rooms", json=after, headers=AUTH).status_code == 201
            assert http.get(room).status_code == 200
            assert [response.status_code for response in pool.map(get, [room] * 8)] == [200] * 8
            found = {r["url"] for r in http.get("/v1/rooms", params={"limit": 100}).json()["data"]}
            assert found == {kept["url"], after["url"]}
            back = [record for record in caplog.records if record.name == OUTAGE_LOG]
            assert [record.levelname for record in back] == ["INFO"]
            assert back[0].getMessage().startswith("Database reachable again after ")
            assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
    finally:
        release.set()
        dispose_app(app)
    # Nothing half-written: neither the paused write nor the refused one, and no event without its room.
    assert stored_urls(outage_url) == {kept["url"], after["url"]}
    assert room_created_events(outage_url) == 2


def test_serve_py_logs_the_outage_once_and_its_end_without_a_trace(own_postgres, outage_url, tmp_path):
    # The production entry point and its logging: the two lines must reach the log as they are documented.
    with ServeProcess(outage_url, tmp_path / "serve.log", APP_RETRY_AFTER_SECONDS="4") as server:
        room = httpx.post(f"{server.url}/v1/rooms", json=new_room(), headers=AUTH).headers["location"]
        own_postgres.stop_server()
        for _ in range(3):
            assert_503(httpx.get(server.url + room), 4)
        assert_503(httpx.get(f"{server.url}/v1/ready"), 4)
        own_postgres.start_server()
        assert [httpx.get(server.url + room).status_code for _ in range(3)] == [200] * 3
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0
        output = server.output()
    assert "Traceback" not in output, output
    # The text format: time, level, logger, [request id], message (observability/logs.py).
    outage = [line for line in output.splitlines() if " providers.availability [" in line]
    assert len(outage) == 2, output
    assert re.search(r" WARNING providers\.availability \[[0-9a-f-]+\] Database unavailable: ", outage[0]), outage[0]
    assert outage[0].endswith("Answering 503 until it is back.")
    assert re.search(r" INFO providers\.availability \[[0-9a-f-]+\] Database reachable again after ", outage[1]), outage[1]
    assert outage[1].endswith("4 request(s) were answered 503.")


@pytest.mark.parametrize("pre_ping, statuses", [(False, [503, 200, 200, 200, 200]), (True, [200] * 5)],
                         ids=["without-pre-ping", "with-pre-ping"])
def test_a_restart_the_service_did_not_see_costs_one_503_without_pre_ping_and_none_with_it(
        own_postgres, outage_url, pre_ping, statuses):
    settings = Settings(database_url=outage_url, api_keys=frozenset({API_KEY}), pool_size=5, pool_pre_ping=pre_ping)
    app = create_app(settings)
    try:
        client = app.test_client(raise_server_exceptions=False)
        room = client.post("/v1/rooms", json=new_room(), headers=AUTH).headers["location"]
        fill_pool(app.injector.get(sa.Engine), 3)
        own_postgres.stop_server()
        own_postgres.start_server()
        # The first request to meet a dead connection invalidates the whole pool, not just its own connection.
        assert [client.get(room).status_code for _ in statuses] == statuses
        assert not app.injector.get(DatabaseOutages).ongoing
    finally:
        dispose_app(app)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_sqlite_file_out_of_reach_is_503_and_back_without_a_restart(settings, sqlite_template, tmp_path, caplog):
    folder = tmp_path / "db"
    folder.mkdir()
    shutil.copy(sqlite_template, folder / "rooms.sqlite3")
    # Pooled connections older than a second are reopened on checkout (APP_DB_STALE_TIMEOUT).
    sqlite = dataclasses.replace(settings, database_url=f"sqlite:///{folder / 'rooms.sqlite3'}",
                                 pool_recycle_seconds=1, retry_after_seconds=3)
    app = create_app(sqlite)
    try:
        client = app.test_client(raise_server_exceptions=False)
        room = client.post("/v1/rooms", json=new_room(), headers=AUTH).headers["location"]
        caplog.set_level(logging.INFO)
        os.rename(folder, tmp_path / "away")
        folder.write_text("not a folder")  # so nothing can open, or create, the database file
        time.sleep(1.1)
        for response in [client.get(room), client.post("/v1/rooms", json=new_room(), headers=AUTH), client.get("/v1/ready")]:
            assert_503(response, 3)
        assert client.get("/v1/health").status_code == 200
        assert [(r.name, r.levelname) for r in caplog.records if r.levelno >= logging.WARNING] == [(OUTAGE_LOG, "WARNING")]
        folder.unlink()
        os.rename(tmp_path / "away", folder)
        assert client.get(room).status_code == 200
        assert client.get("/v1/ready").status_code == 200
        outage = [record.getMessage() for record in caplog.records if record.name == OUTAGE_LOG]
        assert len(outage) == 2
        assert outage[0].startswith("Database unavailable: cannot connect (unable to open database file)")
        assert outage[1].startswith("Database reachable again after ")
    finally:
        dispose_app(app)


class BrokenRooms(SqlRoomsProvider):
    """Runs one bad statement when asked for a room."""

    statement = ""

    def get(self, room_id: str, *, for_update: bool = False) -> StoredRoom:
        self._connection.exec_driver_sql(self.statement)
        raise AssertionError("the statement was meant to fail")


def broken(statement: str) -> Module:
    class Broken(Module):
        @request
        @provider
        def rooms(self, transaction: RequestTransaction, outbox: Outbox) -> RoomsProvider:
            rooms = BrokenRooms(transaction.connection, outbox)
            rooms.statement = statement
            return rooms

    return Broken()


@pytest.mark.parametrize("statement", ["SELECT no_such_column FROM rooms", "INSERT INTO rooms (id) VALUES (NULL)"],
                         ids=["sql-mistake", "constraint-violation"])
def test_sql_mistakes_and_constraint_violations_stay_500_with_their_trace(settings, statement, caplog):
    app = create_app(settings, modules=[broken(statement)])
    try:
        with caplog.at_level(logging.ERROR):
            response = app.test_client(raise_server_exceptions=False).get(f"/v1/rooms/{uuid.uuid4()}")
        assert not app.injector.get(DatabaseOutages).ongoing
    finally:
        dispose_app(app)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "retry-after" not in response.headers
    assert any(record.exc_info and isinstance(record.exc_info[1], sa.exc.DBAPIError) for record in caplog.records)


def test_connection_level_errors_are_outages_and_others_are_not(tmp_path):
    refused = sa.create_engine("postgresql+psycopg2://rooms@127.0.0.1:9/rooms")
    with pytest.raises(sa.exc.OperationalError) as connect_error:
        refused.connect()
    assert unavailable_reason(connect_error.value).startswith("cannot connect (connection to server at")

    # A pool with one connection, already taken: the next checkout times out.
    tiny = sa.create_engine(f"sqlite:///{tmp_path / 'tiny.sqlite3'}", pool_size=1, max_overflow=0, pool_timeout=0.1)
    with tiny.connect(), pytest.raises(sa.exc.TimeoutError) as pool_timeout:
        tiny.connect()
    assert unavailable_reason(pool_timeout.value).startswith("no pooled connection became free in time")

    with tiny.connect() as connection:
        with pytest.raises(sa.exc.OperationalError) as sql_mistake:
            connection.exec_driver_sql("SELECT * FROM no_such_table")
    assert unavailable_reason(sql_mistake.value) is None  # SQLite reports it as "operational", yet it is ours
    assert unavailable_reason(RuntimeError("not a database error")) is None
    refused.dispose()
    tiny.dispose()

"""The service is a Flask app with Flask-Injector: extensions, Flask's CLI, `g` and `current_app` work, and
each request has one transaction on one connection, returned to the pool after it, whatever happens."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from connexion import FlaskApp
from flask import Flask, current_app, g, request
from flask_injector import FlaskInjector
from flask_injector import request as request_scope
from injector import Inject, Module, provider

from app import create_app, dispose_app
from contract.avro import AvroSchemas
from providers.rooms import RoomsProvider
from providers.sql_events import SqlOutbox
from providers.sql_rooms import SqlRoomsProvider
from tests.support.factories import new_room
from web.speedups import Speedups
from web.speedups.bridge import BufferedWSGIBridge
from web.transactions import RequestTransaction

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = AvroSchemas()


class RequestLog:
    """A Flask extension of the tests' own, in the usual `init_app` shape: it records every request it sees."""

    def __init__(self, app: Flask | None = None) -> None:
        self.seen: list[tuple[str | None, int, str | None]] = []
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register the extension's hooks on `app`."""
        app.extensions["request_log"] = self

        @app.before_request
        def note_start() -> None:
            g.request_log_started = True

        @app.after_request
        def note_answer(response):
            assert g.request_log_started
            self.seen.append((request.endpoint, response.status_code, g.get("handled_by")))
            return response


class FlaskAwareRoomsModule(Module):
    """The real SQL provider, built while the handler runs: it reads `current_app` and leaves a mark in `g`."""

    def __init__(self) -> None:
        self.threads: list[str] = []

    @request_scope
    @provider
    def rooms(self, transaction: RequestTransaction) -> RoomsProvider:
        g.handled_by = current_app.name
        self.threads.append(threading.current_thread().name)
        return SqlRoomsProvider(transaction.connection, SqlOutbox(transaction.connection, SCHEMAS))


@pytest.fixture
def flask_aware(settings):
    module = FlaskAwareRoomsModule()
    service = create_app(settings, modules=[module])
    yield service, module
    dispose_app(service)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_flask_extension_initialised_on_the_app_sees_every_request_and_handlers_see_g_and_current_app(
        flask_aware, auth):
    service, module = flask_aware
    log = RequestLog(service.app)
    client = service.test_client()
    created = client.post("/v1/rooms", json=new_room(), headers=auth)
    assert created.status_code == 201
    assert client.get(created.headers["Location"]).status_code == 200
    assert client.get("/v1/health").status_code == 200
    flask_name = service.app.name
    assert log.seen == [
        ("/v1.api_rooms_create_room", 201, flask_name),
        ("/v1.api_rooms_get_room", 200, flask_name),
        ("/v1.api_health_check_health", 200, None),
    ]
    # Handlers run in the APP_THREADS pool, behind the bridge this project puts in front of Flask.
    assert module.threads and all(name.startswith("handler") for name in module.threads)
    assert isinstance(service._middleware_app.asgi_app, BufferedWSGIBridge)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("decorate_once", [True, False])
def test_each_handler_is_decorated_once_however_many_requests_it_serves(settings, auth, monkeypatch, decorate_once):
    # Connexion's FlaskOperation decorates every handler again on every request; web/speedups/decorate_once.py
    # keeps what an operation's first request built. Without it, Connexion's own behaviour is asserted too:
    # if a Connexion release decorates once by itself, that half fails, and the speedup can go.
    from connexion.decorators import FlaskDecorator

    decorated: list[str] = []
    original = FlaskDecorator.decorate
    monkeypatch.setattr(FlaskDecorator, "decorate",
                        lambda self, function: decorated.append(function.__name__) or original(self, function))
    service = create_app(settings, speedups=Speedups(decorate_once=decorate_once))
    try:
        client = service.test_client()
        created = [client.post("/v1/rooms", json=new_room(), headers=auth) for _ in range(3)]
        for response in created:
            assert response.status_code == 201
            assert client.get(response.headers["Location"]).json() == response.json()
        city = created[0].json()["area"]["city"]
        page = client.get("/v1/rooms", params={"city": city, "limit": 2}).json()
        assert len(page["data"]) == 2 and page["next_cursor"]
        assert client.get("/v1/rooms", params={"city": city, "cursor": page["next_cursor"]}).status_code == 200
    finally:
        dispose_app(service)
    if decorate_once:
        assert sorted(decorated) == ["create_room", "get_room", "search_rooms"]
    else:
        assert Counter(decorated) == {"create_room": 3, "get_room": 3, "search_rooms": 2}


def _spec_operation_ids() -> set[str]:
    spec = yaml.safe_load((PROJECT_ROOT / "swagger" / "openapi.yaml").read_text())
    return {op["operationId"] for item in spec["paths"].values() for op in item.values() if isinstance(op, dict)}


def test_flask_routes_lists_every_operation_of_the_spec(tmp_path):
    environ = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'rooms.sqlite3'}", "APP_API_KEYS": "k"}
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "app:flask_app", "routes"], cwd=PROJECT_ROOT,
                            env=environ, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines()[2:] if line.strip()}
    for operation_id in _spec_operation_ids():
        assert any(endpoint.endswith(f"_{operation_id}") for endpoint in listed), operation_id


class CountedPool:
    """Counts the checkouts and check-ins of an engine's pool."""

    def __init__(self, engine: sa.Engine) -> None:
        self.checkouts = self.checkins = 0
        sa.event.listen(engine, "checkout", self._out)
        sa.event.listen(engine, "checkin", self._in)

    def _out(self, *_args) -> None:
        self.checkouts += 1

    def _in(self, *_args) -> None:
        self.checkins += 1


class RaisesAfterWriting(SqlRoomsProvider):
    def create(self, new_room):
        super().create(new_room)
        raise RuntimeError("the handler fails after its write")


class FailingWritesModule(Module):
    @request_scope
    @provider
    def rooms(self, transaction: RequestTransaction) -> RoomsProvider:
        return RaisesAfterWriting(transaction.connection, SqlOutbox(transaction.connection, SCHEMAS))


def test_each_request_uses_one_connection_and_returns_it_also_when_the_handler_raises(settings, auth, engine):
    service = create_app(settings)
    failing = create_app(settings, modules=[FailingWritesModule()])
    try:
        pool = CountedPool(service.injector.get(sa.Engine))
        client = service.test_client()
        created = client.post("/v1/rooms", json=new_room(), headers=auth)
        assert created.status_code == 201
        assert (pool.checkouts, pool.checkins) == (1, 1)
        # A PATCH reads, checks and writes: still one connection.
        patched = client.patch(created.headers["Location"], content='{"price": 700}',
                               headers=auth | {"Content-Type": "application/merge-patch+json"})
        assert patched.status_code == 200
        assert (pool.checkouts, pool.checkins) == (2, 2)
        # No database work, no connection.
        assert client.get("/v1/health").status_code == 200
        assert client.get("/v1/rooms", params={"cursor": "not-a-cursor"}).status_code == 400
        assert (pool.checkouts, pool.checkins) == (2, 2)

        failing_pool = CountedPool(failing.injector.get(sa.Engine))
        answer = failing.test_client(raise_server_exceptions=False).post("/v1/rooms", json=new_room(), headers=auth)
        assert answer.status_code == 500
        assert (failing_pool.checkouts, failing_pool.checkins) == (1, 1)
    finally:
        dispose_app(service)
        dispose_app(failing)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM rooms")).scalar_one() == 1
        assert connection.execute(sa.text("SELECT count(*) FROM events")).scalar_one() == 2


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_handlers_hooks_and_providers_of_one_request_share_one_transaction(settings, auth):
    seen: list[RequestTransaction] = []

    class Recording(Module):
        @request_scope
        @provider
        def rooms(self, transaction: RequestTransaction) -> RoomsProvider:
            seen.append(transaction)
            return SqlRoomsProvider(transaction.connection, SqlOutbox(transaction.connection, SCHEMAS))

    service = create_app(settings, modules=[Recording()])
    ended: list[RequestTransaction] = []
    original_end = RequestTransaction.end
    try:
        RequestTransaction.end = lambda self, status: ended.append(self) or original_end(self, status)
        client = service.test_client()
        assert client.post("/v1/rooms", json=new_room(), headers=auth).status_code == 201
        assert client.post("/v1/rooms", json=new_room(), headers=auth).status_code == 201
    finally:
        RequestTransaction.end = original_end
        dispose_app(service)
    assert len(seen) == 2 and seen[0] is not seen[1]
    assert ended == seen


TINY_SPEC = {
    "openapi": "3.0.3",
    "info": {"title": "tiny", "version": "1"},
    "paths": {"/greeting": {"get": {
        "operationId": "tests.integration.test_flask_app.greet",
        "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {"type": "string"}}}}},
    }}},
}


class Greeter:
    def greet(self) -> str:
        return "hello"


def greet(greeter: Inject[Greeter]) -> str:
    """A handler written for Flask-Injector."""
    return greeter.greet()


def test_flask_injector_alone_does_not_reach_connexion_3_handlers():
    # The wiring Flask-Injector's README shows, on a Connexion 3 FlaskApp: it wraps the view functions
    # it finds, and Connexion registers its routes only later and calls handlers with the spec's
    # parameters only. This is why web/injection.py injects where operationIds resolve; if a Connexion
    # or Flask-Injector release makes this pass, that bridge can go.
    connexion_app = FlaskApp(__name__)
    connexion_app.add_api(TINY_SPEC)
    FlaskInjector(app=connexion_app.app, modules=[lambda binder: binder.bind(Greeter, to=Greeter())])
    response = connexion_app.test_client(raise_server_exceptions=False).get("/greeting")
    assert response.status_code == 500

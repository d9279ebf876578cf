"""Readiness: 200 only while the database answers a bounded ping and is migrated to head; else 503 saying why."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from app import create_app, dispose_app
from composition import InMemoryProvidersModule
from providers.availability import Stopping
from providers.database import migrate, migration_heads
from tests.conftest import LiveServer
from tests.support.postgres import scratch_database

HEAD = max(migration_heads())


def ready(settings) -> httpx.Response:
    app = create_app(settings)
    try:
        return app.test_client(raise_server_exceptions=False).get("/v1/ready")
    finally:
        dispose_app(app)


def assert_not_ready(response, detail: str, retry_after: int) -> None:
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == str(retry_after)
    assert response.json()["title"] == "Service Unavailable"
    assert response.json()["detail"] == detail


def test_ready_when_the_database_answers_and_is_migrated(client):
    response = client.get("/v1/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


@pytest.fixture(params=["sqlite", "postgresql"])
def unmigrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of its own on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "behind.sqlite3"
        sa.create_engine(f"sqlite:///{path}").connect().close()
        yield f"sqlite:///{path}"
        return
    with scratch_database(request.getfixturevalue("postgres_admin_url"), "rooms_ready_behind") as url:
        yield url


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_not_ready_while_migrations_are_behind_naming_current_and_head(settings, unmigrated_url):
    behind = dataclasses.replace(settings, database_url=unmigrated_url, retry_after_seconds=11)
    assert_not_ready(ready(behind), f"The database's migrations are behind: current none, head {HEAD}.", 11)
    migrate(unmigrated_url, "0002")
    assert_not_ready(ready(behind), f"The database's migrations are behind: current 0002, head {HEAD}.", 11)
    migrate(unmigrated_url)
    assert ready(behind).json() == {"status": "ready"}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_not_ready_while_postgresql_refuses_connections(settings):
    refused = dataclasses.replace(settings, database_url="postgresql+psycopg2://rooms@127.0.0.1:9/rooms")
    assert_not_ready(ready(refused), "The database is unreachable.", settings.retry_after_seconds)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_not_ready_while_the_sqlite_file_is_missing_and_the_check_does_not_create_it(settings, tmp_path):
    missing = tmp_path / "gone" / "rooms.sqlite3"
    missing.parent.mkdir()
    unreachable = dataclasses.replace(settings, database_url=f"sqlite:///{missing}")
    assert_not_ready(ready(unreachable), "The database is unreachable.", settings.retry_after_seconds)
    assert not missing.exists()


@pytest.fixture
def silent_database() -> Iterator[int]:
    """A loopback port that accepts TCP connections and never says a word: a database host that hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_check_is_bounded_on_a_hanging_host_and_holds_no_lock_other_requests_need(settings, silent_database):
    hanging = dataclasses.replace(
        settings, database_url=f"postgresql+psycopg2://rooms@127.0.0.1:{silent_database}/rooms",
        ready_timeout_seconds=2, handler_threads=4,
    )
    # Rooms in memory: a search needs the injector (its lock included) but not the database.
    app = create_app(hanging, modules=[InMemoryProvidersModule()])
    answered: dict[str, float] = {}
    try:
        with LiveServer(app) as server:
            def probe() -> None:
                began = time.monotonic()
                response = httpx.get(f"{server.url}/v1/ready", timeout=30)
                answered["ready"] = time.monotonic() - began
                assert_not_ready(response, "The database is unreachable.", settings.retry_after_seconds)

            waiting = threading.Thread(target=probe)
            waiting.start()
            time.sleep(0.5)  # the check is now waiting for the silent host
            began = time.monotonic()
            assert httpx.get(f"{server.url}/v1/rooms", timeout=30).status_code == 200
            answered["search"] = time.monotonic() - began
            waiting.join(timeout=30)
    finally:
        dispose_app(app)
    assert "ready" in answered, "the readiness check never answered"
    assert 1.5 <= answered["ready"] < 5  # libpq's connect_timeout of 2 s, not TCP's minutes
    assert answered["search"] < 1.0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_requests_on_a_hanging_database_host_fail_as_503_after_the_connect_timeout(settings, silent_database):
    hanging = dataclasses.replace(
        settings, database_url=f"postgresql+psycopg2://rooms@127.0.0.1:{silent_database}/rooms",
        db_connect_timeout_seconds=2,
    )
    app = create_app(hanging)
    try:
        began = time.monotonic()
        response = app.test_client(raise_server_exceptions=False).get("/v1/rooms")
        took = time.monotonic() - began
    finally:
        dispose_app(app)
    assert response.status_code == 503 and response.headers["retry-after"] == str(settings.retry_after_seconds)
    assert 1.5 <= took < 5


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_not_ready_once_the_process_is_stopping(settings):
    app = create_app(settings)
    try:
        client = app.test_client()
        assert client.get("/v1/ready").status_code == 200
        app.injector.get(Stopping).set()
        assert_not_ready(client.get("/v1/ready"), "The service is stopping.", settings.retry_after_seconds)
        assert client.get("/v1/health").status_code == 200
    finally:
        dispose_app(app)

"""Shared fixtures: databases (SQLite and a throwaway PostgreSQL), the app, its client and a live server."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
import uvicorn

from app import create_app, dispose_app
from providers.database import migrate
from settings import Settings
from tests.support.entity_check import EntityCheckingClient
from tests.support.postgres import ThrowawayPostgres, free_port
from tests.support.rabbitmq import ThrowawayRabbitMQ

API_KEY = "test-key"
BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """Superuser URL of a PostgreSQL cluster that lives for the whole test session."""
    if os.environ.get("TEST_POSTGRES_URL"):
        yield os.environ["TEST_POSTGRES_URL"]
        return
    server = ThrowawayPostgres()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_template(postgres_admin_url: str) -> str:
    """URL of a migrated PostgreSQL database shared by the PostgreSQL tests (emptied after each)."""
    admin = sa.create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql("DROP DATABASE IF EXISTS rooms_test")
        connection.exec_driver_sql("CREATE DATABASE rooms_test")
    admin.dispose()
    url = postgres_admin_url.rsplit("/", 1)[0] + "/rooms_test"
    migrate(url)
    return url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each SQLite test copies."""
    path = tmp_path_factory.mktemp("sqlite-template") / "rooms.sqlite3"
    migrate(f"sqlite:///{path}")
    return path


def _empty_tables(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        tables = [
            name for name in sa.inspect(connection).get_table_names() if name != "alembic_version"
        ]
        if tables:
            connection.exec_driver_sql(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    engine.dispose()


@contextmanager
def fresh_database(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[str]:
    """Yield the URL of an empty, migrated database: a copied SQLite file, or the shared PostgreSQL one."""
    if backend == "sqlite":
        path = tmp_path / "rooms.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_template")
        _empty_tables(url)
        try:
            yield url
        finally:
            _empty_tables(url)


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty, migrated database on each backend."""
    with fresh_database(request, request.param, tmp_path) as url:
        yield url


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Test settings: a known API key and response validation on, so every response is checked."""
    return Settings(database_url=database_url, api_keys=frozenset({API_KEY}), validate_responses=True, pool_size=5)


@pytest.fixture
def app(settings: Settings):
    """The real app on the test database."""
    application = create_app(settings)
    yield application
    dispose_app(application)


@pytest.fixture
def client(app):
    """An HTTP client through the whole ASGI stack that also checks every returned entity against its Avro schema."""
    return EntityCheckingClient(app)


@pytest.fixture
def auth() -> dict[str, str]:
    """Headers carrying a valid API key."""
    return {"X-API-Key": API_KEY}


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    """A separate engine for tests that look at the database directly."""
    eng = sa.create_engine(database_url)
    yield eng
    eng.dispose()


class LiveServer:
    """The app served by uvicorn on loopback in a background thread."""

    def __init__(self, application) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(application, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@pytest.fixture
def live_server(app) -> Iterator[LiveServer]:
    """The app behind a real HTTP server, for tests that need real concurrency."""
    with LiveServer(app) as server:
        yield server


@pytest.fixture(scope="session")
def rabbitmq_broker() -> Iterator[ThrowawayRabbitMQ]:
    """A RabbitMQ broker that lives for the whole test session (restartable: see ThrowawayRabbitMQ.restart)."""
    try:
        broker = ThrowawayRabbitMQ()
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def rabbitmq_url(rabbitmq_broker: ThrowawayRabbitMQ) -> str:
    """AMQP URL of the session's RabbitMQ broker."""
    return rabbitmq_broker.url


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI a skipped test is a failure: every suite must really run there."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI: {report.longrepr}"


# The container tests' images (tests/e2e/test_container_image.py, tests/e2e/test_compose.py): built once per input change.
from tests.support.containers import postgres_image, python_base_image, rabbitmq_image, rooms_image  # noqa: E402, F401
from tests.support.issuer import issuer  # noqa: E402, F401

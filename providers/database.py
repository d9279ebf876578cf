"""SQLAlchemy plumbing shared by the SQL providers: declarative base, engine factory, migrations."""

from __future__ import annotations

import functools
import typing as t
from collections.abc import Callable
from pathlib import Path

import orjson
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Base(DeclarativeBase):
    """Declarative base of every table the service owns."""


ConnectionSource = Callable[[], Connection]
"""What a SQL provider gets instead of a connection: a call that returns the connection to use."""


class OnConnection:
    """Base of the SQL providers: each statement runs on the connection `connect()` returns when it runs.

    So the request's connection is checked out of the pool at the first statement, never while the
    injector builds the provider: injector holds one lock for all threads while it builds anything
    (injector PR #215), and a checkout can wait for the pool, or for a new database connection, while
    every other request's injection waits behind it. The caller owns the transaction.
    """

    def __init__(self, connect: ConnectionSource) -> None:
        self._connect = connect

    @property
    def _connection(self) -> Connection:
        return self._connect()


def pool_capacity(pool_size: int) -> int:
    """Return how many connections an engine from make_engine may hold at once: its pool and as many again."""
    return 2 * pool_size


WRITES = "rooms_writes"
"""Execution option of a connection whose transaction will write: on SQLite it begins IMMEDIATE (see below)."""


def make_engine(database_url: str, *, pool_size: int = 10, pool_recycle: int = 300, pre_ping: bool = False,
                connect_timeout: int | None = None, sqlite_lock_timeout: int = 10) -> Engine:
    """Create an engine for PostgreSQL or SQLite; no connection is opened until first use."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, pool_size=pool_size, max_overflow=pool_capacity(pool_size) - pool_size, pool_recycle=pool_recycle,
                               pool_pre_ping=False)
        _make_sqlite_transactional(engine, lock_timeout_ms=sqlite_lock_timeout * 1000)
        return engine
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_capacity(pool_size) - pool_size,
        pool_recycle=pool_recycle,
        # A ping costs a round trip per checkout (a quarter of a simple read's throughput in bench/);
        # recycling connections older than APP_DB_STALE_TIMEOUT is the default guard instead.
        pool_pre_ping=pre_ping,
        # psycopg2 decodes json columns (a room's images) with the stdlib's json.loads: a fifth of the
        # driver's work on a page of 20 rooms. orjson gives the same values.
        json_deserializer=orjson.loads,
        # Without it a connection to a host that does not answer (no refusal, just silence) waits for
        # TCP to give up, minutes, holding the request's thread; with it the request fails as a 503.
        connect_args={"connect_timeout": connect_timeout} if connect_timeout else {},
    )


def _make_sqlite_transactional(engine: Engine, *, lock_timeout_ms: int) -> None:
    # pysqlite's own transaction handling breaks SAVEPOINT and defers BEGIN; SQLAlchemy's
    # documented recipe hands transaction control back to SQLAlchemy.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: t.Any, _record: t.Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(lock_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A deferred transaction that has read cannot become a writer once another writer committed
        # after its snapshot: SQLite answers "database is locked" at once, without waiting the busy
        # timeout (20 concurrent PATCHes gave up to 18 of those). A transaction that will write takes
        # the write lock when it begins instead, waiting up to the busy timeout for it; reads stay
        # deferred and concurrent (WAL).
        immediate = connection.get_execution_options().get(WRITES, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def alembic_config(database_url: str) -> t.Any:
    """Return an Alembic config for the project's migrations against this database."""
    from alembic.config import Config

    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    config.attributes["database_url"] = database_url
    return config


@functools.cache
def migration_heads() -> frozenset[str]:
    """Return the head revision(s) of the project's migration scripts (read once per process)."""
    from alembic.script import ScriptDirectory

    return frozenset(ScriptDirectory.from_config(alembic_config("")).get_heads())


def migrate(database_url: str, revision: str = "head", *, configure_logging: bool = True) -> None:
    """Apply the migrations up to `revision` (creating the SQLite file's folder if needed).

    With `configure_logging=False` alembic.ini's logging sections are not applied, so a caller that
    configured logging itself (serve.py, for APP_LOG_FORMAT) keeps its format and levels.
    """
    from alembic import command

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    config = alembic_config(database_url)
    config.attributes["skip_logging_config"] = not configure_logging
    command.upgrade(config, revision)

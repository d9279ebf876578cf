"""Serve the service with bench-only patches, to measure a candidate change before anyone makes it.

`python bench/experiments.py` runs `serve.main()` unchanged except that the uvicorn workers import
`bench.experiments:app`, which applies the patches named in BENCH_EXPERIMENTS (comma-separated) and then
builds the app exactly as `app:app` would. `bench/run.py --experiment NAME` serves this as an extra
target next to the service and the floor, so the effect is measured in the same run.

Nothing here changes the app's files; every patch is a stand-in for a change to make in the app itself.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))


def no_pre_ping() -> None:
    """Engine without `pool_pre_ping`: one round trip (`SELECT 1`) less per request."""
    import providers.database as database

    create_engine = database.create_engine

    def without_pre_ping(*args, **kwargs):
        return create_engine(*args, **{**kwargs, "pool_pre_ping": False})

    database.create_engine = without_pre_ping


def cached_insert() -> None:
    """Insert rooms with a cacheable statement: SQLAlchemy never caches postgresql.insert(), so it compiles each time.

    The provider's `postgresql.insert(...).values(...).on_conflict_do_nothing(...).returning(...)` chain is
    answered with the same INSERT ... ON CONFLICT (url) DO NOTHING RETURNING as a typed text() statement,
    whose compiled form SQLAlchemy caches. Everything else in `create` (outbox included) is unchanged.
    """
    import types

    from sqlalchemy import bindparam, text

    import providers.sql_rooms as sql_rooms

    names = [column.name for column in sql_rooms.COLUMNS]
    statement = (
        text(
            f"INSERT INTO rooms ({', '.join(names)}) VALUES ({', '.join(':' + name for name in names)}) "
            f"ON CONFLICT (url) DO NOTHING RETURNING {', '.join(names)}"
        )
        .bindparams(*(bindparam(column.name, type_=column.type) for column in sql_rooms.COLUMNS))
        .columns(*sql_rooms.COLUMNS)
    )

    class CachedInsert:
        def __init__(self, _entity) -> None:
            self._values: dict = {}

        def values(self, values: dict) -> CachedInsert:
            self._values = values
            return self

        def on_conflict_do_nothing(self, **_options) -> CachedInsert:
            return self

        def returning(self, *_columns):
            return statement.params(**self._values)

    sql_rooms.postgresql = types.SimpleNamespace(insert=CachedInsert)


def quiet_body_warning() -> None:
    """Silence Connexion's per-request "accepts multiple content types" warning (POST with JSON and Avro bodies)."""
    logging.getLogger("connexion.operations.openapi3").setLevel(logging.ERROR)


def no_hook_injection() -> None:
    """Let FlaskInjector wrap only functions that ask for injection, not every type-hinted hook.

    It wraps each before/after/teardown function that merely has type hints (the transaction boundary's
    `_finish(response: Response)` and `_close(...)`) in `call_with_injection`, which inspects the
    signature on every request. Registering those hooks after FlaskInjector has the same effect.
    """
    import flask_injector

    wrap_fun = flask_injector.wrap_fun

    def wrap_only_injected(fun, injector):
        if hasattr(fun, "__bindings__") or hasattr(fun, "view_class"):
            return wrap_fun(fun, injector)
        return fun

    flask_injector.wrap_fun = wrap_only_injected


def prebuilt_get() -> None:
    """Read one room with a statement built once (bound id) instead of building and cache-keying it per request."""
    from sqlalchemy import bindparam, select

    from providers.errors import NotFound
    from providers.rooms import StoredRoom
    from providers.sql_rooms import COLUMNS, RoomRow, SqlRoomsProvider, _room_uuid, room_from_row

    statement = select(*COLUMNS).where(RoomRow.id == bindparam("room_id"))
    original = SqlRoomsProvider.get

    def get(self, room_id, *, for_update=False):
        if for_update:
            return original(self, room_id, for_update=True)
        row = self._session.execute(statement, {"room_id": _room_uuid(room_id)}).one_or_none()
        if row is None:
            raise NotFound(f"Room {room_id} does not exist.")
        return StoredRoom(room_from_row(row), row.version)

    SqlRoomsProvider.get = get


def cache_signatures() -> None:
    """Memoise `inspect.signature` inside injector, which computes it on every `call_with_injection`.

    Every request resolves its request-scoped providers (session, outbox, rooms) through
    `call_with_injection`, and each call inspects the provider's signature anew.
    """
    import functools
    import inspect

    import injector

    class CachedInspect:
        signature = staticmethod(functools.lru_cache(maxsize=4096)(inspect.signature))

        def __getattr__(self, name: str):
            return getattr(inspect, name)

    injector.inspect = CachedInspect()


def no_outbox_lock() -> None:
    """Append outbox events without the advisory lock that serialises every writer until commit.

    Only to size the lock's cost: without it, positions no longer follow commit order (see
    providers/sql_events.py), so this is not a change to make as it stands.
    """
    from sqlalchemy import text

    import providers.sql_events as sql_events

    sql_events.LOCK_OUTBOX = text("SELECT 1")


def no_outbox() -> None:
    """Skip the outbox entirely (no lock, no Avro encoding, no event row): the whole cost of the event feed."""
    from providers.sql_events import SqlOutbox

    SqlOutbox.append = lambda self, *args, **kwargs: None


PATCHES: dict[str, Callable[[], None]] = {
    "no_pre_ping": no_pre_ping,
    "no_hook_injection": no_hook_injection,
    "prebuilt_get": prebuilt_get,
    "cache_signatures": cache_signatures,
    "cached_insert": cached_insert,
    "quiet_body_warning": quiet_body_warning,
    "no_outbox_lock": no_outbox_lock,
    "no_outbox": no_outbox,
}


def selected() -> list[str]:
    """Return the patch names in BENCH_EXPERIMENTS, checked against PATCHES."""
    names = [name.strip() for name in os.environ.get("BENCH_EXPERIMENTS", "").split(",") if name.strip()]
    unknown = sorted(set(names) - set(PATCHES))
    if unknown:
        raise SystemExit(f"unknown experiment(s) {', '.join(unknown)}; known: {', '.join(PATCHES)}")
    return names


def __getattr__(name: str):
    # The uvicorn workers import `bench.experiments:app`: patch first, then build the real app.
    if name == "app":
        for patch in selected():
            PATCHES[patch]()
        import app as app_module

        globals()["app"] = app_module.app
        return app_module.app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> int:
    """Run serve.main() with the workers importing this module's patched app."""
    selected()
    import serve

    run = serve.uvicorn.run

    def run_patched(_target, **options):
        return run("bench.experiments:app", **options)

    serve.uvicorn.run = run_patched
    return serve.main()


if __name__ == "__main__":
    sys.exit(main())

"""Paired A/B of one change: the service as it is against the service with that change undone, in one process.

CPU time on a shared VM drifts by ±20 % within minutes, more than most single changes save, so separate
runs cannot tell a 5 % step from noise. Here both apps live in one process on one throwaway PostgreSQL,
and serve alternating blocks of requests (`--block`, default 100) of the same scenario; each pair of
blocks gives a CPU ratio (as is / undone) and the median of the ratios over `--pairs` pairs is reported
with its quartiles. Slow drift hits both halves of a pair alike and drops out.

    .venv/bin/python bench/paired.py stock_async_app --scenarios get_room,search_city,create_room

No HTTP server, no load generator: requests go straight into the ASGI app one at a time, as in
bench/inprocess.py. A variant is a context manager that undoes one change of the app while the undone
app is built and while it serves; the tuning log in bench/RESULTS.md quotes what each measured.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from bench.inprocess import API_KEY, AsgiDriver, requests_for  # noqa: E402


@contextlib.contextmanager
def stock_async_app() -> Iterator[None]:
    """Connexion's AsyncApp as shipped: every handler decorated again on every request (web/operations.py)."""
    import connexion

    import app

    with _replaced(app, "ServiceApp", connexion.AsyncApp):
        yield


@contextlib.contextmanager
def no_validation_precheck() -> Iterator[None]:
    """Every request body validated by jsonschema alone, without the compiled pre-check (web/validation.py)."""
    import web.validation

    with _replaced(web.validation, "_precheck_for", lambda schema: None):
        yield


@contextlib.contextmanager
def injector_per_dependency() -> Iterator[None]:
    """Every dependency of every request asked of injector.get, as before BindingShortcuts (web/injection.py)."""
    import web.injection

    with _replaced(web.injection.BindingShortcuts, "__call__", lambda self, interface: self._injector.get(interface)):
        yield


@contextlib.contextmanager
def stdlib_json_columns() -> Iterator[None]:
    """json columns decoded by psycopg2's default, the stdlib's json.loads (providers/database.py)."""
    import providers.database

    create_engine = providers.database.create_engine

    def without_orjson(*args, **options):
        options.pop("json_deserializer", None)
        return create_engine(*args, **options)

    with _replaced(providers.database, "create_engine", without_orjson):
        yield


@contextlib.contextmanager
def rows_read_by_name() -> Iterator[None]:
    """Room rows read member by member by name (`row.name`), as before positional unpacking (providers/sql_rooms.py)."""
    import providers.sql_rooms

    by_position = providers.sql_rooms.room_from_row

    def by_name(row):
        return by_position(tuple(getattr(row, column.name) for column in providers.sql_rooms.COLUMNS))

    with _replaced(providers.sql_rooms, "room_from_row", by_name):
        yield


@contextlib.contextmanager
def parameters_parsed_twice() -> Iterator[None]:
    """The handler's request parses query and path parameters again after validation (web/operations.py)."""
    import web.operations

    with _replaced(web.operations, "RESOLVED_PARAMETERS", "not kept by validation"):
        yield


@contextlib.contextmanager
def names_sanitized_per_request() -> Iterator[None]:
    """Every parameter name of every request sanitized by Connexion's regular expressions (web/operations.py)."""
    import web.operations
    from connexion.decorators.parameter import AsyncParameterDecorator

    with _replaced(web.operations._DecorateOnceDecorator, "_parameter_decorator_cls", AsyncParameterDecorator):
        yield


VARIANTS: dict[str, Callable[[], contextlib.AbstractContextManager]] = {
    "stock_async_app": stock_async_app,
    "no_validation_precheck": no_validation_precheck,
    "injector_per_dependency": injector_per_dependency,
    "stdlib_json_columns": stdlib_json_columns,
    "rows_read_by_name": rows_read_by_name,
    "parameters_parsed_twice": parameters_parsed_twice,
    "names_sanitized_per_request": names_sanitized_per_request,
}


@contextlib.contextmanager
def _replaced(owner: object, name: str, value: object) -> Iterator[None]:
    saved = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, saved)


class AvroDriver(AsgiDriver):
    """AsgiDriver that asks for Avro, as the get_room_avro scenario of bench/run.py does."""

    async def _call(self, method: str, path: str, query: str, body: bytes) -> int:
        status = 0

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
            "headers": [(b"host", b"127.0.0.1"), (b"accept", b"application/avro")],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
        }
        await self.app(scope, receive, send)
        return status


def main(argv: list[str] | None = None) -> int:
    """Seed a throwaway cluster, serve alternating blocks from both apps, print the median ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variant", choices=sorted(VARIANTS))
    parser.add_argument("--scenarios", default="get_room,get_room_avro,search_city,create_room")
    parser.add_argument("--pairs", type=int, default=30, help="pairs of blocks per scenario")
    parser.add_argument("--block", type=int, default=100, help="requests per block")
    options = parser.parse_args(argv)

    from bench.run import CITIES, seed_database
    from providers.database import migrate
    from tests.postgres import ThrowawayPostgres

    postgres = ThrowawayPostgres()
    try:
        url = postgres.start()
        migrate(url)
        ids = seed_database(url, rooms=2_000, items=100, seed=6)
        cities = [city[0].replace(" ", "%20") for city in CITIES]
        os.environ.update(DATABASE_URL=url, APP_API_KEYS=API_KEY, APP_DB_CONNECTIONS="10")
        import app

        as_is = app.create_app()
        undo = VARIANTS[options.variant]
        with undo():
            undone = app.create_app()
        print(f"service as it is against the service with {options.variant} ({undo.__doc__.strip()})")
        for scenario in options.scenarios.split(","):
            driver = AvroDriver if scenario == "get_room_avro" else AsgiDriver
            kind = "get_room" if scenario == "get_room_avro" else scenario
            targets = {"as is": (driver(as_is), contextlib.nullcontext), "undone": (driver(undone), undo)}
            cpu: dict[str, list[float]] = {name: [] for name in targets}
            for name, (send, context) in targets.items():
                with context():
                    for request in requests_for(kind, ids, cities, f"warm-{name}-{time.time_ns()}", 200):
                        if send(*request) >= 400:
                            raise SystemExit(f"{name} answered an error to {request[:3]}")
            for pair in range(options.pairs):
                order = list(targets) if pair % 2 == 0 else list(reversed(targets))
                for name in order:
                    send, context = targets[name]
                    batch = list(requests_for(kind, ids, cities, f"{name}-{pair}-{time.time_ns()}", options.block))
                    with context():
                        started = time.process_time()
                        for request in batch:
                            send(*request)
                        cpu[name].append((time.process_time() - started) / options.block * 1e6)
            ratios = [new / old for new, old in zip(cpu["as is"], cpu["undone"], strict=True)]
            low, _, high = statistics.quantiles(ratios, n=4)
            print(f"{scenario:14} as is {statistics.median(cpu['as is']):6.0f} µs  undone "
                  f"{statistics.median(cpu['undone']):6.0f} µs  ratio median {statistics.median(ratios):.3f} "
                  f"(quartiles {low:.3f}–{high:.3f})", flush=True)
    finally:
        postgres.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

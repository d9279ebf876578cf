"""Paired A/B of one change: the service as it is against the service with that change undone, in one process.

CPU time on a shared VM drifts by ±20 % within minutes, more than most single changes save, so separate
runs cannot tell a 5 % step from noise. Here both apps live in one process on one throwaway PostgreSQL,
and serve alternating blocks of requests (`--block`, default 100) of the same scenario; each pair of
blocks gives a CPU ratio (as is / undone) and the median of the ratios over `--pairs` pairs is reported
with its quartiles. Slow drift hits both halves of a pair alike and drops out.

    .venv/bin/python bench/paired.py a2wsgi_bridge --scenarios get_room,search_city,create_room

No HTTP server, no load generator: requests go straight into the ASGI app one at a time. CPU time is the
whole process's, so the handler threads count. A variant is a context manager that undoes one change of
the app while the undone app is built and while it serves; the tuning log in bench/RESULTS.md quotes
what each measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from web.speedups import Speedups  # noqa: E402 - after the project root is importable

API_KEY = "bench-paired"
ROOM = {
    "name": "Bench room", "description": "A bright room in a shared flat, close to the station.", "price": 650,
    "recurrency": "monthly", "provider": "bench", "monthly_price": 650, "property_size": "14 m²",
    "coordinates": {"lat": 52.4986, "lon": 13.4182},
    "area": {"name": "Kreuzberg", "country": "Germany", "city": "Berlin", "coordinates": {"lat": 52.4986, "lon": 13.4182}},
    "is_visible": True, "images": [{"url": "https://bench.example.com/images/1.jpg"}],
}


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


_READ_WHOLE_SEARCHES: dict[tuple, object] = {}


@contextlib.contextmanager
def pages_unbounded_in_bytes() -> Iterator[None]:
    """A search's rows read whole, as before APP_MAX_PAGE_BYTES: no stored size, no large fields held back."""
    import sqlalchemy as sa

    import providers.sql_rooms as rooms

    build = rooms._search_statement.__wrapped__
    read_whole = sa.select(*rooms.COLUMNS, sa.literal(0))  # a size of 0: no room is large, the page is never cut

    def search_statement(*shape):
        # Built once per shape over the whole run, as the service's own statements are (lru_cache).
        if shape not in _READ_WHOLE_SEARCHES:
            with _replaced(rooms, "SELECT_ROOMS", read_whole):
                _READ_WHOLE_SEARCHES[shape] = build(*shape)
        return _READ_WHOLE_SEARCHES[shape]

    with _replaced(rooms, "_search_statement", search_statement):
        yield


@contextlib.contextmanager
def no_telemetry() -> Iterator[None]:
    """No request ids, request metrics, access log, /metrics or pool gauges: the RequestTelemetry and MetricsEndpoint
    middleware, the pool gauges and the g.request_id hook removed (observability/telemetry.py, observability/metrics.py)."""
    import app as app_module
    import observability.metrics

    class NoPoolGauges:
        def __init__(self, _engine) -> None:
            pass

        def close(self) -> None:
            pass

    with (
        _replaced(app_module, "RequestTelemetry", lambda app, **_options: app),
        _replaced(app_module, "MetricsEndpoint", lambda app, **_options: app),
        _replaced(observability.metrics, "PoolGauges", NoPoolGauges),
        _replaced(app_module, "install_request_id_in_g", lambda _flask_app: None),
    ):
        yield


@contextlib.contextmanager
def unbounded_avro_decoding() -> Iterator[None]:
    """Avro bodies read by fastavro alone, as before contract/avro_bounds.py: the container read twice (once for
    the writer's name), no limits checked first, the writer schema parsed on every request."""
    import io

    import fastavro

    import contract.avro
    from contract.avro import AvroDecodeError, from_datum

    def decode_single(self, name, data):
        schema = self.get(name)
        try:
            fastavro.reader(io.BytesIO(data)).writer_schema.get("name", "?")  # read for the error message
            records = []
            for record in fastavro.reader(io.BytesIO(data), reader_schema=schema.parsed):
                records.append(record)
                if len(records) > 1:
                    break
        except Exception as error:  # noqa: BLE001 - as before: any failure is the client's
            raise AvroDecodeError(f"The body is not a readable Avro object container file: {error}") from None
        if len(records) != 1:
            raise AvroDecodeError("not exactly one record")
        return from_datum(schema.document, records[0])

    with _replaced(contract.avro.AvroSchemas, "decode_single", decode_single):
        yield


@contextlib.contextmanager
def avro_decoded_in_a_thread() -> Iterator[None]:
    """Not an undo but the alternative measured and not taken: each Avro body decoded in a worker thread
    (`anyio.to_thread.run_sync`) instead of on the event loop (web/avro_bodies.py)."""
    import anyio

    import app as app_module
    from web.avro_bodies import AVRO_RECORD_KEY

    on_the_loop = app_module.avro_body_validator

    def in_a_thread(schemas, rules):
        class ThreadedAvroRequestBodyValidator(on_the_loop(schemas, rules)):
            async def _parse(self, stream, scope):
                data = b"".join([message async for message in stream])
                if not data:
                    return None
                return await anyio.to_thread.run_sync(schemas.decode_single, self._schema[AVRO_RECORD_KEY], data)

        return ThreadedAvroRequestBodyValidator

    with _replaced(app_module, "avro_body_validator", in_a_thread):
        yield


@contextlib.contextmanager
def no_trace_ids_in_logs() -> Iterator[None]:
    """Log records not asked for the current span (observability/logs.py), as before tracing: what tracing costs a
    request while it is off (no middleware, no statement listeners; the outbox tests one attribute). Run it with
    --log-format text or json, so the access log is written."""
    import observability.logs

    def request_context_only(self, record):
        if not hasattr(record, "request_id"):
            info = observability.logs.current_request()
            record.request_id = info.request_id if info is not None else None
            record.operation_id = info.operation_id if info is not None else None
        return True

    with _replaced(observability.logs.RequestContextFilter, "filter", request_context_only):
        yield


@functools.cache
def _dropping_tracing():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from observability.tracing import Tracing

    class Dropping(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

    provider = TracerProvider()  # every request sampled (the SDK's default sampler)
    provider.add_span_processor(BatchSpanProcessor(Dropping()))
    return Tracing(provider)


@contextlib.contextmanager
def tracing_on() -> Iterator[None]:
    """Not an undo but what turning tracing on costs: every request traced (server span, statement spans, the
    outbox's context) through the SDK's batch processor to an exporter that drops the spans (observability/tracing.py)."""
    import app as app_module

    with _replaced(app_module, "create_app", functools.partial(app_module.create_app, tracing=_dropping_tracing())):
        yield


VARIANTS: dict[str, Callable[[], contextlib.AbstractContextManager]] = {
    "stdlib_json_columns": stdlib_json_columns,
    "rows_read_by_name": rows_read_by_name,
    "no_telemetry": no_telemetry,
    "pages_unbounded_in_bytes": pages_unbounded_in_bytes,
    "unbounded_avro_decoding": unbounded_avro_decoding,
    "avro_decoded_in_a_thread": avro_decoded_in_a_thread,
    "no_trace_ids_in_logs": no_trace_ids_in_logs,
    "tracing_on": tracing_on,
}

_ALL_ON = Speedups.all_on()
SPEEDUP_VARIANTS: dict[str, tuple[Speedups, str]] = {
    "no_speedups": (Speedups.all_off(), "every speedup of web/speedups off (APP_SPEEDUPS=false): stock Connexion"),
    "a2wsgi_bridge": (dataclasses.replace(_ALL_ON, bridge=False),
                      "Flask behind a2wsgi's WSGIMiddleware instead of web/speedups/bridge.py"),
    "decorated_per_request": (dataclasses.replace(_ALL_ON, decorate_once=False),
                              "every handler decorated again on every request, as Connexion's FlaskOperation does"),
    "injection_inspected_per_call": (dataclasses.replace(_ALL_ON, bindings_once=False),
                                     "handlers injected by `injector.call_with_injection`, a signature inspection per call"),
    "no_validation_precheck": (dataclasses.replace(_ALL_ON, validation_precheck=False),
                               "every request document validated by jsonschema alone, without the compiled pre-check"),
    "stdlib_jsonifier": (dataclasses.replace(_ALL_ON, orjson=False), "responses serialised by Connexion's stdlib Jsonifier"),
}
"""A speedup undone is the same app built with that switch off (web/speedups); gc_freeze is not here: it acts at
start-up and on the p99, which `make bench` measures."""


@contextlib.contextmanager
def _replaced(owner: object, name: str, value: object) -> Iterator[None]:
    saved = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, saved)


def requests_for(scenario: str, ids: list[str], cities: list[str], prefix: str, count: int):
    """Yield (method, path, query, body) for `count` requests of a scenario."""
    for number in range(count):
        if scenario == "get_room":
            yield "GET", f"/v1/rooms/{ids[number * 7919 % len(ids)]}", "", b""
        elif scenario == "search_city":
            yield "GET", "/v1/rooms", f"city={cities[number % len(cities)]}&limit=20", b""
        elif scenario == "health":
            yield "GET", "/v1/health", "", b""
        elif scenario == "create_room_avro":
            yield "POST", "/v1/rooms", "", _avro_room(ROOM | {"url": f"https://bench.example.com/{prefix}/{number}"})
        else:
            body = json.dumps(ROOM | {"url": f"https://bench.example.com/{prefix}/{number}"}).encode()
            yield "POST", "/v1/rooms", "", body


@functools.cache
def _schemas():
    from contract.avro import AvroSchemas

    return AvroSchemas()


def _avro_room(room: dict) -> bytes:
    return _schemas().encode_container("NewRoom", [room])


class AsgiDriver:
    """Calls an ASGI app the way a server would, one request at a time, on one event loop."""

    accept = b"application/json"
    content_type = b"application/json"

    def __init__(self, app) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()

    def __call__(self, method: str, path: str, query: str, body: bytes) -> int:
        """Send one request and return the response status."""
        return self.loop.run_until_complete(self._call(method, path, query, body))

    async def _call(self, method: str, path: str, query: str, body: bytes) -> int:
        headers = [(b"host", b"127.0.0.1"), (b"x-api-key", API_KEY.encode()), (b"accept", self.accept)]
        if body:
            headers += [(b"content-type", self.content_type), (b"content-length", str(len(body)).encode())]
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
            "headers": headers, "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
        }
        delivered = False
        status = 0

        async def receive():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # the client stays connected

        async def send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await self.app(scope, receive, send)
        return status


class AvroDriver(AsgiDriver):
    """AsgiDriver that asks for Avro, as the get_room_avro scenario of bench/run.py does."""

    accept = b"application/avro"


class AvroBodyDriver(AsgiDriver):
    """AsgiDriver that sends its bodies as Avro container files (the create_room_avro scenario)."""

    content_type = b"application/avro"


def main(argv: list[str] | None = None) -> int:
    """Seed a throwaway cluster, serve alternating blocks from both apps, print the median ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variant", choices=sorted([*VARIANTS, *SPEEDUP_VARIANTS]))
    parser.add_argument("--scenarios", default="get_room,get_room_avro,search_city,create_room")
    parser.add_argument("--pairs", type=int, default=30, help="pairs of blocks per scenario")
    parser.add_argument("--block", type=int, default=100, help="requests per block")
    parser.add_argument("--log-format", choices=["none", "text", "json"], default="none",
                        help="configure logging as serve.py does (to /dev/null), so INFO records such as the access log are written")
    options = parser.parse_args(argv)

    from bench.run import CITIES, seed_database
    from providers.database import migrate
    from tests.support.postgres import ThrowawayPostgres

    postgres = ThrowawayPostgres()
    metrics_dir = None
    try:
        url = postgres.start()
        migrate(url)
        ids = seed_database(url, rooms=2_000, items=100, seed=6)
        cities = [city[0].replace(" ", "%20") for city in CITIES]
        os.environ.update(DATABASE_URL=url, APP_API_KEYS=API_KEY, APP_DB_CONNECTIONS="10")
        # As serve.py runs it: metric values in per-process files (set before prometheus_client is imported).
        metrics_dir = tempfile.mkdtemp(prefix="paired-metrics-")
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", metrics_dir)
        if options.log_format != "none":  # after the migrations, which apply alembic.ini's logging
            import logging.config

            from observability.logs import logging_config

            logging.config.dictConfig(logging_config(options.log_format, stream=open(os.devnull, "w")))
        import app

        as_is = app.create_app()
        if options.variant in SPEEDUP_VARIANTS:
            speedups, description = SPEEDUP_VARIANTS[options.variant]
            undo = contextlib.nullcontext
            undone = app.create_app(speedups=speedups)
        else:
            undo = VARIANTS[options.variant]
            description = (undo.__doc__ or "").strip()
            with undo():
                undone = app.create_app()
        print(f"service as it is against the service with {options.variant} ({description})")
        for scenario in options.scenarios.split(","):
            driver = {"get_room_avro": AvroDriver, "create_room_avro": AvroBodyDriver}.get(scenario, AsgiDriver)
            kind = "get_room" if scenario == "get_room_avro" else scenario
            targets = {"as is": (driver(as_is), contextlib.nullcontext), "undone": (driver(undone), undo)}
            cpu: dict[str, list[float]] = {name: [] for name in targets}
            for name, (send, context) in targets.items():
                with context():
                    for request in requests_for(kind, ids, cities, f"warm-{name.replace(' ', '-')}-{time.time_ns()}", 200):
                        if send(*request) >= 400:
                            raise SystemExit(f"{name} answered an error to {request[:3]}")
            for pair in range(options.pairs):
                order = list(targets) if pair % 2 == 0 else list(reversed(targets))
                for name in order:
                    send, context = targets[name]
                    batch = list(requests_for(kind, ids, cities, f"{name.replace(' ', '-')}-{pair}-{time.time_ns()}", options.block))
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
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Prometheus metrics: requests, latency, the database pool, the outbox's lag and the relay; served at /metrics.

With `PROMETHEUS_MULTIPROC_DIR` set (serve.py sets it before the workers start), prometheus_client keeps
every value in a per-process file there and a scrape adds up all the files, so whichever worker answers
`/metrics` reports every worker, and the relay too when it runs with the same directory. Without it (tests,
embedding) each process counts in its own registry. Which of the two is decided when prometheus_client is
first imported, so nothing that runs before serve.py has set the variable may import this module.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from rest.problems import PROBLEM_MEDIA_TYPE, problem_json

logger = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

# Requests of this service take milliseconds; a long poll on /v1/events up to 30 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
UNROUTED = "none"
"""The operation_id label of a request the spec does not route: an unknown path, the docs, /metrics."""

REQUESTS = Counter(
    "rooms_http_requests", "HTTP requests answered, by operationId, method and status.",
    ["operation_id", "method", "status"],
)
LATENCY = Histogram(
    "rooms_http_request_duration_seconds", "Time from a request's arrival to the end of its answer, by operationId.",
    ["operation_id"], buckets=LATENCY_BUCKETS,
)
RELAY_PUBLISHED = Counter(
    "rooms_relay_events_published", "Events the relay published, had confirmed by the broker and marked, by type.",
    ["type"],
)
RELAY_FAILURES = Counter(
    "rooms_relay_publish_failures", "Relay batches that failed (nothing marked; retried), by what was unavailable.",
    ["reason"],
)

OUTBOX_LAG_NAME = "rooms_outbox_unpublished_events"
OUTBOX_LAG_CAP = 100_000
"""A scrape counts at most this many unpublished events, so it stays cheap however far the relay is behind."""
OUTBOX_LAG_TIMEOUT_SECONDS = 1.0
_COUNT_UNPUBLISHED = text(
    "SELECT count(*) FROM (SELECT 1 FROM events WHERE published_at IS NULL LIMIT :cap) AS unpublished"
).bindparams(cap=OUTBOX_LAG_CAP)


def multiprocess_mode() -> bool:
    """Return True when values live in PROMETHEUS_MULTIPROC_DIR, shared by every process that writes there."""
    return bool(os.environ.get(MULTIPROC_DIR_VARIABLE))


class RequestMetrics:
    """Counts each answered request and keeps its duration in plain Python; `flush` hands them to prometheus_client.

    A request costs a lock, a dict update and a list append here. Written straight through, the counter and
    the histogram were three writes to memory-mapped files in multiprocess mode (about 25 Python calls, a
    third of what this telemetry added to a request); now the process's writer thread flushes once a second,
    and a scrape flushes its own process first. A worker killed outright loses its last second of counts.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, int], int] = {}
        self._durations: dict[str, list[float]] = {}
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._histograms: dict[str, Histogram] = {}

    def record(self, operation_id: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and the time it took."""
        if method not in KNOWN_METHODS:
            method = "other"  # any token is a method to HTTP; the label's values must stay few
        key = (operation_id, method, status)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
            durations = self._durations.get(operation_id)
            if durations is None:
                durations = self._durations[operation_id] = []
            durations.append(seconds)

    def flush(self) -> None:
        """Write what was counted since the last flush to the counter and the histogram (public API only)."""
        with self._lock:
            counts, self._counts = self._counts, {}
            durations, self._durations = self._durations, {}
        for key, count in counts.items():
            self._counter(key).inc(count)
        for operation_id, seconds in durations.items():
            observe = self._histogram(operation_id).observe
            for value in seconds:
                observe(value)

    def _counter(self, key: tuple[str, str, int]) -> Counter:
        counter = self._counters.get(key)
        if counter is None:
            operation_id, method, status = key
            counter = self._counters[key] = REQUESTS.labels(operation_id, method, str(status))
        return counter

    def _histogram(self, operation_id: str) -> Histogram:
        histogram = self._histograms.get(operation_id)
        if histogram is None:
            histogram = self._histograms[operation_id] = LATENCY.labels(operation_id)
        return histogram


REQUEST_METRICS = RequestMetrics()


_pool_gauges: tuple[Gauge, Gauge] | None = None


def pool_gauges() -> tuple[Gauge, Gauge]:
    """Return the gauges of connections in use and of pool capacity, made on first use.

    Made on first use, not at import: a gauge without labels writes its file in PROMETHEUS_MULTIPROC_DIR
    when made, and the relay, which imports this module for its counters, has no pool to report.
    """
    global _pool_gauges
    if _pool_gauges is None:
        # livesum: the workers' values add up, and a dead worker's value leaves the sum (serve.py marks it dead).
        _pool_gauges = (
            Gauge("rooms_db_pool_connections_in_use", "Database connections checked out of the workers' pools.",
                  multiprocess_mode="livesum"),
            Gauge("rooms_db_pool_connections_max", "Connections the workers' pools may hold at once (size + overflow).",
                  multiprocess_mode="livesum"),
        )
    return _pool_gauges


WRITE_SECONDS = 1.0


class PoolGauges:
    """Reports an engine's pool in the pool gauges: its capacity once, the connections in use as sampled.

    Sampled (`pool.checkedout()`, every WRITE_SECONDS by a thread of the process and before each
    scrape) rather than followed through checkout and checkin events: two gauge writes per request, about
    16 Python calls, for a value only a scrape ever reads. Each worker samples its own pool into its own
    file, so the scrape adds them up. This pool's share is added as a difference, because every app of a
    process (tests build many) reports into the one gauge.
    """

    def __init__(self, engine: Engine, capacity: int) -> None:
        self._in_use, self._max = pool_gauges()
        self._engine = engine
        self._capacity = capacity
        self._max.inc(self._capacity)
        self._reported = 0
        self._lock = threading.Lock()
        self._closed = False
        _WRITER.add(self)

    def sample(self) -> None:
        """Bring the in-use gauge up to date with the connections checked out of this pool now."""
        with self._lock:
            if self._closed:
                return
            # The engine's pool is replaced when the engine is disposed, so it is looked up each time.
            checked_out = getattr(self._engine.pool, "checkedout", None)
            now = checked_out() if checked_out is not None else 0
            if now != self._reported:
                self._in_use.inc(now - self._reported)
                self._reported = now

    def close(self) -> None:
        """Take this pool out of both gauges (once)."""
        _WRITER.discard(self)
        with self._lock:
            if not self._closed:
                self._closed = True
                self._in_use.dec(self._reported)
                self._max.dec(self._capacity)


class _Writer:
    """The process's thread that, every WRITE_SECONDS, flushes the request counts and samples every open pool.

    Started by the first app of a process, so in each worker (uvicorn spawns them; nothing is inherited).
    """

    def __init__(self) -> None:
        self._pools: set[PoolGauges] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="metrics-writer", daemon=True)
                self._thread.start()

    def add(self, pool: PoolGauges) -> None:
        with self._lock:
            self._pools.add(pool)

    def discard(self, pool: PoolGauges) -> None:
        with self._lock:
            self._pools.discard(pool)

    def write_now(self) -> None:
        REQUEST_METRICS.flush()
        with self._lock:
            pools = list(self._pools)
        for pool in pools:
            pool.sample()

    def _run(self) -> None:
        while True:
            time.sleep(WRITE_SECONDS)
            try:
                self.write_now()
            except Exception:  # noqa: BLE001 - a failed write must not end the writing
                logger.warning("Could not write the request metrics or sample the pools", exc_info=True)


_WRITER = _Writer()


class OutboxLag:
    """Counts unpublished outbox events for a scrape, in a thread of its own, with a bounded wait.

    Its connection is its own (no pool, so no stale connection after a database restart) and is opened
    with short timeouts: a scrape must answer when the database is slow or down, and the app's pool may
    be exhausted exactly when the metrics matter. While one count is still running (a database that
    hangs), a scrape does not start another: it reports NaN at once.
    """

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url)
        if url.get_backend_name() == "postgresql":
            # The scrape waits OUTBOX_LAG_TIMEOUT_SECONDS; a connection attempt may take longer in its own thread.
            connect_args = {"connect_timeout": 5, "options": f"-c statement_timeout={int(OUTBOX_LAG_TIMEOUT_SECONDS * 1000)}"}
        else:
            connect_args = {"timeout": OUTBOX_LAG_TIMEOUT_SECONDS}
        self._engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-lag")
        self._running = threading.Lock()

    def _count(self) -> float:
        try:
            with self._engine.connect() as connection:
                return float(connection.execute(_COUNT_UNPUBLISHED).scalar_one())
        except Exception:  # noqa: BLE001 - an unavailable database is an unknown lag, not a failed scrape
            return math.nan

    async def measure(self) -> float:
        """Return the number of unpublished events (at most OUTBOX_LAG_CAP), or NaN if the database does not say in time."""
        if not self._running.acquire(blocking=False):
            return math.nan
        try:
            counting = self._executor.submit(self._count)
        except RuntimeError:  # closed: the app is shutting down
            self._running.release()
            return math.nan
        # Released when the count ends, also one that outlives this scrape's wait.
        counting.add_done_callback(lambda _done: self._running.release())
        try:
            return await asyncio.wait_for(asyncio.wrap_future(counting), OUTBOX_LAG_TIMEOUT_SECONDS)
        except TimeoutError:
            return math.nan

    def close(self) -> None:
        """Stop the counting thread (without waiting for a hung count) and drop the engine."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._engine.dispose()


class _Measured:
    """A collector of values measured just before the exposition is generated."""

    def __init__(self) -> None:
        self.lag = math.nan

    def collect(self) -> Iterable[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            OUTBOX_LAG_NAME,
            f"Outbox events not yet published, counted at scrape time (up to {OUTBOX_LAG_CAP}); "
            "NaN when the database did not answer in time.",
            value=self.lag,
        )


class ServiceMetrics:
    """One app's metrics: its pool sampled, the outbox counted at scrape time, and the exposition of all of it."""

    def __init__(self, engine: Engine, database_url: str, pool_capacity: int) -> None:
        self.pool = PoolGauges(engine, pool_capacity)
        self.outbox_lag = OutboxLag(database_url)
        _WRITER.start()
        if multiprocess_mode():
            self._registry = CollectorRegistry()
            MultiProcessCollector(self._registry)  # reads every process's files at each scrape
        else:
            self._registry = REGISTRY
        self._measured = _Measured()
        self._measured_registry = CollectorRegistry()
        self._measured_registry.register(self._measured)

    async def exposition(self) -> bytes:
        """Return every metric in Prometheus' text format, this process's counts written and the outbox lag measured now."""
        _WRITER.write_now()
        lag = await self.outbox_lag.measure()
        # Nothing awaits between setting the value and generating it, so concurrent scrapes cannot mix.
        self._measured.lag = lag
        return generate_latest(self._registry) + generate_latest(self._measured_registry)

    def close(self) -> None:
        """Write the last counts, take the pool out of the gauges and release the lag counter's thread and engine."""
        REQUEST_METRICS.flush()
        self.pool.close()
        self.outbox_lag.close()


class MetricsEndpoint:
    """Answer `GET /metrics` (and HEAD) with the app's metrics, outside the API spec; other methods get 405."""

    def __init__(self, app: ASGIApp, *, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != METRICS_PATH:
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            detail = f"{scope['method']} is not allowed on {METRICS_PATH}; use GET, HEAD."
            response = _problem(405, "Method Not Allowed", detail, {"Allow": "GET, HEAD"})
        else:
            try:
                response = Response(await self.metrics.exposition(), media_type=CONTENT_TYPE_PLAIN_0_0_4)
            except Exception:  # in front of Connexion's error handling: answer as it would
                logger.exception("Could not collect the metrics")
                response = _problem(500, "Internal Server Error", "The metrics could not be collected.")
        await response(scope, receive, send)


def _problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    return Response(problem_json(status, title, detail), status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


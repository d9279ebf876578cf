"""CPU per request in one process, without HTTP server or load generator: a steady number for comparing patches.

The wrk run (`bench/run.py`) shares 2 cores with PostgreSQL, wrk and whoever else uses the machine, so
small differences drown in noise. This drives the app in-process instead, one request at a time, and
divides the process's CPU time (all threads) by the number of requests:

- the service: its ASGI app, built by `create_app()` as `app:app` is (Connexion middleware →
  worker thread → injector → handler → PostgreSQL), optionally with bench/experiments.py patches;
- the floor: `bench/floor_app.py`'s WSGI app, called directly.

Neither includes an HTTP server (uvicorn, gunicorn), so the numbers are lower than the wrk run's CPU per
request. Each variant runs in its own process, the variants take turns, and the median of the
repetitions is reported.

    .venv/bin/python bench/inprocess.py --variant no_outbox_lock --variant no_outbox --variant no_outbox_lock,no_outbox
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(PROJECT_ROOT))

from bench.profile_summary import component_of, layer_of  # noqa: E402

DRIVER_LAYER = "event loop + this driver (uvicorn's part in production)"

API_KEY = "bench-inprocess"
ROOM = {
    "name": "Bench room", "description": "A bright room in a shared flat, close to the station.", "price": 650,
    "recurrency": "monthly", "provider": "bench", "monthly_price": 650, "property_size": "14 m²",
    "coordinates": {"lat": 52.4986, "lon": 13.4182},
    "area": {"name": "Kreuzberg", "country": "Germany", "city": "Berlin", "coordinates": {"lat": 52.4986, "lon": 13.4182}},
    "is_visible": True, "images": [{"url": "https://bench.example.com/images/1.jpg"}],
}


def requests_for(scenario: str, ids: list[str], cities: list[str], prefix: str, count: int):
    """Yield (method, path, query, body) for `count` requests of a scenario."""
    for number in range(count):
        if scenario == "get_room":
            yield "GET", f"/v1/rooms/{ids[number * 7919 % len(ids)]}", "", b""
        elif scenario == "search_city":
            yield "GET", "/v1/rooms", f"city={cities[number % len(cities)]}&limit=20", b""
        else:
            body = json.dumps(ROOM | {"url": f"https://bench.example.com/{prefix}/{number}"}).encode()
            yield "POST", "/v1/rooms", "", body


class AsgiDriver:
    """Calls an ASGI app the way a server would, one request at a time, on one event loop."""

    def __init__(self, app) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()

    def __call__(self, method: str, path: str, query: str, body: bytes) -> int:
        """Send one request and return the response status."""
        return self.loop.run_until_complete(self._call(method, path, query, body))

    async def _call(self, method: str, path: str, query: str, body: bytes) -> int:
        headers = [(b"host", b"127.0.0.1"), (b"x-api-key", API_KEY.encode())]
        if body:
            headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
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


class WsgiDriver:
    """Calls a WSGI app directly with a minimal environ."""

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, method: str, path: str, query: str, body: bytes) -> int:
        """Send one request and return the response status."""
        environ = {
            "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
            "HTTP_HOST": "127.0.0.1", "HTTP_X_API_KEY": API_KEY, "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": "application/json" if body else "",
        }
        status = []
        for _ in self.app(environ, lambda line, headers, exc_info=None: status.append(line)):
            pass
        return int(status[0].split()[0])


class CallCounter:
    """Counts Python function calls (and coroutine resumptions) in every thread while `counting` is set.

    Each call is also charged to a layer, like the py-spy summary: the innermost frame outside the
    standard library decides, and calls in a2wsgi threads (a FlaskApp) count as inside Flask.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.counting = False
        self.layers: Counter[str] = Counter()
        self.components: Counter[str] = Counter()
        self._components: dict[str, str | None] = {}

    def install(self) -> None:
        """Hook this thread and every thread started later (worker pools start on first use)."""
        def hook(frame, event, _arg):
            if event != "call" or not self.counting:
                return
            self.calls += 1
            component = None
            while frame is not None and component is None:
                filename = frame.f_code.co_filename
                if filename not in self._components:
                    self._components[filename] = component_of(filename)
                component = self._components[filename]
                frame = frame.f_back
            if component is None or component.startswith("app: bench.inprocess"):
                # The event loop and this driver: uvicorn's part in production.
                self.layers[DRIVER_LAYER] += 1
                self.components[DRIVER_LAYER] += 1
            else:
                self.components[component] += 1
                self.layers[layer_of(component, in_flask=threading.current_thread().name.startswith("WSGI"))] += 1

        threading.setprofile(hook)
        sys.setprofile(hook)


def child(variant: str, scenarios: list[str], count: int, warmup: int, ids: list[str], cities: list[str],
          *, count_calls: bool = False) -> dict:
    """Measure one variant in this process: CPU and wall µs per request, or Python calls per request."""
    counter = CallCounter()
    if count_calls:
        counter.install()  # before the app exists, so that its threads are counted too
    if variant == "floor":
        sys.path.insert(0, str(BENCH_DIR))
        import floor_app

        driver = WsgiDriver(floor_app.app.wsgi_app)
    else:
        from bench import experiments

        os.environ["BENCH_EXPERIMENTS"] = "" if variant == "service" else variant.removeprefix("service+")
        for patch in experiments.selected():
            experiments.PATCHES[patch]()
        from app import create_app

        driver = AsgiDriver(create_app())
    results = {}
    prefix = f"{variant.replace(',', '-').replace('+', '-')}-{time.time_ns()}"
    for scenario in scenarios:
        for method, path, query, body in requests_for(scenario, ids, cities, f"{prefix}-warm-{scenario}", warmup):
            status = driver(method, path, query, body)
            if status >= 400:
                raise SystemExit(f"{variant} answered {status} to {method} {path}?{query}")
        counter.calls, counter.counting = 0, count_calls
        cpu, wall = time.process_time(), time.perf_counter()
        for method, path, query, body in requests_for(scenario, ids, cities, f"{prefix}-{scenario}", count):
            driver(method, path, query, body)
        counter.counting = False
        results[scenario] = {"cpu_us": (time.process_time() - cpu) / count * 1e6,
                             "wall_us": (time.perf_counter() - wall) / count * 1e6,
                             "calls": counter.calls / count,
                             "layers": {layer: n / count for layer, n in counter.layers.items()},
                             "components": {name: n / count for name, n in counter.components.most_common(15)}}
        counter.layers.clear()
        counter.components.clear()
    return results


def main(argv: list[str] | None = None) -> int:
    """Seed a throwaway cluster, measure every variant in turns, print and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", action="append", default=[], metavar="PATCH[,PATCH]",
                        help="a patched service to measure besides the service and the floor (repeatable)")
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per scenario")
    parser.add_argument("--warmup", type=int, default=300, help="warm-up requests per scenario")
    parser.add_argument("--repeat", type=int, default=3, help="CPU repetitions, medians reported (0: call counts only)")
    parser.add_argument("--scenarios", default="get_room,search_city,create_room")
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "results" / "inprocess.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--count-calls", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    scenarios = options.scenarios.split(",")

    if options.child:
        data = json.loads(Path(options.data).read_text())
        print(json.dumps(child(options.child, scenarios, options.requests, options.warmup, data["ids"], data["cities"],
                               count_calls=options.count_calls)))
        return 0

    from bench.report import machine_facts
    from bench.run import CITIES, seed_database
    from providers.database import migrate
    from tests.postgres import ThrowawayPostgres

    variants = ["service", "floor", *(f"service+{v}" for v in options.variant)]
    postgres = ThrowawayPostgres()
    work = Path(tempfile.mkdtemp(prefix="rooms-inprocess-"))
    measured: dict[str, dict[str, list[dict]]] = {v: {s: [] for s in scenarios} for v in variants}
    calls: dict[str, dict[str, float]] = {}
    layers: dict[str, dict[str, dict[str, float]]] = {}
    components: dict[str, dict[str, dict[str, float]]] = {}
    try:
        url = postgres.start()
        migrate(url)
        ids = seed_database(url, rooms=10_000, items=1_000, seed=6)
        data = work / "data.json"
        data.write_text(json.dumps({"ids": ids, "cities": [c[0].replace(" ", "%20") for c in CITIES]}))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("APP_", "BENCH_")) and k != "DATABASE_URL"}
        env |= {"DATABASE_URL": url, "APP_API_KEYS": API_KEY, "APP_DB_CONNECTIONS": "10"}

        def run_child(variant: str, *extra: str) -> dict:
            completed = subprocess.run(
                [sys.executable, __file__, "--child", variant, "--data", str(data), "--scenarios", options.scenarios,
                 *extra], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, check=False,
            )
            if completed.returncode != 0:
                raise RuntimeError(f"{variant} failed:\n{completed.stdout[-2000:]}\n{completed.stderr[-4000:]}")
            return json.loads(completed.stdout.strip().splitlines()[-1])

        # Call counts are deterministic: one short pass each, with the counting hook slowing nothing else.
        for variant in variants:
            counted = run_child(variant, "--count-calls", "--requests", "200", "--warmup", "50")
            calls[variant] = {scenario: counted[scenario]["calls"] for scenario in scenarios}
            layers[variant] = {scenario: counted[scenario]["layers"] for scenario in scenarios}
            components[variant] = {scenario: counted[scenario]["components"] for scenario in scenarios}
            print(f"    calls {variant:50} " + "  ".join(f"{s} {calls[variant][s]:,.0f}" for s in scenarios), flush=True)
        for repetition in range(options.repeat):
            for variant in variants[repetition % len(variants):] + variants[:repetition % len(variants)]:
                result = run_child(variant, "--requests", str(options.requests), "--warmup", str(options.warmup))
                for scenario in scenarios:
                    measured[variant][scenario].append(result[scenario])
                print(f"    {repetition + 1}/{options.repeat} {variant:50} "
                      + "  ".join(f"{s} {result[s]['cpu_us']:.0f} µs" for s in scenarios), flush=True)
    finally:
        postgres.stop()

    facts = machine_facts()
    lines = [
        "# In-process CPU per request",
        "",
        f"Written by `bench/inprocess.py` on {facts['date']}, commit `{facts['commit'][:10]}`"
        + ("+ (uncommitted changes)" if facts["dirty"] else "") + "; no HTTP server, one request at a time; "
        + (f"CPU: {options.requests} requests per scenario after {options.warmup} warm-up, median of "
           f"{options.repeat} repetitions; " if options.repeat else "CPU not timed (`--repeat 0`); ")
        + "calls: 200 requests per scenario after 50 warm-up.",
        "",
        "CPU time on this shared VM moves by about ±15 % between repetitions; the Python call count (function "
        "calls and coroutine resumptions in all threads, counted in a separate pass) is exact and repeatable.",
        "",
        "| variant | " + " | ".join(f"{s}: CPU µs/req (Δ) | {s}: Python calls/req (Δ)" for s in scenarios) + " |",
        "| --- |" + " ---: | ---: |" * len(scenarios),
    ]
    for variant in variants:
        cells = []
        for scenario in scenarios:
            count, base_count = calls[variant][scenario], calls["service"][scenario]
            if options.repeat:
                cpu = statistics.median(r["cpu_us"] for r in measured[variant][scenario])
                base = statistics.median(r["cpu_us"] for r in measured["service"][scenario])
                cells.append(f"{cpu:,.0f} ({cpu - base:+,.0f}) | {count:,.0f} ({count - base_count:+,.0f})")
            else:
                cells.append(f"— | {count:,.0f} ({count - base_count:+,.0f})")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Python calls per request by layer (service | floor), charged like the py-spy summary:",
        "",
        "| layer | " + " | ".join(scenarios) + " |",
        "| --- |" + " ---: |" * len(scenarios),
    ]
    names = sorted({n for s in scenarios for n in layers["service"][s]} | {n for s in scenarios for n in layers["floor"][s]},
                   key=lambda n: -layers["service"][scenarios[0]].get(n, 0))
    for name in names:
        lines.append(f"| {name} | " + " | ".join(
            f"{layers['service'][s].get(name, 0):,.0f} \\| {layers['floor'][s].get(name, 0):,.0f}" for s in scenarios) + " |")
    lines += ["", "The service's heaviest components by Python calls per request:", ""]
    for scenario in scenarios:
        top = ", ".join(f"{name} {n:,.0f}" for name, n in components["service"][scenario].items())
        lines.append(f"- **{scenario}**: {top}")
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

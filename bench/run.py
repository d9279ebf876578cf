"""Benchmark the service against a floor and stock Connexion on a throwaway PostgreSQL; write bench/RESULTS.md.

One run: start a cluster, migrate and seed it (10,000 rooms, 1,000 items), serve three stacks with the
same worker count and pool size: the service exactly as production does (`python serve.py`), the floor
(`bench/floor_app.py`: Flask under gunicorn) and stock Connexion (`bench/stock_app.py`: FlaskApp under
uvicorn). Measure cold starts, check all three answer the same JSON, load them in turns with wrk on
loopback (warm-up, then rounds in rotating order), read each worker's memory, profile the service with
py-spy, and write the report. Everything started is stopped at the end, also on failure or Ctrl-C.

    .venv/bin/python bench/run.py                                       # the default run, about 11 minutes
    .venv/bin/python bench/run.py --duration 3 --rounds 1 --no-profile  # a quick look (about 2 minutes)
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import random
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(PROJECT_ROOT))

from bench.profile_summary import summarise_collapsed  # noqa: E402
from bench.report import STACKS, machine_facts, render_results, summarise  # noqa: E402
from tests.support.postgres import ThrowawayPostgres, free_port  # noqa: E402

WRK_DIR = BENCH_DIR / "wrk"
RESULTS_FILE = BENCH_DIR / "RESULTS.md"
PROFILE_DIR = BENCH_DIR / "profiles"
LOG_DIR = BENCH_DIR / "logs"
FLOOR_THREADS = 10  # gunicorn threads per floor worker: a2wsgi's default pool under the stock FlaskApp

CITIES = [  # (city, country, lat, lon, weight): a few big cities and a long tail, so result pages differ.
    ("Berlin", "Germany", 52.52, 13.405, 12), ("Munich", "Germany", 48.137, 11.575, 8),
    ("Hamburg", "Germany", 53.551, 9.993, 7), ("Cologne", "Germany", 50.938, 6.96, 5),
    ("Frankfurt", "Germany", 50.11, 8.682, 5), ("Leipzig", "Germany", 51.34, 12.375, 4),
    ("Vienna", "Austria", 48.208, 16.373, 6), ("Zurich", "Switzerland", 47.377, 8.541, 4),
    ("Amsterdam", "Netherlands", 52.368, 4.904, 6), ("Rotterdam", "Netherlands", 51.924, 4.478, 3),
    ("Paris", "France", 48.857, 2.352, 8), ("Lyon", "France", 45.764, 4.836, 3),
    ("Madrid", "Spain", 40.417, -3.704, 6), ("Barcelona", "Spain", 41.385, 2.173, 6),
    ("Lisbon", "Portugal", 38.722, -9.139, 4), ("Rome", "Italy", 41.903, 12.496, 5),
    ("Milan", "Italy", 45.464, 9.19, 4), ("Prague", "Czechia", 50.076, 14.438, 3),
    ("Warsaw", "Poland", 52.23, 21.012, 3), ("Copenhagen", "Denmark", 55.676, 12.568, 3),
    ("Stockholm", "Sweden", 59.329, 18.069, 3), ("Dublin", "Ireland", 53.35, -6.26, 3),
    ("Brussels", "Belgium", 50.85, 4.352, 2), ("Bern", "Switzerland", 46.948, 7.447, 2),
    ("Sao Paulo", "Brazil", -23.55, -46.633, 2), ("New York", "United States", 40.713, -74.006, 3),
]
PROVIDERS = ["wg-gesucht", "immowelt", "spareroom", "idealista", "housinganywhere", "kamernet"]
RECURRENCIES = ["monthly"] * 8 + ["weekly", "daily"]
WORDS = ["bright", "quiet", "shared", "flat", "balcony", "kitchen", "near", "park", "station", "furnished", "room"]


# --------------------------------------------------------------------------- set-up


def ensure_tools(*, need_py_spy: bool) -> None:
    """Install wrk (Debian) and bench/requirements.txt (PyPI) when they are missing."""
    if shutil.which("wrk") is None:
        if os.geteuid() != 0:
            raise SystemExit("wrk is missing: install Debian's `wrk` package (apt-get install -y wrk).")
        print("installing wrk with apt-get ...", flush=True)
        apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=apt_env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=apt_env)
    venv_bin = str(Path(sys.executable).parent)
    wanted = ["gunicorn"] + (["py-spy"] if need_py_spy else [])
    missing_module = any(importlib.util.find_spec(module) is None for module in ("flask", "a2wsgi", "uvicorn"))
    if missing_module or any(shutil.which(tool, path=venv_bin) is None for tool in wanted):
        print("installing bench/requirements.txt ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-r", str(BENCH_DIR / "requirements.txt")],
                       check=True)


def seed_database(url: str, *, rooms: int, items: int, seed: int) -> list[str]:
    """Bulk-insert generated rooms and items with SQLAlchemy Core, analyse, and return the room ids."""
    from sqlalchemy import MetaData, Table, create_engine, text

    rng = random.Random(seed)
    engine = create_engine(url)
    metadata = MetaData()
    # Reflected, so the seed follows the migrated schema rather than the app's models.
    rooms_table = Table("rooms", metadata, autoload_with=engine)
    items_table = Table("items", metadata, autoload_with=engine)
    weights = [city[4] for city in CITIES]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for number in range(rooms):
        city, country, lat, lon, _ = rng.choices(CITIES, weights)[0]
        price = rng.randrange(150, 3000)
        created = start + timedelta(seconds=rng.randrange(0, 300 * 86400))
        has_area = rng.random() > 0.05
        area_point = has_area and rng.random() > 0.3
        rows.append({
            "id": uuid.UUID(bytes=rng.randbytes(16), version=4),
            "name": f"Room {number} in {city}",
            "description": " ".join(rng.choices(WORDS, k=rng.randrange(8, 80))),
            "price": price,
            "recurrency": rng.choice(RECURRENCIES),
            "provider": rng.choice(PROVIDERS),
            "url": f"https://seed.example.com/rooms/{number}",
            "monthly_price": price,
            "property_size": f"{rng.randrange(8, 40)} m²",
            "lat": lat + rng.uniform(-0.08, 0.08),
            "lon": lon + rng.uniform(-0.08, 0.08),
            "area_name": f"{city} district {rng.randrange(1, 12)}" if has_area else None,
            "area_country": country if has_area else None,
            "area_city": city if has_area else None,
            "area_lat": lat if area_point else None,
            "area_lon": lon if area_point else None,
            "is_visible": rng.random() > 0.1,
            "images": [{"url": f"https://seed.example.com/images/{number}/{i}.jpg"} for i in range(rng.randrange(4))],
            "version": 1,
            "created_at": created,
            "updated_at": created,
        })
    with engine.begin() as connection:
        connection.execute(rooms_table.insert(), rows)
        connection.execute(items_table.insert(), [{"name": f"Item {n}", "version": 1} for n in range(items)])
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))
    engine.dispose()
    return [str(row["id"]) for row in rows]


# --------------------------------------------------------------------------- processes


def _parents() -> dict[int, int]:
    """Return every live process's parent pid, from one pass over /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return parents


def children(pid: int) -> list[int]:
    """Return the pids whose parent is `pid`."""
    return [child for child, parent in _parents().items() if parent == pid]


def process_tree(pid: int) -> list[int]:
    """Return `pid` and all its descendants."""
    parents = _parents()
    pids, queue = [], [pid]
    while queue:
        current = queue.pop()
        pids.append(current)
        queue.extend(child for child, parent in parents.items() if parent == current)
    return pids


def cpu_seconds(pids: list[int], *, system_only: bool = False) -> float:
    """Return the CPU time (user+system, or system only) used so far by these processes and their reaped children.

    Counting each live process's reaped children (cutime/cstime) keeps the sum from dropping when a
    process exits during a round, e.g. a PostgreSQL backend or an autovacuum worker.
    """
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user, system, children_user, children_system = (int(value) for value in fields[11:15])
        total += system + children_system if system_only else user + system + children_user + children_system
    return total / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """Return the CPU time all cores have spent busy (neither idle nor waiting for I/O) since boot."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int) -> dict[str, int]:
    """Return a process's resident (RSS) and proportional (PSS) memory in KiB, from /proc."""
    result = {}
    for name, key in ((f"/proc/{pid}/status", "VmRSS:"), (f"/proc/{pid}/smaps_rollup", "Pss:")):
        try:
            line = next(line for line in Path(name).read_text().splitlines() if line.startswith(key))
        except (OSError, StopIteration):
            continue
        result["rss" if key == "VmRSS:" else "pss"] = int(line.split()[1])
    return result


def stop_group(process: subprocess.Popen, timeout: float) -> None:
    """SIGTERM to a child's process group, SIGKILL if it is still running after `timeout` seconds."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@dataclass
class Server:
    """One benchmarked HTTP server, started in its own process group so that all its workers stop together."""

    name: str
    command: list[str]
    env: dict[str, str]
    port: int
    log_dir: Path
    process: subprocess.Popen | None = None
    cold_starts: list[float] = field(default_factory=list)

    def start(self, probe_path: str, timeout: float = 90.0) -> float:
        """Start the server; return the seconds from process start to its first 200 on `probe_path`."""
        log = open(self.log_dir / f"{self.name}-{len(self.cold_starts) + 1}.log", "wb")
        began = time.perf_counter()
        self.process = subprocess.Popen(self.command, env=self.env, cwd=PROJECT_ROOT, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        while time.perf_counter() - began < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            if http_request(self.port, "GET", probe_path, timeout=2)[0] == 200:
                self.cold_starts.append(time.perf_counter() - began)
                return self.cold_starts[-1]
            time.sleep(0.01)
        raise RuntimeError(f"{self.name} gave no 200 on {probe_path} within {timeout} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the whole process group: SIGTERM, SIGKILL after 20 s, then SIGKILL for any straggler."""
        if self.process is None:
            return
        stop_group(self.process, timeout=20)
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process = None

    def pids(self) -> list[int]:
        """Return the master's pid and every descendant's."""
        return process_tree(self.process.pid) if self.process else []

    def worker_pids(self) -> list[int]:
        """Return the worker processes: the master's children, without multiprocessing's resource tracker."""
        workers = []
        for pid in children(self.process.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"resource_tracker" not in cmdline:
                workers.append(pid)
        return sorted(workers)

    def log_tail(self, lines: int = 40) -> str:
        """Return the end of the latest log."""
        path = self.log_dir / f"{self.name}-{len(self.cold_starts) + 1}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def http_request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                 timeout: float = 5.0) -> tuple[int, bytes]:
    """Send one request to loopback; (0, b"") when nothing answers."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    except OSError:
        return 0, b""
    finally:
        connection.close()


@contextmanager
def exit_on_signals() -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into SystemExit, so `finally` stops what was started."""
    def _exit(signum, _frame):
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, _exit) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --------------------------------------------------------------------------- load


@dataclass(frozen=True)
class Scenario:
    """One benchmarked operation: its wrk script and the script's arguments for a stack and round."""

    name: str
    title: str
    script: str
    arguments: Callable[[str, str], list[str]]


def run_wrk(port: int, scenario: Scenario, stack: str, label: str, options: argparse.Namespace,
            duration: int) -> dict:
    """Run wrk once against a port and return its summary (requests, percentiles, errors)."""
    command = [
        "wrk", f"-t{options.threads}", f"-c{options.connections}", f"-d{duration}s", "--timeout", "10s",
        "-s", str(WRK_DIR / scenario.script), f"http://127.0.0.1:{port}", "--", *scenario.arguments(stack, label),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60, check=False)
    line = next((ln for ln in completed.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if completed.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({completed.returncode}):\n{completed.stdout}\n{completed.stderr}")
    result = json.loads(line.removeprefix("BENCH_JSON "))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def measure(server: Server, scenario: Scenario, label: str, options: argparse.Namespace, duration: int,
            postgres: ThrowawayPostgres) -> dict:
    """Load one server with wrk and add the CPU its processes, PostgreSQL, wrk and the rest used meanwhile."""
    server_pids, database_pids = server.pids(), process_tree(postgres.process.pid)
    system_before = cpu_seconds(server_pids, system_only=True)
    before = (cpu_seconds(server_pids), cpu_seconds(database_pids), machine_busy_seconds(),
              resource.getrusage(resource.RUSAGE_CHILDREN))
    result = run_wrk(server.port, scenario, server.name, label, options, duration)
    after = (cpu_seconds(server_pids), cpu_seconds(process_tree(postgres.process.pid)), machine_busy_seconds(),
             resource.getrusage(resource.RUSAGE_CHILDREN))
    result["cpu_seconds"] = after[0] - before[0]
    result["cpu_system_seconds"] = cpu_seconds(server_pids, system_only=True) - system_before
    result["db_cpu_seconds"] = after[1] - before[1]
    wrk_cpu = (after[3].ru_utime - before[3].ru_utime) + (after[3].ru_stime - before[3].ru_stime)
    own = result["cpu_seconds"] + result["db_cpu_seconds"] + wrk_cpu
    result["other_cores"] = max(0.0, (after[2] - before[2]) - own) / (result["duration_us"] / 1e6)
    return result


def profile_service(service: Server, scenario: Scenario, options: argparse.Namespace,
                    postgres: ThrowawayPostgres) -> dict:
    """Sample the service's workers with py-spy (GIL holder only) under load; return the summary."""
    py_spy = str(Path(sys.executable).parent / "py-spy")
    raw = PROFILE_DIR / f"{scenario.name}.txt"
    raw.unlink(missing_ok=True)
    spy = subprocess.Popen(
        [py_spy, "record", "--pid", str(service.process.pid), "--subprocesses", "--gil", "--nonblocking", "--rate", "500",
         "--full-filenames", "--format", "raw", "--output", str(raw), "--duration", str(options.profile_seconds)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        time.sleep(1)  # py-spy attaches to every worker before the load starts
        # The load outlasts the sampling, so every sample is taken under load.
        result = measure(service, scenario, "profile", options, options.profile_seconds + 2, postgres)
        _, errors = spy.communicate(timeout=60)
    finally:
        if spy.poll() is None:
            os.killpg(spy.pid, signal.SIGKILL)
            spy.wait()
    if spy.returncode != 0 or not raw.exists():
        raise RuntimeError(f"py-spy failed ({spy.returncode}): {errors.decode(errors='replace')}")
    requests = max(result["requests"], 1)
    summary = summarise_collapsed(raw.read_text(), requests=result["requests"],
                                  cpu_ms_per_request=1000 * (result["cpu_seconds"] - result["cpu_system_seconds"]) / requests,
                                  system_ms_per_request=1000 * result["cpu_system_seconds"] / requests)
    (PROFILE_DIR / f"{scenario.name}.summary.txt").write_text(summary.text() + "\n")
    return summary.as_dict()


def check_parity(servers: list[Server], ids: list[str], api_key: str) -> None:
    """Fail unless every stack answers with the service's JSON for the same room, the same page and a new room,
    and writes the outbox event the service's feed reads back as the room it answered."""
    service, others = servers[0], servers[1:]
    for path in ("/v1/health", f"/v1/rooms/{ids[1]}", "/v1/rooms?city=Berlin&limit=20"):
        status, body = http_request(service.port, "GET", path)
        for other in others:
            other_status, other_body = http_request(other.port, "GET", path)
            if status != 200 or other_status != 200 or json.loads(body) != json.loads(other_body):
                raise RuntimeError(f"service and {other.name} disagree on GET {path}:\n"
                                   f"{status} {body!r}\n{other_status} {other_body!r}")
    created = {}
    for server in servers:
        body = json.dumps({
            "name": "Parity", "description": "d", "price": 1, "recurrency": "monthly", "provider": "p",
            "url": f"https://parity.example.com/{server.name}/{secrets.token_hex(4)}", "monthly_price": 1,
            "property_size": "1 m²", "coordinates": {"lat": 1.5, "lon": 2.5},
            "area": {"name": "A", "country": "C", "city": "Parity"}, "images": [{"url": "https://parity.example.com/i.jpg"}],
        }).encode()
        status, answer = http_request(server.port, "POST", "/v1/rooms", body,
                                      {"Content-Type": "application/json", "X-API-Key": api_key})
        if status != 201:
            raise RuntimeError(f"{server.name} answered {status} to the parity POST: {answer!r}")
        created[server.name] = json.loads(answer)
    differing = {"id", "url", "created_at", "updated_at"}
    same = {name: {k: v for k, v in room.items() if k not in differing} for name, room in created.items()}
    for other in others:
        if same[other.name] != same[service.name]:
            raise RuntimeError(f"service and {other.name} disagree on POST /v1/rooms:\n"
                               f"{same[service.name]}\n{same[other.name]}")
    status, answer = http_request(service.port, "GET", "/v1/events?type=room.created&limit=1000")
    entities = {event["key"]: event["entity"] for event in json.loads(answer)["data"]} if status == 200 else {}
    for name, room in created.items():
        if entities.get(room["id"]) != room:
            raise RuntimeError(f"the feed has no room.created event equal to {name}'s room {room['id']}")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--duration", type=int, default=7, help="seconds of load per scenario, stack and round")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per scenario and stack")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (medians are reported)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes per stack")
    parser.add_argument("--pool-size", type=int, default=10, help="database pool per worker (APP_DB_CONNECTIONS)")
    parser.add_argument("--cold-starts", type=int, default=3, help="cold starts measured per stack")
    parser.add_argument("--rooms", type=int, default=10_000, help="rooms to seed")
    parser.add_argument("--scenarios", default="health,get_room,get_room_avro,search_city,create_room",
                        help="comma-separated subset")
    parser.add_argument("--profile-seconds", type=int, default=10, help="py-spy seconds per scenario")
    parser.add_argument("--no-profile", dest="profile_seconds", action="store_const", const=0, help="skip py-spy")
    parser.add_argument("--hold", action="store_true",
                        help="start and seed everything, print the addresses and wait (manual load or profiling)")
    parser.add_argument("--output", type=Path, default=RESULTS_FILE, help="markdown report (raw numbers: .json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the whole benchmark, write the report, and stop everything that was started."""
    options = parse_args(argv)
    ensure_tools(need_py_spy=options.profile_seconds > 0)
    work = Path(tempfile.mkdtemp(prefix="rooms-bench-"))
    postgres = ThrowawayPostgres()
    servers: list[Server] = []
    with exit_on_signals():
        try:
            return run(options, work, postgres, servers)
        finally:
            for server in servers:
                server.stop()
            postgres.stop()
            shutil.rmtree(LOG_DIR, ignore_errors=True)
            LOG_DIR.mkdir()
            for log in work.glob("*.log"):
                shutil.copy(log, LOG_DIR / log.name)
            shutil.rmtree(work, ignore_errors=True)


def stacks(options: argparse.Namespace, env: dict[str, str], work: Path) -> list[Server]:
    """Return the three stacks, not started: the service, the floor and stock Connexion, in that order."""
    service_port, floor_port, stock_port = free_port(), free_port(), free_port()
    return [
        Server("service", [sys.executable, "serve.py"], env | {"APP_PORT": str(service_port)}, service_port, work),
        Server("floor", [sys.executable, "-m", "gunicorn", "--chdir", str(BENCH_DIR), "--workers", str(options.workers),
                         "--worker-class", "gthread", "--threads", str(FLOOR_THREADS), "--keep-alive", "30",
                         "--bind", f"127.0.0.1:{floor_port}", "--log-level", "warning", "floor_app:app"],
               env, floor_port, work),
        Server("stock", [sys.executable, "-m", "uvicorn", "bench.stock_app:app", "--workers", str(options.workers),
                         "--host", "127.0.0.1", "--port", str(stock_port), "--no-access-log"],
               env, stock_port, work),
    ]


def run(options: argparse.Namespace, work: Path, postgres: ThrowawayPostgres, servers: list[Server]) -> int:
    """Do the run described in the module docstring; `servers` collects what must be stopped."""
    from providers.database import migrate

    step = stepper()
    facts = machine_facts()  # before the load: the load average says how busy the machine already was
    api_key, run_token = "bench-" + secrets.token_hex(8), secrets.token_hex(4)

    step("starting PostgreSQL and applying the migrations")
    url = postgres.start()
    migrate(url)
    step(f"seeding {options.rooms:,} rooms and 1,000 items")
    ids = seed_database(url, rooms=options.rooms, items=1_000, seed=6)
    (work / "ids.txt").write_text("\n".join(ids) + "\n")
    (work / "cities.txt").write_text("\n".join(urllib.parse.quote(city[0]) for city in CITIES) + "\n")

    # The floor and the stock app read the service's variables: DATABASE_URL, APP_DB_CONNECTIONS, APP_API_KEYS.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APP_", "BENCH_")) and k != "DATABASE_URL"}
    env |= {"DATABASE_URL": url, "APP_API_KEYS": api_key, "APP_DB_CONNECTIONS": str(options.pool_size),
            "APP_ADDRESS": "127.0.0.1", "APP_WORKERS": str(options.workers), "PYTHONUNBUFFERED": "1"}
    servers += stacks(options, env, work)
    service = servers[0]

    probe = f"/v1/rooms/{ids[0]}"
    step(f"cold starts ({options.cold_starts} per stack)")
    for attempt in range(options.cold_starts):
        for server in servers:
            print(f"    {server.name}: {server.start(probe):.2f} s", flush=True)
            if attempt < options.cold_starts - 1:
                server.stop()
    check_parity(servers, ids, api_key)
    if options.hold:
        print("    " + ", ".join(f"{s.name} http://127.0.0.1:{s.port} (pid {s.process.pid})" for s in servers)
              + f"; API key {api_key}; ids {work / 'ids.txt'}; cities {work / 'cities.txt'}; Ctrl-C stops all",
              flush=True)
        while True:
            time.sleep(3600)

    scenarios = [
        # No database and no injection: what each serving stack costs by itself.
        Scenario("health", "`GET /v1/health` (no database)", "health.lua", lambda stack, label: []),
        Scenario("get_room", "`GET /v1/rooms/{id}`", "get_room.lua", lambda stack, label: [str(work / "ids.txt")]),
        # Only the service answers Avro: its Avro answer is measured against the others' JSON.
        Scenario("get_room_avro", "`GET /v1/rooms/{id}`, `Accept: application/avro` (floor, stock: JSON)",
                 "get_room_avro.lua",
                 lambda stack, label: [str(work / "ids.txt"), "avro" if stack == "service" else "json"]),
        Scenario("search_city", "`GET /v1/rooms?city=…&limit=20`", "search_city.lua",
                 lambda stack, label: [str(work / "cities.txt")]),
        # The url prefix is unique per run, stack and round, so no POST ever conflicts.
        Scenario("create_room", "`POST /v1/rooms`", "create_room.lua",
                 lambda stack, label: [api_key, f"{run_token}-{stack}-{label}"]),
    ]
    scenarios = [s for s in scenarios if s.name in options.scenarios.split(",")]

    step(f"warm-up ({options.warmup} s per scenario and stack)")
    for scenario in scenarios:
        for server in servers:
            measure(server, scenario, "warmup", options, options.warmup, postgres)

    results: dict = {s.name: {server.name: [] for server in servers} for s in scenarios}
    for round_number in range(options.rounds):
        step(f"round {round_number + 1}/{options.rounds}")
        # Rotating the order spreads slow drifts (autovacuum, other users) over every stack.
        order = servers[round_number % len(servers):] + servers[:round_number % len(servers)]
        for scenario in scenarios:
            for server in order:
                result = measure(server, scenario, str(round_number + 1), options, options.duration, postgres)
                results[scenario.name][server.name].append(result)
                print(f"    {scenario.name:13} {server.name:7} {result['rps']:7.0f} req/s  p50 "
                      f"{result['p50_us'] / 1000:6.1f} ms  p99 {result['p99_us'] / 1000:7.1f} ms  "
                      f"non-2xx {result['errors']['status']}  other load {result['other_cores']:.2f}", flush=True)

    memory = {server.name: {"master": memory_kib(server.process.pid),
                            "workers": [memory_kib(pid) for pid in server.worker_pids()]} for server in servers}

    profiles = {}
    if options.profile_seconds > 0:
        step(f"profiling the service ({options.profile_seconds} s per scenario)")
        PROFILE_DIR.mkdir(exist_ok=True)
        for scenario in scenarios:
            profiles[scenario.name] = profile_service(service, scenario, options, postgres)
            top = ", ".join(f"{layer} {share:.0%}" for layer, share in profiles[scenario.name]["layers"][:4])
            print(f"    {scenario.name}: {top}", flush=True)

    report = {
        "machine": facts,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(options).items()},
        "floor_threads": FLOOR_THREADS,
        "cities": len(CITIES),
        "scenarios": [{"name": s.name, "title": s.title} for s in scenarios],
        "summary": {name: {stack: summarise(rounds) for stack, rounds in per_stack.items()}
                    for name, per_stack in results.items()},
        "rounds": results,
        "memory": memory,
        "cold_start": {server.name: server.cold_starts for server in servers},
        "profile": profiles,
    }
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    previous = options.output.read_text() if options.output.exists() else None
    options.output.write_text(render_results(report, previous))
    step(f"wrote {options.output}")
    for scenario in scenarios:
        rps = {name: report["summary"][scenario.name][name]["rps"] for name in STACKS}
        print(f"    {scenario.name:13} service/floor {rps['service'] / rps['floor']:.2f}  "
              f"service/stock {rps['service'] / rps['stock']:.2f}", flush=True)
    return 0


def stepper() -> Callable[[str], None]:
    """Return a function that prints a progress line with the seconds since the run began."""
    began = time.perf_counter()

    def step(message: str) -> None:
        print(f"[{time.perf_counter() - began:6.1f} s] {message}", flush=True)

    return step


if __name__ == "__main__":
    sys.exit(main())

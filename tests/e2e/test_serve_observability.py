"""serve.py as production runs it: every worker in one /metrics, dead workers' gauges dropped, the relay counted, JSON logs.

One server with two workers (and a relay beside it) for the module: the tests share it, so each says what it
changes. They run in the order written.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from tests.support.factories import new_room
from tests.support.postgres import free_port
from tests.support.scrape import Scrape

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "serve-key"
HEALTH = {"operation_id": "check_health", "method": "GET", "status": "200"}
POOL_PER_WORKER = 20  # APP_DB_CONNECTIONS' default 10, and SQLAlchemy's default overflow of 10 on SQLite


class Served:
    """A running serve.py and what the tests need to reach and inspect it."""

    def __init__(self, url: str, metrics_dir: Path, log_path: Path, env: dict[str, str], process: subprocess.Popen) -> None:
        self.url = url
        self.metrics_dir = metrics_dir
        self.log_path = log_path
        self.env = env
        self.process = process
        self.stale_file: Path | None = None

    def scrape(self) -> Scrape:
        """GET /metrics from whichever worker answers."""
        response = httpx.get(f"{self.url}/metrics", timeout=10)
        assert response.status_code == 200, response.text
        return Scrape(response.text)

    def log_lines(self) -> list[str]:
        """Every line serve.py and its workers wrote so far."""
        return self.log_path.read_text(encoding="utf-8").splitlines()


def eventually(read, expected, timeout: float = 5.0):
    """Return read() once it equals `expected`, or its last value after `timeout`.

    A worker counts a request just after it sent the answer, so the client can be a moment ahead.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if value == expected or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def dead_pid() -> int:
    """Return the pid of a process that has exited (and been waited for)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def start_serve(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with log_path.open("wb") as log:
        return subprocess.Popen([sys.executable, "serve.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_until_serving(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"serve.py exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/metrics", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail(f"serve.py did not answer within {timeout} s:\n{log_path.read_text()}")


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


def server_env(database: Path, port: int, **changes: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}", "APP_ADDRESS": "127.0.0.1", "APP_PORT": str(port),
           "APP_API_KEYS": API_KEY, "APP_THREADS": "8"}
    for name in ("PROMETHEUS_MULTIPROC_DIR", "APP_LOG_FORMAT", "APP_WORKERS", "APP_ACCESS_LOG"):
        env.pop(name, None)
    env.update(changes)
    return env


@pytest.fixture(scope="module")
def served(tmp_path_factory, sqlite_template):
    """serve.py with two workers, JSON logs and a multiprocess directory holding a dead process's stale counter."""
    root = tmp_path_factory.mktemp("served")
    database = root / "rooms.sqlite3"
    shutil.copy(sqlite_template, database)
    metrics_dir = root / "metrics"
    metrics_dir.mkdir()
    stale = metrics_dir / f"counter_{dead_pid()}.db"
    stale_values = MmapedDict(str(stale))
    stale_values.write_value(mmap_key("rooms_http_requests", "rooms_http_requests_total", list(HEALTH),
                                      list(HEALTH.values()), "from an earlier run"), 1000.0, 0.0)
    stale_values.close()
    port = free_port()
    env = server_env(database, port, APP_WORKERS="2", APP_LOG_FORMAT="json", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    log_path = root / "serve.log"
    process = start_serve(env, log_path)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(url, process, log_path)
        served = Served(url, metrics_dir, log_path, env, process)
        served.stale_file = stale
        yield served
    finally:
        assert stop(process) == 0, log_path.read_text()


def health_counts_by_process(metrics_dir: Path) -> dict[int, float]:
    """check_health's count in each process's own counter file."""
    counts: dict[int, float] = {}
    for path in metrics_dir.glob("counter_*.db"):
        pid = int(path.stem.rpartition("_")[2])
        for key, value, _timestamp, _position in MmapedDict.read_all_values_from_file(str(path)):
            _metric, name, labels, _help = json.loads(key)
            if name == "rooms_http_requests_total" and labels == HEALTH:
                counts[pid] = counts.get(pid, 0.0) + value
    return counts


def live_gauge_pids(metrics_dir: Path) -> set[int]:
    return {int(path.stem.rpartition("_")[2]) for path in metrics_dir.glob("gauge_livesum_*.db")}


def test_files_of_processes_that_no_longer_run_are_removed_at_start(served):
    assert not served.stale_file.exists()
    assert served.scrape().value("rooms_http_requests_total", **HEALTH) == 0


def test_every_worker_is_counted_in_one_scrape(served):
    made = 0

    def one_request(_n: int) -> int:
        return httpx.get(f"{served.url}/v1/health", timeout=10).status_code  # a new connection each time

    with ThreadPoolExecutor(max_workers=8) as threads:
        while made < 2000:
            assert set(threads.map(one_request, range(50))) == {200}
            made += 50
            if len([c for c in health_counts_by_process(served.metrics_dir).values() if c > 0]) >= 2:
                break
    assert eventually(lambda: sum(health_counts_by_process(served.metrics_dir).values()), made) == made
    by_process = health_counts_by_process(served.metrics_dir)
    assert len(by_process) == 2 and all(count > 0 for count in by_process.values()), by_process
    # Whichever worker answers, the scrape holds both workers' counts, each short of the total.
    for _ in range(4):
        assert eventually(lambda: served.scrape().value("rooms_http_requests_total", **HEALTH), made) == made
    buckets = served.scrape().value("rooms_http_request_duration_seconds_bucket", operation_id="check_health", le="+Inf")
    assert buckets == made


def test_the_pool_gauges_add_up_the_workers(served):
    metrics = served.scrape()
    assert metrics.value("rooms_db_pool_connections_max") == 2 * POOL_PER_WORKER
    assert metrics.value("rooms_db_pool_connections_in_use") == 0
    assert "pid=" not in metrics.text  # livesum: one series, not one per worker


def test_the_relay_counts_into_the_same_metrics_and_the_lag_falls_to_zero(served, rabbitmq_url):
    for _ in range(3):
        created = httpx.post(f"{served.url}/v1/rooms", json=new_room(), headers={"X-API-Key": API_KEY}, timeout=10)
        assert created.status_code == 201
    assert served.scrape().value("rooms_outbox_unpublished_events") == 3
    relay_env = {**served.env, "AMQP_URL": rabbitmq_url, "RELAY_EXCHANGE": f"rooms.events.{uuid.uuid4().hex[:8]}"}
    relay = subprocess.Popen([sys.executable, "relay.py"], cwd=ROOT, env=relay_env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            metrics = served.scrape()
            if metrics.value("rooms_relay_events_published_total", type="room.created") == 3:
                break
            assert relay.poll() is None, relay.stderr.read().decode()
            time.sleep(0.2)
        assert metrics.value("rooms_relay_events_published_total", type="room.created") == 3
        assert metrics.value("rooms_outbox_unpublished_events") == 0
    finally:
        relay.send_signal(signal.SIGTERM)
        _, relay_log = relay.communicate(timeout=30)
    assert relay.returncode == 0
    # The relay logs in the service's format too.
    assert all(json.loads(line)["logger"] for line in relay_log.decode().splitlines())
    # What the relay counted stays after it stopped.
    assert served.scrape().value("rooms_relay_events_published_total") == 3


def test_a_dead_workers_live_gauges_leave_the_sum_and_its_counts_stay(served):
    counted = served.scrape().value("rooms_http_requests_total", **HEALTH)
    workers = live_gauge_pids(served.metrics_dir)
    assert len(workers) == 2
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        now = live_gauge_pids(served.metrics_dir)
        if victim not in now and len(now) == 2 and served.scrape().value("rooms_db_pool_connections_max") == 2 * POOL_PER_WORKER:
            break
        time.sleep(0.2)
    assert victim not in live_gauge_pids(served.metrics_dir)
    assert (served.metrics_dir / f"counter_{victim}.db").exists()
    metrics = served.scrape()
    assert metrics.value("rooms_db_pool_connections_max") == 2 * POOL_PER_WORKER  # the replacement's, not the dead one's
    assert metrics.value("rooms_http_requests_total", **HEALTH) == counted


def test_every_log_line_is_a_json_object_with_the_request_fields(served):
    missing = httpx.get(f"{served.url}/v1/rooms/{uuid.uuid4()}", headers={"X-Request-ID": "json-log-1"}, timeout=10)
    assert missing.status_code == 404 and missing.json()["request_id"] == "json-log-1"
    time.sleep(0.2)
    lines = [json.loads(line) for line in served.log_lines() if line]
    for line in lines:
        assert {"time", "level", "logger", "message", "request_id", "operation_id"} <= set(line), line
        assert datetime.fromisoformat(line["time"]).utcoffset().total_seconds() == 0
    loggers = {line["logger"] for line in lines}
    assert {"serve", "uvicorn.error", "rooms.access"} <= loggers
    mine = [line for line in lines if line["request_id"] == "json-log-1"]
    access = [line for line in mine if line["logger"] == "rooms.access"]
    assert len(access) == 1
    assert (access[0]["operation_id"], access[0]["status"], access[0]["method"]) == ("get_room", 404, "GET")
    assert access[0]["duration_ms"] > 0
    problem = [line for line in mine if line["logger"] == "web.problems"]
    assert len(problem) == 1 and problem[0]["operation_id"] == "get_room" and problem[0]["message"].startswith("404")
    # uvicorn's supervisor and its workers log through the same configuration.
    messages = [line["message"] for line in lines if line["logger"] == "uvicorn.error"]
    assert any(m.startswith("Started parent process") for m in messages)
    assert any(m.startswith("Started server process") for m in messages)


def test_without_a_configured_directory_serve_makes_one_for_its_workers_and_removes_it(tmp_path, sqlite_template):
    database = tmp_path / "rooms.sqlite3"
    shutil.copy(sqlite_template, database)
    port = free_port()
    log_path = tmp_path / "serve.log"
    process = start_serve(server_env(database, port, APP_WORKERS="2"), log_path)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", process, log_path)
        httpx.get(f"http://127.0.0.1:{port}/v1/health", headers={"X-Request-ID": "text-log-1"}, timeout=10)
        counted = eventually(lambda: Scrape(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)
                             .value("rooms_http_requests_total", **HEALTH), 1)
    finally:
        assert stop(process) == 0, log_path.read_text()
    assert counted == 1
    text = log_path.read_text()
    directory = Path(text.split("metrics files in ", 1)[1].split()[0])
    assert directory.name.startswith("rooms-metrics-") and not directory.exists()
    assert "with 2 worker(s)" in text
    # The default format is text: the access line names the request id in brackets.
    access = [line for line in text.splitlines() if " rooms.access [text-log-1] " in line]
    assert len(access) == 1 and "[text-log-1] GET /v1/health 200 " in access[0]
    assert not text.lstrip().startswith("{")

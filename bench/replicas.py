"""The scale-out layout, for the soak (`--replicas N`) and the suite (tests/e2e/test_replicas.py): several
`python serve.py` instances behind nginx (deploy/nginx/rooms.conf.template) and several relays on one
PostgreSQL and one RabbitMQ, and the faults played on them: an instance killed with SIGKILL and started
again, the relay that holds the publishing turn killed and started again.
"""

from __future__ import annotations

import json
import os
import signal
import string
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(PROJECT_ROOT))

from bench.run import Server, stop_group  # noqa: E402
from providers.sql_events import RELAY_LOCK_KEY  # noqa: E402
from tests.support.nginx import ThrowawayNginx  # noqa: E402
from tests.support.postgres import free_port  # noqa: E402


class Process:
    """A child process in its own process group (a relay), logging to a file."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name, self.command, self.env, self.log_path = name, command, env, log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        """Start it, its output appended to the log."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command, env=self.env, cwd=PROJECT_ROOT, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def exited(self) -> int | None:
        """Its exit status, None while it runs (or was never started)."""
        return None if self.process is None else self.process.poll()

    def kill(self) -> None:
        """SIGKILL to the whole group, as a crash or an OOM kill would end it."""
        if self.process is not None:
            kill_group(self.process)

    def stop(self) -> None:
        """SIGTERM to the group, SIGKILL after 30 s."""
        if self.process is None:
            return
        stop_group(self.process, timeout=30)
        self.process = None


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL every process of the group `process` leads, and reap the leader."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def with_application_name(url: str, name: str) -> str:
    """The database URL with libpq's application_name set, so pg_stat_activity tells the relays apart."""
    from sqlalchemy.engine import make_url

    return make_url(url).update_query_dict({"application_name": name}).render_as_string(hide_password=False)


def relay_holding_turn(url: str, timeout: float) -> tuple[str | None, bool]:
    """Name the relay (its application_name) holding the publishing turn, the advisory lock, and whether it is
    mid-batch: it has claimed events and is publishing them. Polls for up to `timeout` s for one mid-batch,
    then as long again for any holder; (None, False) if none was seen.
    """
    import sqlalchemy as sa

    # pg_locks shows a bigint advisory key as two halves: the high 32 bits in classid, the low in objid.
    # While a relay publishes a claimed batch its session is idle in the transaction of the claim's SELECT ...
    # FOR UPDATE; a relay that found nothing to claim rolls back at once.
    query = sa.text(
        "SELECT a.application_name, a.state = 'idle in transaction' AND a.query LIKE '%FOR UPDATE%' "
        "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :high AND l.objid = :low AND l.objsubid = 1")
    key = {"high": RELAY_LOCK_KEY >> 32, "low": RELAY_LOCK_KEY & 0xFFFFFFFF}
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            for want_mid_batch in (True, False):
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    row = connection.execute(query, key).first()
                    connection.rollback()  # a fresh snapshot of pg_locks each time
                    if row is not None and (row[1] or not want_mid_batch):
                        return row[0], bool(row[1])
                    time.sleep(0.002)
    finally:
        engine.dispose()
    return None, False


class Fleet:
    """`instances` serve.py processes (each with `workers` workers) behind one nginx, and `relays` relays.

    Every instance logs JSON (APP_LOG_FORMAT=json), so its access log can be matched with nginx's by request
    id; each start of an instance writes a new log file (service-a-1.log, service-a-2.log, ...).
    """

    def __init__(self, *, instances: int, workers: int, relays: int, database_url: str, amqp_url: str,
                 exchange: str, api_key: str, env: dict[str, str], log_dir: Path, nginx_rate: int = 50,
                 nginx_burst: int = 100, nginx_workers: int = 1) -> None:
        self.log_dir = log_dir
        base = {k: v for k, v in env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        self.instances = []
        for letter in string.ascii_lowercase[:instances]:
            port = free_port()
            self.instances.append(Server(
                f"service-{letter}", [sys.executable, "serve.py"],
                base | {"DATABASE_URL": database_url, "APP_API_KEYS": api_key, "APP_PORT": str(port),
                        "APP_ADDRESS": "127.0.0.1", "APP_WORKERS": str(workers), "APP_LOG_FORMAT": "json",
                        # One per instance, in the log folder: serve.py removes a temporary one only when it
                        # stops normally, and a killed instance would leave it behind.
                        "PROMETHEUS_MULTIPROC_DIR": str(log_dir / f"metrics-service-{letter}")},
                port, log_dir))
        self.relays = [
            Process(f"relay-{number}", [sys.executable, "relay.py"],
                    base | {"DATABASE_URL": with_application_name(database_url, f"relay-{number}"),
                            "AMQP_URL": amqp_url, "RELAY_EXCHANGE": exchange, "APP_LOG_FORMAT": "json"},
                    log_dir / f"relay-{number}.log")
            for number in range(1, relays + 1)
        ]
        self.nginx = ThrowawayNginx([self.upstream(i) for i in range(instances)], rate_per_second=nginx_rate,
                                    burst=nginx_burst, worker_processes=nginx_workers)
        self.killed: set[int] = set()  # pids this fleet killed on purpose

    def upstream(self, index: int) -> str:
        """The address nginx knows instance `index` by (it appears so in nginx's log)."""
        return f"127.0.0.1:{self.instances[index].port}"

    @property
    def port(self) -> int:
        """nginx's port: where clients send their requests."""
        return self.nginx.port

    def start(self) -> None:
        """Start the instances (together) until each is ready, then nginx and the relays."""
        with ThreadPoolExecutor(len(self.instances)) as pool:
            list(pool.map(lambda server: server.start("/v1/ready"), self.instances))
        self.nginx.start()
        for relay in self.relays:
            relay.start()

    def kill_instance(self, index: int) -> None:
        """SIGKILL the instance's whole process group: its server and every worker, at once."""
        server = self.instances[index]
        self.killed.add(server.process.pid)
        kill_group(server.process)

    def restart_instance(self, index: int) -> None:
        """Start the instance again on its port and wait until it is ready."""
        self.instances[index].start("/v1/ready")

    def kill_relay(self, name: str) -> None:
        """SIGKILL the relay called `name`."""
        relay = next(relay for relay in self.relays if relay.name == name)
        self.killed.add(relay.process.pid)
        relay.kill()

    def restart_relay(self, name: str) -> None:
        """Start the relay called `name` again."""
        next(relay for relay in self.relays if relay.name == name).start()

    def unexpected_exits(self) -> list[str]:
        """Every process of the fleet that ended without being killed on purpose."""
        exits = []
        for server in self.instances:
            if server.process is not None and server.process.poll() is not None and server.process.pid not in self.killed:
                exits.append(f"{server.name} exited with {server.process.returncode}")
        for relay in self.relays:
            if relay.exited() is not None and relay.process.pid not in self.killed:
                exits.append(f"{relay.name} exited with {relay.exited()}")
        if self.nginx.process is not None and self.nginx.process.poll() is not None:
            exits.append(f"nginx exited with {self.nginx.process.returncode}")
        return exits

    def served_by(self) -> dict[str, list[str]]:
        """Request id -> the instances whose access log has it (every start's log, also a killed one's)."""
        seen: dict[str, list[str]] = {}
        for server in self.instances:
            for log in sorted(self.log_dir.glob(f"{server.name}-*.log")):
                for line in log.read_text(errors="replace").splitlines():
                    if not line.startswith("{"):
                        continue
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut short by SIGKILL
                    if record.get("logger") == "rooms.access" and record.get("request_id"):
                        seen.setdefault(record["request_id"], []).append(server.name)
        return seen

    def relay_log_text(self) -> str:
        """Every relay's log, one after the other."""
        return "".join(relay.log_path.read_text(errors="replace") for relay in self.relays if relay.log_path.exists())

    def stop(self) -> None:
        """Stop the relays, nginx and the instances, keeping nginx's logs in the log folder."""
        for relay in self.relays:
            relay.stop()
        for name in ("access.log", "error.log"):
            source = self.nginx.root / name
            if source.exists():
                (self.log_dir / f"nginx-{name}").write_bytes(source.read_bytes())
        self.nginx.stop()
        for server in self.instances:
            server.stop()

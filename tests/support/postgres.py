"""A throwaway PostgreSQL cluster for the test suite, started from the machine's binaries."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

UNPRIVILEGED_USER = "nobody"


def run_as(user: str | None) -> dict:
    """Return subprocess.Popen's arguments that run a child as `user` (none: as this process)."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def find_bin_dir() -> Path:
    """Return the folder holding initdb/postgres: $PG_BIN, pg_config --bindir, or the newest Debian install."""
    candidates: list[str] = []
    if os.environ.get("PG_BIN"):
        candidates.append(os.environ["PG_BIN"])
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        if out:
            candidates.append(out)
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "postgres").exists():
            return Path(candidate)
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, postgres) were not found; `make test` installs them with "
        "apt-get (package postgresql) when run as root, or set PG_BIN."
    )


def free_port() -> int:
    """Return a TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThrowawayPostgres:
    """initdb + postgres on loopback in a temporary folder; as `nobody` when running as root."""

    def __init__(self) -> None:
        self.bin_dir = find_bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="rooms-pg-"))
        self.data_dir = self.root / "data"
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self._user = UNPRIVILEGED_USER if os.geteuid() == 0 else None

    def _run_as(self) -> dict:
        return run_as(self._user)

    def start(self) -> str:
        """Create and start the cluster; return a superuser URL to its `postgres` database."""
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chmod(self.root, 0o755)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
             "-E", "UTF8", "--no-sync", "--locale=C.UTF-8"],
            check=True, capture_output=True, env=self._env(), cwd=self.root, **self._run_as(),
        )
        self.start_server()
        return self.url

    @property
    def url(self) -> str:
        """Superuser URL of the cluster's `postgres` database."""
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def _env(self) -> dict:
        return {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": str(self.root)}

    def start_server(self) -> None:
        """Start the server on the existing cluster (again, after stop_server) and wait until it accepts connections."""
        log = open(self.root / "postgres.log", "ab")
        self.process = subprocess.Popen(
            [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
             "-k", str(self.root), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
             "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=300"],
            stdout=log, stderr=subprocess.STDOUT, env=self._env(), cwd=self.root, **self._run_as(),
        )
        log.close()
        self._wait_until_ready()

    def _wait_until_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"postgres exited early:\n{(self.root / 'postgres.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
                ready = subprocess.run(
                    [str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"],
                    capture_output=True, check=False,
                )
                if ready.returncode == 0:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"postgres did not become ready:\n{(self.root / 'postgres.log').read_text()}")

    def stop_server(self) -> None:
        """Stop the server with a fast shutdown (clients are disconnected, open transactions rolled back); keep the cluster."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def stop(self) -> None:
        """Stop the server and delete the cluster."""
        self.stop_server()
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def scratch_database(admin_url: str, name: str) -> Iterator[str]:
    """Yield the URL of a new, empty database `name` on the cluster of `admin_url`; drop it afterwards."""
    import sqlalchemy as sa

    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()

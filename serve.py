"""Production entry point: apply migrations, then serve `app:app` with uvicorn worker processes."""

from __future__ import annotations

import glob
import logging
import logging.config
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import MutableMapping
from pathlib import Path

import uvicorn

from observability.logs import logging_config
from providers.database import migrate
from settings import ConfigurationError, Settings
from web.server_protocol import BoundedHttpToolsProtocol

logger = logging.getLogger("serve")

# Not imported from observability.metrics: importing prometheus_client before PROMETHEUS_MULTIPROC_DIR is set
# would make a single-worker server (which runs in this process) count for itself alone.
MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
REAP_INTERVAL_SECONDS = 1.0


def main() -> int:
    """Read the settings, migrate the database and serve until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
    except ConfigurationError as error:
        logger.error("%s", error)
        return 2
    logging.config.dictConfig(logging_config(settings.log_format))
    metrics_dir, created = prepare_metrics_dir(os.environ, settings.workers)
    reaper = DeadProcessReaper(metrics_dir) if metrics_dir is not None and settings.workers > 1 else None
    try:
        migrate(settings.database_url, configure_logging=False)
        if not settings.api_keys:
            logger.warning("APP_API_KEYS is empty: every write (POST, PATCH, DELETE) will be refused with 401.")
        logger.info(
            "Serving on http://%s:%s/ (Swagger UI at /ui/, metrics at /metrics) with %d worker(s); metrics files in %s",
            settings.address, settings.port, settings.workers, metrics_dir or "none (one process counts for itself)",
        )
        if reaper is not None:
            reaper.start()
        signal.signal(signal.SIGTERM, _exit_after_graceful_shutdown)
        uvicorn.run(
            "app:app",
            host=settings.address,
            port=settings.port,
            workers=settings.workers,
            loop="uvloop",
            # httptools with the request head bounded (APP_MAX_HEADER_BYTES, through uvicorn's own setting for h11)
            # and problem documents for requests it cannot parse.
            http=BoundedHttpToolsProtocol,
            h11_max_incomplete_event_size=settings.max_header_bytes,
            # The service speaks no WebSocket: upgrade requests reach the app as plain HTTP and get a 400
            # problem (web.middleware.NoProtocolUpgrades) rather than a handshake the app cannot finish.
            ws="none",
            proxy_headers=True,
            access_log=False,  # observability.telemetry writes the access log, with the request id and operationId
            log_config=logging_config(settings.log_format),
            # On SIGTERM: stop accepting, finish the requests in flight (long polls answer at once), then
            # the app's lifespan closes the pool; requests still running after this long are cancelled.
            timeout_graceful_shutdown=settings.graceful_shutdown_seconds,
        )
    finally:
        if reaper is not None:
            reaper.stop()
        if created:
            # A supervisor (workers > 1) returns here after SIGTERM; a lone worker gets no directory of its own.
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def prepare_metrics_dir(environ: MutableMapping[str, str], workers: int) -> tuple[Path | None, bool]:
    """Make PROMETHEUS_MULTIPROC_DIR ready for the workers; return it (None if not needed) and whether it was made now.

    Set (to share it with the relay), it is created if missing and cleared of the files of processes that
    no longer run: files of an earlier run would otherwise be added to this one's, while a running relay's
    stay. Unset, several workers get a new temporary directory, removed when the server stops, and a
    single worker none: its own registry holds everything it counts.
    """
    configured = environ.get(MULTIPROC_DIR_VARIABLE)
    if not configured:
        # Set but empty counts as unset: prometheus_client would take it for a directory, the current one.
        environ.pop(MULTIPROC_DIR_VARIABLE, None)
        if workers == 1:
            return None, False
        path = Path(tempfile.mkdtemp(prefix="rooms-metrics-"))
        environ[MULTIPROC_DIR_VARIABLE] = str(path)
        return path, True
    path = Path(configured)
    path.mkdir(parents=True, exist_ok=True)
    for file in path.glob("*.db"):
        pid = _pid_of(file.name)
        if pid is not None and not _alive(pid):
            file.unlink(missing_ok=True)
    return path, False


class DeadProcessReaper:
    """Mark dead processes dead for prometheus_client, so their live gauges leave the sums.

    uvicorn's supervisor replaces a worker that dies (and adds and retires workers on SIGTTIN, SIGTTOU
    and SIGHUP) without a hook to call, so this thread looks for files of live gauges whose process is
    gone. Counter and histogram files stay: what a dead worker counted still counts.
    """

    def __init__(self, path: Path, interval: float = REAP_INTERVAL_SECONDS) -> None:
        self._path = path
        self._interval = interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-reaper", daemon=True)

    def start(self) -> None:
        """Start looking."""
        self._thread.start()

    def stop(self) -> None:
        """Stop looking and wait for the thread."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def reap(self) -> list[int]:
        """Mark every process with live-gauge files that no longer runs dead; return their pids."""
        from prometheus_client import multiprocess  # here: PROMETHEUS_MULTIPROC_DIR is set by now

        dead = sorted({
            pid for name in glob.glob(str(self._path / "gauge_live*_*.db"))
            if (pid := _pid_of(os.path.basename(name))) is not None and not _alive(pid)
        })
        for pid in dead:
            multiprocess.mark_process_dead(pid, str(self._path))
            logger.info("Process %d is gone: its live gauges left the metrics", pid)
        return dead

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                self.reap()
            except OSError:
                logger.warning("Could not clear the metrics of dead processes in %s", self._path, exc_info=True)


def _pid_of(file_name: str) -> int | None:
    # prometheus_client names its files <type>_<pid>.db and gauge_<mode>_<pid>.db.
    stem = file_name.removesuffix(".db")
    _, _, pid = stem.rpartition("_")
    return int(pid) if pid.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    try:
        # A dead child its parent has not waited for yet is still listed, as a zombie.
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _exit_after_graceful_shutdown(_number: int, _frame) -> None:
    # While it serves, uvicorn handles SIGTERM itself (a graceful shutdown). Afterwards it raises the
    # signal again for the handler it found, and with the default one a process that stopped cleanly
    # would end "killed by SIGTERM". This one makes it a normal exit, status 0. (With several workers
    # uvicorn's supervisor handles the signal in this process and exits normally anyway.)
    raise SystemExit(0)


if __name__ == "__main__":
    sys.exit(main())

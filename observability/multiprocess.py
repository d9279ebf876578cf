"""Metrics of several processes in one answer: PROMETHEUS_MULTIPROC_DIR set up before the workers start, dead ones reaped.

Kept apart from observability.metrics on purpose: importing prometheus_client before the variable is set
would make a single-worker server (which runs in serve.py's own process) count for itself alone.
"""

from __future__ import annotations

import glob
import logging
import os
import tempfile
import threading
from collections.abc import MutableMapping
from pathlib import Path

logger = logging.getLogger("serve")

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
REAP_INTERVAL_SECONDS = 1.0


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

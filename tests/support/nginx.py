"""A throwaway nginx for the suite and the soak: deploy/nginx/rooms.conf.template, filled in, run unprivileged."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.postgres import UNPRIVILEGED_USER, free_port, run_as

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = PROJECT_ROOT / "deploy" / "nginx" / "rooms.conf.template"
NGINX = Path("/usr/sbin/nginx")
UPSTREAM_PARAMETERS = "max_fails=1 fail_timeout=2s"
_PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


def find_nginx() -> Path:
    """Return the nginx binary, or explain how to get it."""
    if NGINX.exists():
        return NGINX
    raise RuntimeError(f"nginx was not found ({NGINX}); `make test` installs it with apt-get (package nginx) when "
                       "run as root, or run `sudo scripts/ensure-nginx.sh`.")


def upstream_servers(addresses: list[str]) -> str:
    """The ROOMS_UPSTREAM_SERVERS value for these HOST:PORT replicas."""
    return "\n    ".join(f"server {address} {UPSTREAM_PARAMETERS};" for address in addresses)


def render_config(template: str, values: dict[str, str]) -> str:
    """Fill every ${NAME} of the template; a placeholder without a value is an error, not an empty string."""
    missing = sorted({name for name in _PLACEHOLDER.findall(template) if name not in values})
    if missing:
        raise KeyError(f"no value for {', '.join(missing)} in {TEMPLATE.name}")
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


class ThrowawayNginx:
    """nginx on a free loopback port in a temporary folder, in front of `upstreams`; as `nobody` when root.

    The main context (one worker, temp paths in the folder) wraps the repository's template, which is
    included unchanged but for its placeholders. Its JSON access log is `access_log`.
    """

    def __init__(self, upstreams: list[str], *, max_body_bytes: int = 1024 * 1024, rate_per_second: int = 50,
                 burst: int = 100, worker_processes: int = 1) -> None:
        self.binary = find_nginx()
        self.root = Path(tempfile.mkdtemp(prefix="rooms-nginx-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.access_log = self.root / "access.log"
        self.error_log = self.root / "error.log"
        self.values = {
            "NGINX_LISTEN": f"127.0.0.1:{self.port}",
            "ROOMS_UPSTREAM_SERVERS": upstream_servers(upstreams),
            "APP_MAX_BODY_BYTES": str(max_body_bytes),
            "NGINX_RATE_PER_SECOND": str(rate_per_second),
            "NGINX_RATE_BURST": str(burst),
            "NGINX_ACCESS_LOG": str(self.access_log),
        }
        self.worker_processes = worker_processes
        self.process: subprocess.Popen | None = None
        self._user = UNPRIVILEGED_USER if os.geteuid() == 0 else None

    def _run_as(self) -> dict:
        return run_as(self._user)

    def _write_config(self) -> Path:
        (self.root / "rooms.conf").write_text(render_config(TEMPLATE.read_text(), self.values))
        temp = "\n".join(f"    {kind}_temp_path {self.root / 'temp' / kind};"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        config = self.root / "nginx.conf"
        config.write_text(
            f"worker_processes {self.worker_processes};\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            f"{temp}\n"
            f"    include {self.root / 'rooms.conf'};\n"
            "}\n"
        )
        (self.root / "temp").mkdir(exist_ok=True)
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            for path in (self.root, self.root / "temp"):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        return config

    def _command(self, config: Path, *extra: str) -> list[str]:
        return [str(self.binary), "-p", str(self.root), "-c", str(config), *extra,
                "-g", f"daemon off; pid {self.root / 'nginx.pid'}; error_log {self.error_log} info;"]

    def start(self) -> str:
        """Check the configuration with `nginx -t`, start nginx and wait until it accepts connections; return its URL."""
        config = self._write_config()
        checked = subprocess.run(self._command(config, "-t", "-q"), capture_output=True, text=True, check=False,
                                 **self._run_as())
        if checked.returncode != 0:
            raise RuntimeError(f"nginx -t refused the configuration:\n{checked.stderr}")
        with open(self.root / "stderr.log", "wb") as output:
            self.process = subprocess.Popen(self._command(config), stdin=subprocess.DEVNULL, stdout=output,
                                            stderr=subprocess.STDOUT, start_new_session=True, **self._run_as())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited early ({self.process.returncode}):\n"
                                   f"{(self.root / 'stderr.log').read_text(errors='replace')}\n{self.error_log_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self.url
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not listen on {self.port} within 20 s:\n{self.error_log_text()}")

    def error_log_text(self) -> str:
        """nginx's error log so far."""
        return self.error_log.read_text(errors="replace") if self.error_log.exists() else ""

    def access_entries(self) -> list[dict]:
        """Every line of the JSON access log so far, parsed (nginx writes each line when the request ends)."""
        if not self.access_log.exists():
            return []
        return [json.loads(line) for line in self.access_log.read_text().splitlines() if line.strip()]

    def stop(self) -> None:
        """Quit nginx (SIGQUIT: finish requests in flight, at most 10 s) and delete the folder."""
        try:
            if self.process is not None and self.process.poll() is None:
                self.process.send_signal(signal.SIGQUIT)
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait()
        finally:
            self.process = None
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> ThrowawayNginx:
        try:
            self.start()
        except BaseException:
            self.stop()  # a refused configuration must not leave its folder behind
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

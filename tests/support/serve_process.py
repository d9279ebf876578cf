"""`python serve.py` as a subprocess on a free loopback port: the production entry point, for tests that need it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import API_KEY
from tests.support.postgres import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class ServeProcess:
    """serve.py with the given database and settings, its output in `log`."""

    def __init__(self, database_url: str, log: Path, **settings: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.workers = int(settings.get("APP_WORKERS", "1"))
        self.environment = {
            **os.environ, "DATABASE_URL": database_url, "APP_ADDRESS": "127.0.0.1", "APP_PORT": str(self.port),
            "APP_API_KEYS": API_KEY, "APP_WORKERS": str(self.workers), **settings,
        }
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> ServeProcess:
        with self.log.open("wb") as output:
            self.process = subprocess.Popen([sys.executable, "serve.py"], cwd=PROJECT_ROOT, env=self.environment,
                                            stdout=output, stderr=subprocess.STDOUT)
        self._wait_until_serving()
        return self

    def _wait_until_serving(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"serve.py exited early:\n{self.output()}"
            # Every worker has run its lifespan's start-up (uvicorn logs it once per worker).
            if self.output().count("Application startup complete") >= self.workers:
                try:
                    if httpx.get(f"{self.url}/v1/ready", timeout=2).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
            time.sleep(0.1)
        raise AssertionError(f"serve.py did not become ready:\n{self.output()}")

    def output(self) -> str:
        """Everything serve.py has written so far."""
        return self.log.read_text()

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

"""Running the Node side of the tests: the scripts of clients/typescript under tsx, and tsc."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

NODE_PROJECT = Path(__file__).resolve().parents[2] / "clients" / "typescript"
GENERATED = NODE_PROJECT / "generated"
BIN = NODE_PROJECT / "node_modules" / ".bin"
STAMP = NODE_PROJECT / "node_modules" / ".package-lock.sha256"
MIN_NODE_MAJOR = 20


def require_node() -> None:
    """Fail (never skip) with what to do when Node.js, npm or the project's Node packages are missing."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.fail(f"`{tool}` is not on PATH: these tests need Node.js >= {MIN_NODE_MAJOR} with npm "
                        "(for example `apt-get install nodejs npm`), then `make test` installs the packages.",
                        pytrace=False)
    version = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < MIN_NODE_MAJOR:
        pytest.fail(f"Node.js {version} is too old: these tests need Node.js >= {MIN_NODE_MAJOR}.", pytrace=False)
    lock = hashlib.sha256((NODE_PROJECT / "package-lock.json").read_bytes()).hexdigest()
    if not STAMP.is_file() or STAMP.read_text().strip() != lock:
        pytest.fail("The Node packages of clients/typescript are missing or older than package-lock.json: "
                    "run `make node-deps` (npm ci), which `make test` does first.", pytrace=False)


def node_env(**variables: str) -> dict[str, str]:
    """The environment for a Node process: ours, without colours, plus the given variables."""
    return {**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0", **variables}


def run(args: list[str], *, timeout: float = 60, **variables: str) -> subprocess.CompletedProcess[str]:
    """Run a command of the Node project (in its folder) to the end."""
    try:
        return subprocess.run(args, cwd=NODE_PROJECT, env=node_env(**variables), capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"{' '.join(args)} did not finish in {timeout} s:\n{expired.stdout}\n{expired.stderr}")


def tsc(project: str) -> subprocess.CompletedProcess[str]:
    """Type-check a TypeScript project (a tsconfig path relative to clients/typescript) without emitting."""
    return run([str(BIN / "tsc"), "--noEmit", "--pretty", "false", "-p", project])


def summary_of(stdout: str) -> dict[str, Any]:
    """The JSON summary a script prints as its last line of stdout."""
    lines = stdout.strip().splitlines()
    assert lines, "the script printed nothing"
    return json.loads(lines[-1])


def run_script(script: str, *, timeout: float = 60, **variables: str) -> tuple[int, dict[str, Any], str]:
    """Run a TypeScript script with tsx; return its exit code, its summary and its stderr."""
    result = run([str(BIN / "tsx"), script], timeout=timeout, **variables)
    try:
        summary = summary_of(result.stdout)
    except (AssertionError, json.JSONDecodeError):
        pytest.fail(f"{script} printed no summary (exit code {result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.returncode, summary, result.stderr


class RunningScript:
    """A TypeScript script running under tsx in the background, read line by line."""

    def __init__(self, script: str, **variables: str) -> None:
        self.script = script
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen([str(BIN / "tsx"), script], cwd=NODE_PROJECT, env=node_env(**variables),
                                        stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def stderr(self) -> str:
        """What the script wrote to stderr so far."""
        self._stderr.seek(0)
        return self._stderr.read()

    def next_json_line(self, timeout: float) -> dict[str, Any]:
        """The next line of stdout, parsed as JSON; fails if none comes in time."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"{self.script} wrote nothing in {timeout} s:\n{self.stderr()}")
        if line is None:
            pytest.fail(f"{self.script} ended (exit code {self.process.wait()}) before writing a line:\n{self.stderr()}")
        return json.loads(line)

    def finish(self, timeout: float) -> tuple[int, dict[str, Any]]:
        """Wait for the script to end; return its exit code and the summary (its last line)."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.script} did not finish in {timeout} s:\n{self.stderr()}")
        self._reader.join(timeout=5)
        lines = []
        while not self._lines.empty():
            line = self._lines.get()
            if line is not None:
                lines.append(line)
        if not lines:
            pytest.fail(f"{self.script} printed no summary (exit code {code}):\n{self.stderr()}")
        return code, json.loads(lines[-1])

    def stop(self) -> None:
        """End the script if it still runs, and release its pipes."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()

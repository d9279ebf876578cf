"""Generate the Python client (openapi-python-client) from a running service's /openapi.json.

    python scripts/generate_python_client.py [--url http://localhost:9090/openapi.json] [--output clients/python]

Without --url it serves the app itself (serve.py, one worker, on a free loopback port, on a throwaway SQLite
file), generates from that server's /openapi.json and stops it. The result is an installable project
(`pip install clients/python`) holding the package `rooms_service_client`.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "rooms_service_client"
DEFAULT_OUTPUT = ROOT / "clients" / "python"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def served_spec_url(timeout: float = 30.0) -> Iterator[str]:
    """Serve the app on loopback with a throwaway SQLite database and yield its /openapi.json URL."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="rooms-clients-") as tmp:
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{tmp}/rooms.sqlite3",
            "APP_ADDRESS": "127.0.0.1",
            "APP_PORT": str(port),
            "APP_WORKERS": "1",
            # Generation only reads the spec; a random key keeps the throwaway server closed to writes.
            "APP_API_KEYS": os.urandom(16).hex(),
        }
        log = Path(tmp) / "serve.log"
        with log.open("wb") as out:
            server = subprocess.Popen([sys.executable, "serve.py"], cwd=ROOT, env=env, stdout=out, stderr=out)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + timeout
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/v1/health", timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the service did not start:\n{log.read_text(errors='replace')}")
                time.sleep(0.1)
            yield f"{base}/openapi.json"
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def generate(spec_url: str, output: Path, verbose: bool = False) -> Path:
    """Generate the client project from spec_url into output (replacing it) and return the package's folder."""
    bin_dir = Path(sys.executable).parent
    # The generator runs `ruff` from PATH as a post-hook; put this interpreter's (the venv's) first.
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [
        str(bin_dir / "openapi-python-client"), "generate",
        "--url", spec_url,
        "--meta", "setup",
        "--output-path", str(output),
        "--overwrite",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    if verbose:
        # Its warnings matter to a reader (e.g. the application/avro bodies it skips), but each comes with a
        # dump of the whole JSON it skipped: keep the sentences, drop the dumps.
        for line in (result.stdout + result.stderr).splitlines():
            if line.strip() and not line.startswith((" ", "{", "}", "[", "]")):
                print(line)
    if result.returncode != 0 or not (output / PACKAGE / "__init__.py").is_file():
        raise RuntimeError(
            f"openapi-python-client failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return output / PACKAGE


def main(argv: list[str] | None = None) -> int:
    """Generate from --url, or from a server started for the purpose."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="the spec URL, e.g. http://localhost:9090/openapi.json (default: serve one)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="project folder (default: clients/python)")
    args = parser.parse_args(argv)
    if args.url:
        package = generate(args.url, args.output, verbose=True)
    else:
        with served_spec_url() as url:
            print(f"Serving the spec at {url} for the generator")
            package = generate(url, args.output, verbose=True)
    print(f"Generated {package} (install with: pip install {args.output})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

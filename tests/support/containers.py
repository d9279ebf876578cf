"""Container images for the suite, built with podman: the service's from this repository, the others from Debian.

No image registry is reachable from the project's machines, so the Dockerfile's base and compose.yaml's
PostgreSQL and RabbitMQ are stand-ins built with mmdebstrap (deploy/test-images/). Each image is tagged with a
hash of its inputs and built only when no image has that tag, so a second run builds nothing (docs/deploy.md).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
import tomllib
from pathlib import Path

import httpx
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TEST_IMAGES = PROJECT_ROOT / "deploy" / "test-images"
CONTAINERS_CONF = TEST_IMAGES / "containers.conf"
SERVICE_REPOSITORY = "localhost/rooms-service"
BUILD_TIMEOUT_SECONDS = 900


def podman_environment() -> dict[str, str]:
    """The environment for podman and podman-compose: the project's containers.conf (runc, ulimits)."""
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run podman with the project's settings; raise with its output when `check` and it fails."""
    if shutil.which("podman") is None:
        raise RuntimeError("podman is missing: `make test` installs it (scripts/ensure-podman.sh, as root).")
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout,
                            env=podman_environment(), check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


def image_exists(reference: str) -> bool:
    """Whether podman has an image with this name and tag."""
    return podman("image", "exists", reference, check=False).returncode == 0


def _untag_others(repository: str, keep: str) -> None:
    # Earlier inputs' images: untagged, so they do not pile up; their layers stay as build cache until pruned.
    listed = podman("images", "--format", "{{.Repository}}:{{.Tag}}", repository).stdout.split()
    for reference in listed:
        if reference != keep and reference.split(":")[-1].startswith("test-"):
            podman("untag", reference, reference, check=False)


def _digest(*parts: bytes) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(hashlib.sha256(part).digest())
    return hasher.hexdigest()[:16]


def debian_image(name: str) -> str:
    """Return the local stand-in image `name` (python-base, postgres, rabbitmq), building it if its inputs changed."""
    inputs = [TEST_IMAGES / "build.sh", *sorted(TEST_IMAGES.glob(f"{name}-*.sh"))]
    repository = f"localhost/rooms-test-{name}"
    reference = f"{repository}:test-{_digest(name.encode(), *(path.read_bytes() for path in inputs))}"
    if not image_exists(reference):
        if shutil.which("mmdebstrap") is None:
            raise RuntimeError("mmdebstrap is missing: `make test` installs it (scripts/ensure-podman.sh, as root).")
        build = subprocess.run(["bash", str(TEST_IMAGES / "build.sh"), name, reference], capture_output=True,
                               text=True, timeout=BUILD_TIMEOUT_SECONDS, env=podman_environment(), check=False)
        if build.returncode != 0:
            raise AssertionError(f"building {reference} failed:\n{build.stdout[-3000:]}{build.stderr[-5000:]}")
        _untag_others(repository, reference)
    return reference


def _glob_regex(pattern: str) -> re.Pattern[str]:
    # .dockerignore's globs: `*` and `?` stay within one path segment, `**` spans any number of them.
    regex = ""
    for token in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
        regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(token, re.escape(token))
    return re.compile(regex)


def _ignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), _glob_regex(line.lstrip("!").strip("/"))))
    return rules


def _ignored(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    # The last matching line decides; a line that matches a folder also covers everything inside it.
    parts = relative.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    ignored = False
    for negated, rule in rules:
        if any(rule.fullmatch(prefix) for prefix in prefixes):
            ignored = not negated
    return ignored


def build_context_digest() -> str:
    """A hash of the files `podman build .` sends (the repository less .dockerignore's paths)."""
    rules = _ignore_rules()
    hasher = hashlib.sha256()
    for folder, subfolders, files in os.walk(PROJECT_ROOT):
        relative_folder = os.path.relpath(folder, PROJECT_ROOT)
        relative_folder = "" if relative_folder == "." else relative_folder + "/"
        # Prune ignored folders, except those a `!` line brings something back from.
        subfolders[:] = sorted(
            d for d in subfolders
            if not _ignored(relative_folder + d, rules)
            or any(negated and rule.pattern.startswith(re.escape(relative_folder + d + "/")) for negated, rule in rules)
        )
        for file in sorted(files):
            relative = relative_folder + file
            if not _ignored(relative, rules):
                path = Path(folder) / file
                hasher.update(relative.encode() + b"\0" + oct(path.stat().st_mode & 0o111).encode() + b"\0")
                hasher.update(hashlib.sha256(path.read_bytes()).digest())
    return hasher.hexdigest()


def project_version() -> str:
    """The version in pyproject.toml, which the image's OCI label carries."""
    return tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["version"]


def git_revision() -> str:
    """The commit being tested, which the image's OCI label carries ('unknown' outside a git checkout)."""
    result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def service_image(base_image: str) -> str:
    """Return the service's image built from the Dockerfile on `base_image`, building it if its inputs changed."""
    version, revision = project_version(), git_revision()
    base_id = podman("image", "inspect", "--format", "{{.Id}}", base_image).stdout.strip()
    # The Dockerfile and .dockerignore are not in the context they describe, but they change the image too.
    key = _digest(build_context_digest().encode(), (PROJECT_ROOT / "Dockerfile").read_bytes(),
                  (PROJECT_ROOT / ".dockerignore").read_bytes(), base_id.encode(), version.encode(), revision.encode())
    reference = f"{SERVICE_REPOSITORY}:test-{key}"
    if not image_exists(reference):
        podman(
            "build", "--build-arg", f"BASE_IMAGE={base_image}", "--build-arg", f"VERSION={version}",
            "--build-arg", f"REVISION={revision}",
            # A bare base image lacks the certificate authorities through which this machine reaches PyPI.
            "--volume", "/etc/ssl/certs:/etc/ssl/certs:ro",
            "--tag", reference, str(PROJECT_ROOT),
            timeout=BUILD_TIMEOUT_SECONDS,
        )
        _untag_others(SERVICE_REPOSITORY, reference)
    return reference


def wait_until_ready(url: str, timeout: float, alive=lambda: True, explain=lambda: "") -> None:
    """Wait until GET `url` answers 200; fail with `explain()` if `alive()` turns false or time runs out."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not alive():
            raise AssertionError(f"stopped before {url} answered 200:\n{explain()}")
        try:
            response = httpx.get(url, timeout=3)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.TransportError as error:
            last = repr(error)
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer 200 within {timeout:.0f} s (last: {last}):\n{explain()}")


@pytest.fixture(scope="session")
def python_base_image() -> str:
    """The local stand-in for python:3.11-slim-bookworm."""
    return debian_image("python-base")


@pytest.fixture(scope="session")
def rooms_image(python_base_image: str) -> str:
    """The service's image, built from the Dockerfile on the local base."""
    return service_image(python_base_image)


@pytest.fixture(scope="session")
def postgres_image() -> str:
    """The local stand-in for the official postgres image."""
    return debian_image("postgres")


@pytest.fixture(scope="session")
def rabbitmq_image() -> str:
    """The local stand-in for the official rabbitmq image."""
    return debian_image("rabbitmq")

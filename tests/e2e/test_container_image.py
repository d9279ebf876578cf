"""The image from the Dockerfile: migrate, serve and relay against the suite's PostgreSQL and RabbitMQ.

Every container runs with a read-only root filesystem on the host's network (the suite's PostgreSQL and
RabbitMQ listen on 127.0.0.1), as podman runs it here (docs/deploy.md).
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import orjson
import pytest
import sqlalchemy as sa

from providers.database import migration_heads
from tests.conftest import API_KEY
from tests.integration.test_relay import decode
from tests.support.containers import PROJECT_ROOT, git_revision, podman, project_version, wait_until_ready
from tests.support.factories import new_room
from tests.support.postgres import free_port, scratch_database
from tests.support.rabbitmq import connect, declare_consumer_queue, drain

APP_USER_ID = "10001"
GRACEFUL_SECONDS = 20  # the image's default APP_GRACEFUL_SHUTDOWN_SECONDS
LONG_POLL_SECONDS = 25


@pytest.fixture
def containers() -> Iterator[list[str]]:
    """Names of the containers a test starts; each is removed afterwards, whatever happened."""
    names: list[str] = []
    yield names
    for name in names:
        podman("rm", "--force", "--time", "0", name, check=False)


def start(containers: list[str], image: str, *command: str, environment: dict[str, str], options: tuple = ()) -> str:
    """Start a detached container from `image` on the host's network with a read-only root filesystem."""
    name = f"rooms-test-{uuid.uuid4().hex[:10]}"
    containers.append(name)
    flags = [f"--env={key}={value}" for key, value in environment.items()]
    podman("run", "--detach", "--name", name, "--network", "host", "--read-only", *options, *flags, image, *command)
    return name


def running(name: str) -> bool:
    """Whether the container is still running."""
    return podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip() == "true"


def logs(name: str) -> str:
    """What the container wrote so far."""
    result = podman("logs", name, check=False)
    return result.stdout + result.stderr


def exit_code(name: str) -> int:
    """The exit status of a stopped container."""
    return int(podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout)


@pytest.fixture
def image_database(postgres_admin_url: str) -> Iterator[str]:
    """An empty database of its own on the suite's PostgreSQL cluster."""
    with scratch_database(postgres_admin_url, "rooms_image") as url:
        yield url


def test_the_image_migrates_serves_and_relays_as_a_non_root_user_on_a_read_only_root(
        rooms_image, image_database, rabbitmq_url, containers):
    database = {"DATABASE_URL": image_database}

    # migrate: a one-shot that leaves the database at the scripts' head.
    migration = podman("run", "--rm", "--network", "host", "--read-only", f"--env=DATABASE_URL={image_database}",
                       rooms_image, "migrate", timeout=180)
    assert "Running upgrade" in migration.stderr, migration.stderr
    engine = sa.create_engine(image_database)
    with engine.connect() as connection:
        revisions = frozenset(connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
    engine.dispose()
    assert revisions == migration_heads()

    # A consumer's queue, bound before anything is published.
    exchange, queue = f"rooms.events.image-{uuid.uuid4().hex[:8]}", f"image-consumer.{uuid.uuid4().hex[:8]}"
    with connect(rabbitmq_url) as connection:
        declare_consumer_queue(connection.channel(), exchange, queue)

    # serve: two workers, /tmp the only writable place (the workers' Prometheus files).
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    service = start(containers, rooms_image, environment={
        **database, "APP_ADDRESS": "127.0.0.1", "APP_PORT": str(port), "APP_API_KEYS": API_KEY, "APP_WORKERS": "2",
    }, options=("--tmpfs", "/tmp"))
    wait_until_ready(f"{base_url}/v1/ready", 90, lambda: running(service), lambda: logs(service))

    room = new_room()
    created = httpx.post(f"{base_url}/v1/rooms", json=room, headers={"X-API-Key": API_KEY}, timeout=10)
    assert created.status_code == 201, created.text
    read = httpx.get(f"{base_url}/v1/rooms/{created.json()['id']}", timeout=10)
    assert read.status_code == 200
    assert read.json() == created.json()
    assert read.json()["url"] == room["url"]

    # relay: needs nothing writable at all.
    relay = start(containers, rooms_image, "relay", environment={
        **database, "AMQP_URL": rabbitmq_url, "RELAY_EXCHANGE": exchange,
    })
    with connect(rabbitmq_url) as connection:
        [(properties, body)] = drain(connection.channel(), queue, 1, timeout=60)
    event = decode(body)
    assert event["type"] == properties.type == "room.created"
    assert event["key"] == str(created.json()["id"])

    # Non-root, read-only: for the server process itself (PID 1), not only for a shell exec'd beside it.
    status = podman("exec", service, "cat", "/proc/1/status").stdout
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == [APP_USER_ID] * 4, uid_line
    assert podman("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", service).stdout.strip() == "true"
    for path in ("/app/probe", "/opt/venv/probe", "/probe", "/data/probe"):
        attempt = podman("exec", service, "touch", path, check=False)
        assert attempt.returncode != 0 and "Read-only file system" in attempt.stderr, (path, attempt.stderr)
    assert podman("exec", service, "touch", "/tmp/probe", check=False).returncode == 0

    # SIGTERM (podman stop sends the image's STOPSIGNAL): a long poll in flight answers at once, status 0,
    # well within the grace period.
    long_poll: dict[str, object] = {}

    def poll() -> None:
        response = httpx.get(f"{base_url}/v1/events", timeout=LONG_POLL_SECONDS + 15,
                             params={"type": "question.deleted", "wait": LONG_POLL_SECONDS})
        long_poll.update(status=response.status_code, at=time.monotonic())

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(1)  # the poll is waiting by now
    assert poller.is_alive()
    signalled = time.monotonic()
    podman("stop", "--time", str(GRACEFUL_SECONDS + 10), service, timeout=GRACEFUL_SECONDS + 30)
    stopped = time.monotonic()
    poller.join(timeout=30)
    output = logs(service)
    assert exit_code(service) == 0, output
    assert stopped - signalled < GRACEFUL_SECONDS, output
    assert output.count("Application shutdown complete") == 2, output
    assert long_poll.get("status") == 200 and long_poll["at"] - signalled < GRACEFUL_SECONDS / 2, output

    # The relay on `podman kill --signal TERM`: it finishes its batch and exits 0.
    signalled = time.monotonic()
    podman("kill", "--signal", "TERM", relay)
    assert podman("wait", relay, timeout=GRACEFUL_SECONDS + 10).stdout.strip() == "0", logs(relay)
    assert time.monotonic() - signalled < GRACEFUL_SECONDS
    assert "Relay stopped after publishing 1 events" in logs(relay), logs(relay)


def test_without_a_database_setting_the_image_serves_on_sqlite_in_data(rooms_image, containers):
    volume = f"rooms-test-data-{uuid.uuid4().hex[:10]}"
    port = free_port()
    try:
        service = start(containers, rooms_image, environment={
            "APP_ADDRESS": "127.0.0.1", "APP_PORT": str(port), "APP_API_KEYS": API_KEY, "APP_WORKERS": "1",
        }, options=("--volume", f"{volume}:/data"))
        wait_until_ready(f"http://127.0.0.1:{port}/v1/ready", 90, lambda: running(service), lambda: logs(service))
        created = httpx.post(f"http://127.0.0.1:{port}/v1/rooms", json=new_room(), headers={"X-API-Key": API_KEY})
        assert created.status_code == 201, created.text
        assert "using SQLite in /data/rooms.sqlite3" in logs(service)
        assert "rooms.sqlite3" in podman("exec", service, "ls", "/data").stdout.split()
    finally:
        for name in containers:
            podman("rm", "--force", "--time", "0", name, check=False)
        podman("volume", "rm", "--force", volume, check=False)


def test_the_image_carries_its_metadata_and_stays_small(rooms_image, python_base_image):
    config = orjson.loads(podman("image", "inspect", rooms_image).stdout)[0]
    labels = config["Config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == project_version()
    # The commit the image was built from: HEAD when the session built it (a commit made since, in a long run,
    # is its descendant).
    revision = labels["org.opencontainers.image.revision"]
    assert revision == git_revision() or _is_ancestor(revision, git_revision())
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert config["Config"]["User"] == f"{APP_USER_ID}:{APP_USER_ID}"
    assert config["Config"]["StopSignal"] == "SIGTERM"
    assert config["Config"]["Entrypoint"] == ["rooms-entrypoint"] and config["Config"]["Cmd"] == ["serve"]
    base_size = orjson.loads(podman("image", "inspect", python_base_image).stdout)[0]["Size"]
    added = config["Size"] - base_size
    # Measured: about 100 MB on top of the base (the virtualenv, stripped; bench/RESULTS.md). A guard against bloat.
    assert added < 130_000_000, f"the image adds {added / 1e6:.0f} MB to its base"


def _is_ancestor(older: str, newer: str) -> bool:
    result = subprocess.run(["git", "merge-base", "--is-ancestor", older, newer], cwd=PROJECT_ROOT, check=False)
    return result.returncode == 0

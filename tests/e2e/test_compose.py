"""compose.yaml brings up a working system: PostgreSQL, RabbitMQ, the migrations, the service and the relay.

Run with podman-compose, with the suite's local stand-ins for the public images (tests/support/containers.py). podman 4.3
(Debian 12) runs health checks only on demand and podman-compose ignores `service_healthy` before podman 4.6, so
here the stack's order comes from the rooms image waiting for its database (deploy/entrypoint.sh) and the relay
retrying the broker; the health checks themselves are run and must pass (docs/deploy.md).
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.integration.test_relay import decode
from tests.support.containers import PROJECT_ROOT, podman, podman_environment, wait_until_ready
from tests.support.factories import new_room
from tests.support.postgres import free_port
from tests.support.rabbitmq import connect, declare_consumer_queue, drain

COMPOSE = [str(Path(sys.executable).parent / "podman-compose")]
API_KEY = "compose-test-key"
RABBITMQ_USER, RABBITMQ_PASSWORD = "rooms", "compose-test-password"
EXCHANGE = "rooms.events"
UP_TIMEOUT_SECONDS = 180


class ComposeStack:
    """compose.yaml under a project name of its own, isolated from a developer's .env."""

    def __init__(self, images: dict[str, str], env_file: Path) -> None:
        self.project = f"rooms-test-{uuid.uuid4().hex[:8]}"
        self.port, self.amqp_port = free_port(), free_port()
        self.environment = {
            **podman_environment(), **images,
            "ROOMS_PORT": str(self.port), "RABBITMQ_PORT": str(self.amqp_port), "APP_API_KEYS": API_KEY,
            "POSTGRES_PASSWORD": "compose-test-password", "RABBITMQ_USER": RABBITMQ_USER,
            "RABBITMQ_PASSWORD": RABBITMQ_PASSWORD, "RELAY_EXCHANGE": EXCHANGE,
        }
        self.env_file = env_file
        self.url = f"http://127.0.0.1:{self.port}"
        self.amqp_url = f"amqp://{RABBITMQ_USER}:{RABBITMQ_PASSWORD}@127.0.0.1:{self.amqp_port}/%2F"

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run podman-compose on compose.yaml for this project."""
        return subprocess.run(
            [*COMPOSE, "--project-name", self.project, "--file", str(PROJECT_ROOT / "compose.yaml"),
             "--env-file", str(self.env_file), *args],
            capture_output=True, text=True, timeout=timeout, env=self.environment, cwd=PROJECT_ROOT, check=False,
        )

    def containers(self) -> dict[str, str]:
        """The project's containers, by compose service name."""
        listed = podman("ps", "--all", "--filter", f"label=com.docker.compose.project={self.project}",
                        "--format", "json").stdout
        return {c["Labels"]["com.docker.compose.service"]: c["Names"][0] for c in orjson.loads(listed or "[]")}

    def volumes(self) -> list[str]:
        """The project's volumes."""
        listed = podman("volume", "ls", "--filter", f"label=com.docker.compose.project={self.project}",
                        "--format", "{{.Name}}").stdout
        return listed.split()

    def logs(self) -> str:
        """Every container's output, for failure messages."""
        parts = []
        for service, name in self.containers().items():
            result = podman("logs", "--tail", "40", name, check=False)
            parts.append(f"--- {service} ({name})\n{result.stdout}{result.stderr}")
        return "\n".join(parts)


@pytest.fixture
def stack(rooms_image, postgres_image, rabbitmq_image, tmp_path) -> Iterator[ComposeStack]:
    """compose.yaml up, with the local images; down with its volumes afterwards, whatever happened."""
    env_file = tmp_path / "compose.env"
    env_file.write_text("")
    stack = ComposeStack({"ROOMS_IMAGE": rooms_image, "POSTGRES_IMAGE": postgres_image,
                          "RABBITMQ_IMAGE": rabbitmq_image}, env_file)
    try:
        up = stack.compose("up", "--detach", timeout=UP_TIMEOUT_SECONDS)
        assert up.returncode == 0, f"{up.stdout}\n{up.stderr}"
        yield stack
    finally:
        stack.compose("down", "--volumes", "--timeout", "30", timeout=180)


def run_health_check(name: str, timeout: float = 120) -> None:
    """Run the container's compose health check until it passes (podman runs it only on demand here)."""
    deadline = time.monotonic() + timeout
    while True:
        result = podman("healthcheck", "run", name, check=False)
        if result.returncode == 0:
            return
        assert time.monotonic() < deadline, f"the health check of {name} did not pass: {result.stdout}{result.stderr}"
        time.sleep(2)


def test_compose_up_serves_stores_and_relays_then_down_removes_everything(stack):
    wait_until_ready(f"{stack.url}/v1/ready", UP_TIMEOUT_SECONDS, explain=stack.logs)
    containers = stack.containers()
    assert set(containers) == {"postgres", "rabbitmq", "migrate", "service", "relay"}, stack.logs()

    # The one-shot migration finished, successfully; the health checks compose.yaml declares pass.
    assert podman("wait", containers["migrate"], timeout=60).stdout.strip() == "0", stack.logs()
    for service in ("postgres", "rabbitmq", "service"):
        run_health_check(containers[service])

    # Swagger UI on the published port, as the README promises.
    ui = httpx.get(f"{stack.url}/ui/", timeout=10)
    assert ui.status_code == 200 and "swagger" in ui.text.lower()

    # A consumer on the published AMQP port (declaring the exchange as the relay does: it declares it only
    # when it first publishes), then a room through the service, read back and relayed.
    queue = f"compose-consumer.{uuid.uuid4().hex[:8]}"
    with connect(stack.amqp_url) as connection:
        declare_consumer_queue(connection.channel(), EXCHANGE, queue)
    created = httpx.post(f"{stack.url}/v1/rooms", json=new_room(), headers={"X-API-Key": API_KEY}, timeout=10)
    assert created.status_code == 201, created.text
    read = httpx.get(f"{stack.url}/v1/rooms/{created.json()['id']}", timeout=10)
    assert read.status_code == 200 and read.json() == created.json()
    with connect(stack.amqp_url) as connection:
        [(properties, body)] = drain(connection.channel(), queue, 1, timeout=60)
    event = decode(body)
    assert event["type"] == properties.type == "room.created"
    assert event["key"] == str(created.json()["id"])

    # The data lives in named volumes, which `down --volumes` removes along with the containers.
    volumes = stack.volumes()
    assert {f"{stack.project}_postgres-data", f"{stack.project}_rabbitmq-data"} <= set(volumes), volumes
    down = stack.compose("down", "--volumes", "--timeout", "30", timeout=180)
    assert down.returncode == 0, f"{down.stdout}\n{down.stderr}"
    for service, name in containers.items():
        assert podman("container", "exists", name, check=False).returncode == 1, f"{service} is still there"
    assert stack.volumes() == []
    for volume in volumes:
        assert podman("volume", "exists", volume, check=False).returncode == 1, f"{volume} is still there"

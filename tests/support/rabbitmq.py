"""A throwaway RabbitMQ broker for the test suite, started from Debian's rabbitmq-server package."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pika
import pika.exceptions
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from tests.support.postgres import free_port

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


def find_server() -> Path:
    """Return the rabbitmq-server start script, or explain how to get it."""
    if SERVER.exists():
        return SERVER
    raise RuntimeError(
        f"RabbitMQ was not found ({SERVER}); `make test` installs it with apt-get (package rabbitmq-server) "
        "when run as root, or run `sudo scripts/ensure-rabbitmq.sh`."
    )


def _free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


class ThrowawayRabbitMQ:
    """rabbitmq-server on loopback in a temporary folder, with its own epmd, node name and ports."""

    def __init__(self) -> None:
        self.server = find_server()
        self.root = Path(tempfile.mkdtemp(prefix="rooms-rabbitmq-"))
        self.port, self.dist_port, self.epmd_port = _free_ports(3)
        self.node_name = f"rooms-test-{self.port}@localhost"
        self.log_path = self.root / "log" / "broker.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """AMQP URL of the broker's default vhost (guest may log in because we connect over loopback)."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def _env(self) -> dict[str, str]:
        # A clean environment, so a developer's RABBITMQ_* settings and /etc/rabbitmq never leak in.
        root = self.root
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "HOME": str(root),  # where Erlang keeps this node's .erlang.cookie
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_NODENAME": self.node_name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(root / "log"),
            "RABBITMQ_LOGS": "-",  # to stdout, which goes to log_path
            "RABBITMQ_PID_FILE": str(root / "rabbitmq.pid"),
            "RABBITMQ_CONF_ENV_FILE": str(root / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(root / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
        }

    def _write_config(self) -> None:
        (self.root / "log").mkdir(exist_ok=True)
        (self.root / "rabbitmq-env.conf").write_text("")
        (self.root / "enabled_plugins").write_text("[].\n")  # no management plugin: boots faster
        (self.root / "advanced.config").write_text("[].\n")
        (self.root / "rabbitmq.conf").write_text(
            # A nearly full CI disk would otherwise raise the disk alarm and block every publisher.
            "disk_free_limit.absolute = 1MB\n"
        )

    def start(self) -> str:
        """Start the broker and wait until it accepts AMQP connections; return its AMQP URL."""
        self._write_config()
        self._launch()
        return self.url

    def _launch(self) -> None:
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                [str(self.server)], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self._env(), cwd=self.root,
                start_new_session=True,  # its own process group, so a hung broker can be killed whole
            )
        finally:
            log.close()
        self._wait_until_ready()

    def _wait_until_ready(self, timeout: float = 60.0) -> None:
        parameters = pika.URLParameters(self.url)
        parameters.connection_attempts = 1
        parameters.socket_timeout = 2
        parameters.stack_timeout = 5
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited early (code {self.process.returncode}):\n{self.log_tail()}")
            try:
                # Probe the port first: pika logs every refused attempt at ERROR level, which floods test output.
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
                pika.BlockingConnection(parameters).close()
                return
            except (OSError, pika.exceptions.AMQPError, AMQPConnectorException):
                time.sleep(0.2)
        raise RuntimeError(f"rabbitmq-server did not accept AMQP connections within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the broker's log, for error messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as error:
            return f"(no broker log: {error})"

    def _stop_broker(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            # The start script traps SIGTERM and shuts the Erlang node down gracefully (queues are flushed).
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def _stop_epmd(self) -> None:
        # erl starts epmd as a daemon outside our process group; it listens on our private port only.
        epmd = shutil.which("epmd") or "/usr/bin/epmd"
        subprocess.run(
            [epmd, "-port", str(self.epmd_port), "-kill"],
            capture_output=True, check=False, timeout=10, env={**self._env(), "ERL_EPMD_PORT": str(self.epmd_port)},
        )

    def restart(self) -> None:
        """Stop the broker process and start it again on the same ports and data (durable state survives)."""
        self._stop_broker()
        self._launch()

    def stop(self) -> None:
        """Stop the broker and its epmd, and delete the temporary folder."""
        try:
            self._stop_broker()
        finally:
            self._stop_epmd()
            shutil.rmtree(self.root, ignore_errors=True)


def connect(url: str) -> pika.BlockingConnection:
    """A blocking connection that fails instead of hanging if the broker blocks publishers (resource alarm)."""
    parameters = pika.URLParameters(url)
    parameters.blocked_connection_timeout = 30
    parameters.socket_timeout = 10
    return pika.BlockingConnection(parameters)


def unique(prefix: str) -> str:
    """A name no other test uses on the shared broker."""
    return f"{prefix}.{uuid.uuid4().hex[:12]}"


def declare_consumer_queue(channel, exchange: str, queue: str, pattern: str = "#", *, durable: bool = True) -> None:
    """Declare the relay's topic exchange as the relay does, and `queue` bound to it with `pattern` (every event type by default)."""
    channel.exchange_declare(exchange, exchange_type="topic", durable=True)
    channel.queue_declare(queue, durable=durable, auto_delete=not durable)
    channel.queue_bind(queue, exchange, routing_key=pattern)


def drain(channel, queue: str, count: int, timeout: float = 10.0) -> list[tuple[pika.BasicProperties, bytes]]:
    """Consume and ack `count` messages from `queue`, failing if they do not arrive within `timeout` seconds each."""
    received = []
    for method, properties, body in channel.consume(queue, inactivity_timeout=timeout):
        assert method is not None, f"only {len(received)} of {count} messages arrived from {queue}"
        channel.basic_ack(method.delivery_tag)
        received.append((properties, body))
        if len(received) == count:
            break
    channel.cancel()
    return received

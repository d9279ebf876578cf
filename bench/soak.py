"""Soak the service and the relay under mixed load, restart the broker mid-run, and check that nothing is lost.

One run, on loopback only: start a throwaway PostgreSQL (tests/support/postgres.py) and RabbitMQ (tests/support/rabbitmq.py),
migrate, seed rooms and items, declare and bind a durable queue on the relay's exchange before any write and
consume it in a background thread, then start the service exactly as production does (`python serve.py`,
2 workers) and the relay (`python relay.py`). A few client threads send bounded, paced, mixed requests
(reads by id, paged searches, creates of rooms, items and questions, PATCH/PUT with If-Match, deletes);
the broker is restarted once in the middle while the load goes on. When the load stops, the run waits
(bounded) until the relay has published every event and the consumer has received them, then checks:

- every acknowledged (2xx) create is in the database unless an acknowledged delete removed it, and every
  acknowledged delete is gone;
- the outbox holds exactly one event per acknowledged write (beyond writes whose answer never came);
- the broker delivered every committed event at least once, and in order (first deliveries' positions
  strictly increasing; duplicates allowed and counted), each message matching its row;
- zero 5xx answers and zero failed connections; a stale If-Match is always refused with 412;
- the service and the relay stayed up, and deliveries resumed after the broker restart.

With `--replicas N` (N >= 2) the same load goes through nginx (deploy/nginx/rooms.conf.template) to N
service instances, with two relays taking turns (bench/replicas.py); each client connects from a loopback
address of its own, so nginx's per-address rate limit applies to each as to a real client. Besides the
broker restart, one instance is killed with SIGKILL and started again, and the relay holding the publishing
turn is killed and started again. Then also:

- nginx passed a request to a second instance only when that cannot apply it twice: a POST or PATCH only
  if the first instance never received it (its connection was refused), and no POST or PATCH is in two
  instances' access logs;
- no 5xx answer but a 502 to a POST or PATCH in flight on the instance when it was killed (the documented
  failure window, docs/scaling.md), and the killed instance served again once restarted;
- the relay holding the turn was killed, and the other one went on publishing.

It writes the report to bench/SOAK.md (with the date and commit; runs accumulate in its run history),
prints it, stops everything it started (also on failure or Ctrl-C) and exits 1 if any check failed.

    .venv/bin/python bench/soak.py                   # the default run, about 5 minutes of load
    .venv/bin/python bench/soak.py --duration 60     # a short run
    .venv/bin/python bench/soak.py --db-outage 10    # also stop PostgreSQL for 10 s (503s allowed then only)
    .venv/bin/python bench/soak.py --replicas 2      # two instances behind nginx, two relays, and their faults
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import itertools
import json
import logging
import math
import os
import platform
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(PROJECT_ROOT))

import pika  # noqa: E402
import pika.exceptions  # noqa: E402

from bench.replicas import Fleet, Process, relay_holding_turn  # noqa: E402
from bench.run import CITIES, PROVIDERS, Server, exit_on_signals, seed_database, stepper  # noqa: E402
from tests.support.postgres import ThrowawayPostgres, free_port  # noqa: E402
from tests.support.rabbitmq import ThrowawayRabbitMQ  # noqa: E402

REPORT_FILE = BENCH_DIR / "SOAK.md"
LOG_DIR = BENCH_DIR / "out" / "soak"  # git-ignored: the service's, the relay's and the broker's logs
EXCHANGE = "rooms.events"
QUEUE = "soak.every-event"
HISTORY_HEADING = "## Run history"
IDLE_RECONNECT_SECONDS = 2.0  # uvicorn closes idle keep-alive connections after 5 s: reconnect well before
MIN_POOL = 50  # deletes leave at least this many rooms/items in the pools that reads and updates pick from
WRITE_KINDS = {"create_room", "create_item", "create_question", "patch_room", "patch_room_stale", "put_item",
               "put_item_stale", "delete_room", "delete_item", "delete_question", "retry_create_room",
               "retry_create_item"}
DELETE_KINDS = {"delete_room": "room", "delete_item": "item", "delete_question": "question"}
# Answers after which a write may or may not have been applied: none at all, or a proxy's 502 or 504
# (the service itself never answers either).
UNKNOWN_OUTCOME = {0, 502, 504}
KEY_RETRIES = 3  # a create with an Idempotency-Key is sent this many times at most while its outcome is unknown
KILL_WINDOW_SLACK = 1.0  # s after a kill in which nginx may still send a request down a connection it has not seen die

logging.getLogger("pika").setLevel(logging.CRITICAL)  # it logs every refused reconnect during the restart


# --------------------------------------------------------------------------- what the run observes


class Record(NamedTuple):
    """One request as the client saw it."""

    kind: str
    method: str
    path: str
    status: int  # 0: no answer (connection refused, reset, timed out)
    latency_ms: float
    at: float  # seconds since the load began
    body: bytes | None  # kept for 5xx answers and failed connections only
    request_id: str = ""  # the X-Request-ID the client sent (nginx and the service log it)


class Write(NamedTuple):
    """An acknowledged (2xx) write: which event it must have produced."""

    event_type: str  # room.created, item.deleted, ...
    key: str  # the event's key: room id, item id, question code
    at: float


class Delivery(NamedTuple):
    """One message the consumer received (and acked)."""

    message_id: str
    position: Any  # the `position` header
    routing_key: str
    redelivered: bool
    body: bytes
    at: float  # seconds since the load began (negative before it)


@dataclass
class Observations:
    """Everything the checks look at, gathered from the clients, the consumer and the database."""

    records: list[Record] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    unanswered_writes: list[Record] = field(default_factory=list)
    stale_accepted: list[str] = field(default_factory=list)  # a stale If-Match that got a 2xx
    stale_attempts: int = 0
    page_violations: list[str] = field(default_factory=list)
    client_crashes: list[str] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    consumer_reconnects: int = 0
    events: list[tuple[str, int, str, str]] = field(default_factory=list)  # (event_id, position, type, key)
    unpublished: int = -1
    present: dict[str, set[str]] = field(default_factory=dict)  # "room" | "item" | "question" -> keys in the DB
    process_exits: list[str] = field(default_factory=list)
    broker_restart: dict[str, float] = field(default_factory=dict)  # at, seconds, ready_at
    db_outage: dict[str, float] = field(default_factory=dict)  # at, until (seconds since the load began)
    load_seconds: float = 0.0
    drain_seconds: float = 0.0
    expect_broker_restart: bool = True
    key_retries: int = 0  # creates sent again with their Idempotency-Key after an unknown outcome
    # --replicas: the instances behind nginx, the relays, and what was done to them
    replicas: int = 1
    instance_kills: list[dict] = field(default_factory=list)  # at, name, upstream, back_at (s since the load began)
    relay_kills: list[dict] = field(default_factory=list)  # at, name, held_turn, back_at
    proxy_log: list[dict] = field(default_factory=list)  # nginx's access log, each entry with its start `at`
    instances: dict[str, str] = field(default_factory=dict)  # nginx's upstream address -> instance name
    served_by: dict[str, list[str]] = field(default_factory=dict)  # request id -> instances that logged it


# --------------------------------------------------------------------------- shared pools of ids


class Pools:
    """Ids the clients read, update and delete: seeded ones and the ones acknowledged as created."""

    def __init__(self, rooms: list[str], items: list[str]) -> None:
        self._lock = threading.Lock()
        self._pools: dict[str, list[str]] = {"room": list(rooms), "item": list(items), "question": []}

    def pick(self, entity: str, rng: random.Random) -> str | None:
        with self._lock:
            pool = self._pools[entity]
            return rng.choice(pool) if pool else None

    def add(self, entity: str, key: str) -> None:
        with self._lock:
            self._pools[entity].append(key)

    def take(self, entity: str, rng: random.Random, keep: int) -> str | None:
        """Remove and return a random id, so no two clients delete the same one; None below `keep` left."""
        with self._lock:
            pool = self._pools[entity]
            if len(pool) <= keep:
                return None
            index = rng.randrange(len(pool))
            pool[index], pool[-1] = pool[-1], pool[index]
            return pool.pop()


# --------------------------------------------------------------------------- the load


class Client(threading.Thread):
    """One client: a keep-alive connection sending paced mixed requests until the deadline or the stop."""

    question_codes = itertools.count(1)  # shared by every client: a code is created once per run

    def __init__(self, number: int, *, port: int, api_key: str, pools: Pools, run_token: str, started: float,
                 deadline: float, stop: threading.Event, interval: float, max_requests: int, seed: int,
                 source_address: str | None = None) -> None:
        super().__init__(name=f"soak-client-{number}", daemon=True)
        self.number, self.port, self.api_key, self.pools = number, port, api_key, pools
        self.source_address = source_address  # the loopback address its connections come from (behind nginx)
        self.run_token, self.started, self.deadline, self.stop = run_token, started, deadline, stop
        self.interval, self.max_requests = interval, max_requests
        self.rng = random.Random(seed * 1000 + number)
        self.connection: http.client.HTTPConnection | None = None
        self.last_used = 0.0
        self.next_at = 0.0
        self.serial = 0
        self.records: list[Record] = []
        self.writes: list[Write] = []
        self.unanswered_writes: list[Record] = []
        self.stale_accepted: list[str] = []
        self.stale_attempts = 0
        self.page_violations: list[str] = []
        self.key_retries = 0
        self.crash: str | None = None

    # ---- plumbing

    def _pace(self) -> None:
        if self.interval <= 0:
            return
        now = time.perf_counter()
        if self.next_at > now:
            time.sleep(self.next_at - now)
        self.next_at = max(self.next_at, now) + self.interval

    def request(self, kind: str, method: str, path: str, body: dict | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any, str | None]:
        """Send one request (a body as JSON, unless headers name another type); return (status, parsed JSON
        of a 2xx answer or None, ETag). Every request is recorded."""
        self._pace()
        headers = dict(headers or {})
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        if method != "GET":
            headers["X-API-Key"] = self.api_key
        request_id = headers["X-Request-ID"] = f"{self.run_token}-{self.number}-{len(self.records)}"
        if self.connection is not None and time.perf_counter() - self.last_used > IDLE_RECONNECT_SECONDS:
            self.connection.close()
        if self.connection is None:
            source = (self.source_address, 0) if self.source_address else None
            # Longer than nginx's proxy_read_timeout (40 s), so a proxy's 504 arrives before the client gives up.
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60, source_address=source)
        began = time.perf_counter()
        etag = None
        try:
            self.connection.request(method, path, body=payload, headers=headers)
            response = self.connection.getresponse()
            answer = response.read()
            status = response.status
            etag = response.getheader("ETag")
        except (OSError, http.client.HTTPException) as error:
            status, answer = 0, f"{type(error).__name__}: {error}".encode()
            self.connection.close()
            self.connection = None
        ended = time.perf_counter()
        self.last_used = ended
        record = Record(kind, method, path, status, (ended - began) * 1000, began - self.started,
                        answer[:2000] if status == 0 or status >= 500 else None, request_id)
        self.records.append(record)
        if status in UNKNOWN_OUTCOME and kind in WRITE_KINDS:
            self.unanswered_writes.append(record)
        parsed = None
        if answer and 200 <= status < 300:
            parsed = json.loads(answer)
        return status, parsed, etag

    def acknowledged(self, event_type: str, key: str) -> None:
        self.writes.append(Write(event_type, key, time.perf_counter() - self.started))

    def run(self) -> None:
        operations, weights = zip(*OPERATIONS, strict=True)
        try:
            while (not self.stop.is_set() and time.perf_counter() < self.deadline
                   and len(self.records) < self.max_requests):
                self.rng.choices(operations, weights)[0](self)
        except Exception:  # noqa: BLE001 - a bug in the soak itself must fail the run, not end it quietly
            self.crash = traceback.format_exc()
        finally:
            if self.connection is not None:
                self.connection.close()

    # ---- bodies

    def new_room(self) -> dict:
        self.serial += 1
        city, country, lat, lon, _ = self.rng.choices(CITIES, [c[4] for c in CITIES])[0]
        price = self.rng.randrange(150, 3000)
        return {
            "name": f"Soak room {self.number}-{self.serial} in {city}",
            "description": "Created by the soak test.",
            "price": price, "recurrency": "monthly", "provider": self.rng.choice(PROVIDERS),
            "url": f"https://soak.example.com/{self.run_token}/{self.number}/{self.serial}",
            "monthly_price": price, "property_size": f"{self.rng.randrange(8, 40)} m²",
            "coordinates": {"lat": lat + self.rng.uniform(-0.05, 0.05), "lon": lon + self.rng.uniform(-0.05, 0.05)},
            "area": {"name": f"{city} soak", "country": country, "city": city},
        }


def stale_tag(etag: str | None) -> str:
    """An If-Match value that names a version before the current one (or version 0, which never exists)."""
    version = int(etag.strip('"')) if etag and etag.strip('"').isdigit() else 1
    return f'"{max(version - 1, 0)}"'


def get_room(client: Client) -> None:
    room_id = client.pools.pick("room", client.rng)
    if room_id is not None:
        client.request("get_room", "GET", f"/v1/rooms/{room_id}")


def search_rooms(client: Client) -> None:
    """Walk up to four pages of a city's rooms; under an immutable sort key no room may appear twice."""
    city = urllib.parse.quote(client.rng.choices(CITIES, [c[4] for c in CITIES])[0][0])
    sort = client.rng.choice(["created_at", "-created_at", "price"])
    base = f"/v1/rooms?city={city}&sort={sort}&limit=20"
    path, seen = base, set()
    for _ in range(client.rng.randint(1, 4)):
        status, page, _ = client.request("search_rooms", "GET", path)
        if status != 200:
            return
        ids = [room["id"] for room in page["data"]]
        if sort != "price":  # a concurrent PATCH may move a room between price pages; created_at never moves
            again = seen.intersection(ids)
            if again:
                client.page_violations.append(f"{base}: {sorted(again)} on two pages")
        seen.update(ids)
        if not page["next_cursor"]:
            return
        path = f"{base}&cursor={urllib.parse.quote(page['next_cursor'])}"


def get_item(client: Client) -> None:
    item_id = client.pools.pick("item", client.rng)
    if item_id is not None:
        client.request("get_item", "GET", f"/v1/items/{item_id}")


def search_items(client: Client) -> None:
    name = urllib.parse.quote(f"Item {client.rng.randrange(100)}")
    client.request("search_items", "GET", f"/v1/items?name={name}&limit=20")


def read_question(client: Client) -> None:
    code = client.pools.pick("question", client.rng)
    if code is None:
        client.request("search_questions", "GET", "/v1/questions?category=soak&limit=20")
    else:
        client.request("get_question", "GET", f"/v1/questions/{code}")


def create(client: Client, kind: str, path: str, body: dict) -> tuple[int, Any]:
    """POST a create, half of them with an Idempotency-Key; return its (last) status and body.

    A create with a key is sent again while its outcome is unknown (no answer, or a proxy's 502/504), as
    the key allows: it is applied once whatever happened to the earlier attempts.
    """
    if client.rng.random() >= 0.5:
        return client.request(kind, "POST", path, body)[:2]
    headers = {"Idempotency-Key": f"{client.run_token}-{client.number}-{client.serial}-{kind}"}
    status, created, _ = client.request(kind, "POST", path, body, headers)
    for _ in range(KEY_RETRIES - 1):
        if status not in UNKNOWN_OUTCOME:
            break
        client.key_retries += 1
        status, created, _ = client.request(f"retry_{kind}", "POST", path, body, headers)
    return status, created


def create_room(client: Client) -> None:
    status, room = create(client, "create_room", "/v1/rooms", client.new_room())
    if status == 201:
        client.acknowledged("room.created", room["id"])
        client.pools.add("room", room["id"])


def create_item(client: Client) -> None:
    client.serial += 1
    body = {"name": f"Soak item {client.run_token}-{client.number}-{client.serial}"}
    status, item = create(client, "create_item", "/v1/items", body)
    if status == 201:
        client.acknowledged("item.created", str(item["id"]))
        client.pools.add("item", str(item["id"]))


def create_question(client: Client) -> None:
    code = str(next(Client.question_codes))
    body = {"question_code": code, "category": "soak", "message": f"Soak question {code}?"}
    status, _, _ = client.request("create_question", "POST", "/v1/questions", body)
    if status == 201:
        client.acknowledged("question.created", code)
        client.pools.add("question", code)


def patch_room(client: Client) -> None:
    """Read a room for its ETag, then merge-patch its price with If-Match (one in ten with a stale tag)."""
    room_id = client.pools.pick("room", client.rng)
    if room_id is None:
        return
    status, _, etag = client.request("get_room", "GET", f"/v1/rooms/{room_id}")
    if status != 200:
        return
    stale = client.rng.random() < 0.1
    price = client.rng.randrange(150, 3000)
    status, _, _ = client.request(
        "patch_room_stale" if stale else "patch_room", "PATCH", f"/v1/rooms/{room_id}",
        {"price": price, "monthly_price": price},
        {"Content-Type": "application/merge-patch+json", "If-Match": stale_tag(etag) if stale else etag},
    )
    if stale:
        client.stale_attempts += 1
        if 200 <= status < 300:
            client.stale_accepted.append(f"PATCH /v1/rooms/{room_id} with a stale If-Match answered {status}")
    if 200 <= status < 300:  # acknowledged, even if wrongly: its change and event must be there
        client.acknowledged("room.updated", room_id)


def put_item(client: Client) -> None:
    """Read an item for its ETag, then replace it with If-Match (one in ten with a stale tag)."""
    item_id = client.pools.pick("item", client.rng)
    if item_id is None:
        return
    status, _, etag = client.request("get_item", "GET", f"/v1/items/{item_id}")
    if status != 200:
        return
    stale = client.rng.random() < 0.1
    kind = "put_item_stale" if stale else "put_item"
    client.serial += 1
    status, _, _ = client.request(kind, "PUT", f"/v1/items/{item_id}",
                                  {"name": f"Soak item {client.run_token}-{client.number}-{client.serial}"},
                                  {"If-Match": stale_tag(etag) if stale else etag})
    if stale:
        client.stale_attempts += 1
        if 200 <= status < 300:
            client.stale_accepted.append(f"PUT /v1/items/{item_id} with a stale If-Match answered {status}")
    if 200 <= status < 300:  # acknowledged, even if wrongly: its change and event must be there
        client.acknowledged("item.updated", item_id)


def delete_room(client: Client) -> None:
    room_id = client.pools.take("room", client.rng, MIN_POOL)
    if room_id is not None and client.request("delete_room", "DELETE", f"/v1/rooms/{room_id}")[0] == 204:
        client.acknowledged("room.deleted", room_id)


def delete_item(client: Client) -> None:
    item_id = client.pools.take("item", client.rng, MIN_POOL)
    if item_id is not None and client.request("delete_item", "DELETE", f"/v1/items/{item_id}")[0] == 204:
        client.acknowledged("item.deleted", item_id)


def delete_question(client: Client) -> None:
    code = client.pools.take("question", client.rng, 5)
    if code is not None and client.request("delete_question", "DELETE", f"/v1/questions/{code}")[0] == 204:
        client.acknowledged("question.deleted", code)


OPERATIONS = [  # (operation, weight): about two thirds of the requests read, one third write
    (get_room, 30), (search_rooms, 12), (get_item, 6), (search_items, 3), (read_question, 3),
    (create_room, 10), (create_item, 6), (create_question, 5), (patch_room, 9), (put_item, 4),
    (delete_room, 4), (delete_item, 3), (delete_question, 3),
]


# --------------------------------------------------------------------------- the consumer


def declare_queue(amqp_url: str, exchange: str = EXCHANGE, queue: str = QUEUE) -> None:
    """Declare the relay's exchange and a durable queue bound to every routing key, before any write."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.exchange_declare(exchange, exchange_type="topic", durable=True)
        channel.queue_declare(queue, durable=True)
        channel.queue_bind(queue, exchange, routing_key="#")
    finally:
        connection.close()


def delete_queue(amqp_url: str, exchange: str, queue: str) -> None:
    """Delete a queue and exchange that declare_queue made on a broker that outlives the run (the suite's)."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.queue_delete(queue)
        channel.exchange_delete(exchange)
    finally:
        connection.close()


class Consumer(threading.Thread):
    """Consumes the queue, recording every delivery before acking it; reconnects while the broker is away."""

    def __init__(self, amqp_url: str, queue: str = QUEUE) -> None:
        super().__init__(name="soak-consumer", daemon=True)
        self.queue = queue
        self.parameters = pika.URLParameters(amqp_url)
        self.parameters.connection_attempts = 1
        self.parameters.socket_timeout = 5
        self.parameters.blocked_connection_timeout = 30
        self.deliveries: list[Delivery] = []  # appended by this thread only; others read a prefix
        self.reconnects = 0
        self.crash: str | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        connected_before = False
        while not self.stopping.is_set():
            connection = None
            try:
                connection = pika.BlockingConnection(self.parameters)
                self.reconnects += connected_before
                connected_before = True
                channel = connection.channel()
                channel.basic_qos(prefetch_count=200)
                for method, properties, body in channel.consume(self.queue, inactivity_timeout=0.25):
                    if method is not None:
                        self.deliveries.append(Delivery(
                            properties.message_id, (properties.headers or {}).get("position"), method.routing_key,
                            bool(method.redelivered), body, time.perf_counter()))
                        channel.basic_ack(method.delivery_tag)  # lost if the broker goes now: a redelivery
                    if self.stopping.is_set():
                        break
                channel.cancel()
            except (pika.exceptions.AMQPError, OSError):
                self.stopping.wait(0.5)  # the broker is restarting
            except Exception:  # noqa: BLE001 - recorded and reported as a failed check
                self.crash = traceback.format_exc()
                return
            finally:
                if connection is not None and connection.is_open:
                    try:
                        connection.close()
                    except (pika.exceptions.AMQPError, OSError):
                        pass


# --------------------------------------------------------------------------- processes


def stop_postgres_keeping_data(postgres: ThrowawayPostgres) -> None:
    """Fast shutdown (clients disconnected), the cluster left on disk for start_postgres_again."""
    postgres.process.send_signal(signal.SIGINT)
    postgres.process.wait(timeout=60)


def start_postgres_again(postgres: ThrowawayPostgres) -> None:
    """Start the stopped cluster on its port and data, as ThrowawayPostgres.start does."""
    env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": str(postgres.root)}
    with open(postgres.root / "postgres.log", "ab") as log:
        postgres.process = subprocess.Popen(
            [str(postgres.bin_dir / "postgres"), "-D", str(postgres.data_dir), "-p", str(postgres.port),
             "-k", str(postgres.root), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
             "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=300"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=postgres.root, **postgres._run_as(),
        )
    postgres._wait_until_ready()


def keep_log(source: Path, name: str) -> None:
    if source.exists() and LOG_DIR.is_dir():
        shutil.copy(source, LOG_DIR / name)


@dataclass
class Started:
    """What the run started, so that `finally` stops all of it."""

    postgres: ThrowawayPostgres | None = None
    broker: ThrowawayRabbitMQ | None = None
    consumer: Consumer | None = None
    service: Server | None = None
    relay: Process | None = None
    fleet: Fleet | None = None  # --replicas: instead of the one service and relay
    clients: list[Client] = field(default_factory=list)
    stop_load: threading.Event = field(default_factory=threading.Event)

    def stop_all(self) -> None:
        self.stop_load.set()
        for client in self.clients:
            client.join(timeout=35)
        if self.consumer is not None:
            self.consumer.stopping.set()
            self.consumer.join(timeout=15)
        # The broker's and PostgreSQL's logs live in folders that stop() deletes: keep copies first.
        if self.broker is not None:
            keep_log(self.broker.log_path, "broker.log")
        if self.postgres is not None:
            keep_log(self.postgres.root / "postgres.log", "postgres.log")
        for stop in (self.relay and self.relay.stop, self.service and self.service.stop, self.fleet and self.fleet.stop,
                     self.broker and self.broker.stop, self.postgres and self.postgres.stop):
            if stop:
                try:
                    stop()
                except Exception as error:  # noqa: BLE001 - stop the rest anyway
                    print(f"    could not stop cleanly: {error}", flush=True)


# --------------------------------------------------------------------------- the run


def database_state(url: str) -> tuple[list[tuple[str, int, str, str]], int, dict[str, set[str]]]:
    """Return the outbox (event_id, position, type, key) in position order, the unpublished count and the keys
    of every stored room, item and question."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            events = [(str(e), p, t, k) for e, p, t, k in connection.execute(
                sa.text("SELECT event_id, position, type, key FROM events ORDER BY position"))]
            unpublished = connection.execute(
                sa.text("SELECT count(*) FROM events WHERE published_at IS NULL")).scalar_one()
            present = {
                "room": {str(v) for v in connection.execute(sa.text("SELECT id FROM rooms")).scalars()},
                "item": {str(v) for v in connection.execute(sa.text("SELECT id FROM items")).scalars()},
                "question": set(connection.execute(sa.text("SELECT question_code FROM questions")).scalars()),
            }
    finally:
        engine.dispose()
    return events, unpublished, present


def unpublished_and_count(url: str) -> tuple[int, int, int]:
    """(events not yet published, events committed, highest position) or (-1, -1, -1) if the database is away."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            row = connection.execute(sa.text(
                "SELECT count(*) FILTER (WHERE published_at IS NULL), count(*), coalesce(max(position), 0) "
                "FROM events")).one()
            return int(row[0]), int(row[1]), int(row[2])
    except sa.exc.OperationalError:
        return -1, -1, -1
    finally:
        engine.dispose()


def run(options: argparse.Namespace, started: Started) -> int:
    """Do the run described in the module docstring; `started` collects what must be stopped."""
    from providers.database import migrate

    step = stepper()
    facts = run_facts()
    shutil.rmtree(LOG_DIR, ignore_errors=True)
    LOG_DIR.mkdir(parents=True)

    step(f"starting PostgreSQL, migrating, seeding {options.rooms:,} rooms and {options.items:,} items")
    started.postgres = ThrowawayPostgres()
    url = started.postgres.start()
    migrate(url)
    room_ids = seed_database(url, rooms=options.rooms, items=options.items, seed=options.seed)
    _, _, seeded = database_state(url)
    item_ids = sorted(seeded["item"], key=int)

    step("starting RabbitMQ")
    started.broker = ThrowawayRabbitMQ()
    amqp_url = started.broker.start()

    observations = drive(options, started, step, database_url=url, amqp_url=amqp_url, room_ids=room_ids,
                         item_ids=item_ids, log_dir=LOG_DIR)
    if options.corrupt:
        corrupt(observations, options.corrupt, url)
    observe_database(observations, url)

    checks = run_checks(observations)
    save_raw(observations)
    relay_log = (started.fleet.relay_log_text() if started.fleet is not None
                 else (LOG_DIR / "relay.log").read_text(errors="replace"))
    facts["relay_retries"] = relay_log.count("Broker unavailable")
    facts["relay_db_retries"] = relay_log.count("Database unavailable")
    report = render_report(options, facts, observations, checks)
    previous = options.output.read_text() if options.output.exists() else ""
    options.output.write_text(with_history(report, previous, history_line(options, facts, observations, checks)))
    print()
    print(report, flush=True)
    step(f"wrote {options.output.relative_to(PROJECT_ROOT) if options.output.is_relative_to(PROJECT_ROOT) else options.output}")
    return 0 if all(check.passed for check in checks) else 1


def drive(options: argparse.Namespace, started: Started, step, *, database_url: str, amqp_url: str,
          room_ids: list[str], item_ids: list[str], log_dir: Path, exchange: str = EXCHANGE,
          queue: str = QUEUE) -> Observations:
    """Load the service and relay (or the fleet) while the faults happen; return what clients and consumer saw.

    It consumes the exchange through a queue of its own, starts the processes, runs the clients while the
    faults of `options` happen, and waits until the relay has drained.

    The database must be migrated and seeded (room_ids, item_ids). The broker is restarted only if
    `started.broker` is set and options.restart_at > 0; PostgreSQL is stopped only if `started.postgres`
    is set and options.db_outage > 0. What it starts goes into `started`, for the caller to stop.
    """
    step("declaring the exchange and a durable queue bound to '#', consuming it")
    declare_queue(amqp_url, exchange, queue)
    started.consumer = Consumer(amqp_url, queue)
    started.consumer.start()

    api_key, run_token = "soak-" + secrets.token_hex(8), secrets.token_hex(4)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("APP_", "RELAY_", "AMQP_", "SOAK_")) and k != "DATABASE_URL"}
    env |= {"PYTHONUNBUFFERED": "1"}
    if options.replicas > 1:
        step(f"starting {options.replicas} service instances (serve.py, {options.workers} workers each) behind nginx, "
             f"and {options.relays} relays")
        started.fleet = Fleet(instances=options.replicas, workers=options.workers, relays=options.relays,
                              database_url=database_url, amqp_url=amqp_url, exchange=exchange, api_key=api_key,
                              env=env, log_dir=log_dir, nginx_rate=options.nginx_rate, nginx_burst=options.nginx_burst,
                              nginx_workers=options.nginx_workers)
        started.fleet.start()
        port = started.fleet.port
    else:
        port = free_port()
        step(f"starting the service (serve.py, {options.workers} workers) and the relay (relay.py)")
        started.service = Server("service", [sys.executable, "serve.py"],
                                 env | {"DATABASE_URL": database_url, "APP_API_KEYS": api_key, "APP_PORT": str(port),
                                        "APP_ADDRESS": "127.0.0.1", "APP_WORKERS": str(options.workers)}, port, log_dir)
        started.service.start("/v1/health")
        started.relay = Process("relay", [sys.executable, "relay.py"],
                                env | {"DATABASE_URL": database_url, "AMQP_URL": amqp_url, "RELAY_EXCHANGE": exchange},
                                log_dir / "relay.log")
        started.relay.start()

    pools = Pools(room_ids, item_ids)
    interval = options.threads / options.rate if options.rate > 0 else 0.0
    load_began = time.perf_counter()
    load_began_wall = time.time()
    deadline = load_began + options.duration
    started.clients = [
        Client(n, port=port, api_key=api_key, pools=pools, run_token=run_token, started=load_began,
               deadline=deadline, stop=started.stop_load, interval=interval,
               max_requests=options.max_requests // options.threads, seed=options.seed,
               # Behind nginx each client is a client address of its own, as real clients are.
               source_address=f"127.0.0.{10 + n}" if options.replicas > 1 else None)
        for n in range(options.threads)
    ]
    rate = f"up to {options.rate:g} req/s" if options.rate > 0 else "unpaced"
    restart_broker = started.broker is not None and options.restart_at > 0
    faults = [f"the broker restarts at {options.duration * options.restart_at:.0f} s"] if restart_broker else []
    if started.postgres is not None and options.db_outage:
        faults.append(f"PostgreSQL stops for {options.db_outage} s at {options.duration * 0.75:.0f} s")
    if options.replicas > 1:
        faults += [f"service-a is killed at {options.duration * options.kill_at:.0f} s and started "
                   f"{options.down_for:g} s later",
                   f"the relay holding the turn is killed at {options.duration * options.relay_kill_at:.0f} s"]
    step(f"load: {options.threads} client threads, {rate}, for {options.duration} s"
         + (f"; {', '.join(faults)}" if faults else ""))
    for client in started.clients:
        client.start()

    observations = Observations(expect_broker_restart=restart_broker, replicas=options.replicas)
    restart_at = load_began + options.duration * options.restart_at
    outage_at = load_began + options.duration * 0.75 if started.postgres is not None and options.db_outage else None
    kill_at = load_began + options.duration * options.kill_at if options.replicas > 1 else None
    relay_kill_at = load_began + options.duration * options.relay_kill_at if options.replicas > 1 else None
    next_progress = load_began + 30

    def since_load() -> float:
        return time.perf_counter() - load_began

    while any(client.is_alive() for client in started.clients):
        now = time.perf_counter()
        if restart_broker and not observations.broker_restart and now >= restart_at:
            print(f"    [{now - load_began:5.1f} s] restarting the broker ...", flush=True)
            began = time.perf_counter()
            started.broker.restart()
            ready = time.perf_counter()
            observations.broker_restart = {"at": began - load_began, "seconds": ready - began,
                                           "ready_at": ready - load_began}
            print(f"    [{ready - load_began:5.1f} s] broker ready again after {ready - began:.1f} s", flush=True)
            continue  # the restart took a while: look at the clock again
        if outage_at is not None and not observations.db_outage and now >= outage_at:
            print(f"    [{now - load_began:5.1f} s] stopping PostgreSQL for {options.db_outage} s ...", flush=True)
            down = time.perf_counter()  # the outage begins with the shutdown, which disconnects every client
            stop_postgres_keeping_data(started.postgres)
            time.sleep(options.db_outage)
            start_postgres_again(started.postgres)
            observations.db_outage = {"at": down - load_began, "until": time.perf_counter() - load_began}
            print(f"    [{observations.db_outage['until']:5.1f} s] PostgreSQL is back", flush=True)
            continue
        if kill_at is not None and not observations.instance_kills and now >= kill_at:
            fleet = started.fleet
            kill = {"at": since_load(), "name": fleet.instances[0].name, "upstream": fleet.upstream(0)}
            fleet.kill_instance(0)
            print(f"    [{kill['at']:5.1f} s] killed {kill['name']} (SIGKILL to its process group)", flush=True)
            observations.instance_kills.append(kill)
            time.sleep(options.down_for)
            fleet.restart_instance(0)
            kill["back_at"] = since_load()
            print(f"    [{kill['back_at']:5.1f} s] {kill['name']} is ready again", flush=True)
            continue
        if relay_kill_at is not None and not observations.relay_kills and now >= relay_kill_at:
            fleet = started.fleet
            holder, mid_batch = relay_holding_turn(database_url, timeout=5)
            name = holder if holder in {relay.name for relay in fleet.relays} else fleet.relays[0].name
            kill = {"at": since_load(), "name": name, "held_turn": holder == name, "mid_batch": mid_batch}
            fleet.kill_relay(name)
            print(f"    [{kill['at']:5.1f} s] killed {name}"
                  + (" while it held the publishing turn" if kill["held_turn"] else " (no relay was seen holding the turn)")
                  + (", in the middle of a batch" if mid_batch else ""), flush=True)
            observations.relay_kills.append(kill)
            time.sleep(2)
            fleet.restart_relay(name)
            kill["back_at"] = since_load()
            continue
        for exit_ in unexpected_exits(started):
            if not any(e.startswith(exit_.split()[0]) for e in observations.process_exits):
                observations.process_exits.append(f"{exit_} at {now - load_began:.0f} s")
                print(f"    {observations.process_exits[-1]}", flush=True)
        if now >= next_progress:
            requests = sum(len(c.records) for c in started.clients)
            print(f"    [{now - load_began:5.1f} s] {requests:,} requests, "
                  f"{len(started.consumer.deliveries):,} deliveries", flush=True)
            next_progress += 30
        time.sleep(0.1)
    observations.load_seconds = time.perf_counter() - load_began

    step("load stopped; waiting until every committed event is published and received")
    drain_began = time.perf_counter()
    while time.perf_counter() - drain_began < options.drain_timeout:
        unpublished, committed, highest = unpublished_and_count(database_url)
        received = started.consumer.deliveries[:]
        distinct = {d.message_id for d in received}
        positions = [d.position for d in received if isinstance(d.position, int)]
        if unpublished == 0 and len(distinct) >= committed and (max(positions, default=0) >= highest):
            break
        time.sleep(0.5)
    observations.drain_seconds = time.perf_counter() - drain_began
    quiet_began = time.perf_counter()  # a little longer, so late duplicates are counted too
    while time.perf_counter() - quiet_began < 15:
        count = len(started.consumer.deliveries)
        time.sleep(2)
        if len(started.consumer.deliveries) == count:
            break
    for exit_ in unexpected_exits(started):
        if not any(e.startswith(exit_.split()[0]) for e in observations.process_exits):
            observations.process_exits.append(f"{exit_} before the end")
    started.consumer.stopping.set()
    started.consumer.join(timeout=15)

    for client in started.clients:
        observations.records += client.records
        observations.writes += client.writes
        observations.unanswered_writes += client.unanswered_writes
        observations.stale_accepted += client.stale_accepted
        observations.stale_attempts += client.stale_attempts
        observations.page_violations += client.page_violations
        observations.key_retries += client.key_retries
        if client.crash:
            observations.client_crashes.append(f"{client.name}: {client.crash}")
    if started.consumer.crash:
        observations.client_crashes.append(f"consumer: {started.consumer.crash}")
    observations.deliveries = [d._replace(at=d.at - load_began) for d in started.consumer.deliveries]
    observations.consumer_reconnects = started.consumer.reconnects
    observations.records.sort(key=lambda r: r.at)
    if started.fleet is not None:
        time.sleep(0.5)  # nginx writes a line when its request ends: the last answers' lines are a moment behind
        observations.proxy_log = [entry | {"at": entry["msec"] - entry["request_time"] - load_began_wall}
                                  for entry in started.fleet.nginx.access_entries()]
        observations.served_by = started.fleet.served_by()
        observations.instances = {started.fleet.upstream(i): server.name
                                  for i, server in enumerate(started.fleet.instances)}
        observations.unanswered_writes += resent_writes(observations)
    return observations


def unexpected_exits(started: Started) -> list[str]:
    """The processes of the run that ended without being stopped or killed on purpose ("NAME exited with CODE")."""
    if started.fleet is not None:
        return started.fleet.unexpected_exits()
    return [f"{name} exited with {code}" for name, code in
            (("service", started.service.process.poll()), ("relay", started.relay.exited())) if code is not None]


def observe_database(observations: Observations, url: str) -> None:
    """Add the outbox, the unpublished count and the stored keys to the observations."""
    observations.events, observations.unpublished, observations.present = database_state(url)


# --------------------------------------------------------------------------- checks


class Check(NamedTuple):
    name: str
    passed: bool
    detail: str


def _listed(items: list, limit: int = 5) -> str:
    shown = ", ".join(str(item) for item in items[:limit])
    return shown + (f", … ({len(items)} in all)" if len(items) > limit else "")


def check_acknowledged_creates(obs: Observations) -> Check:
    deleted = {(w.event_type.split(".")[0], w.key) for w in obs.writes if w.event_type.endswith(".deleted")}
    # A delete whose outcome the client never learnt (no answer, a proxy's 502) may have removed its target.
    maybe_deleted = {(DELETE_KINDS[r.kind], r.path.rsplit("/", 1)[1]) for r in obs.unanswered_writes
                     if r.kind in DELETE_KINDS}
    created = [(w.event_type.split(".")[0], w.key) for w in obs.writes if w.event_type.endswith(".created")]
    kept = [c for c in created if c not in deleted and c not in maybe_deleted]
    missing = [f"{entity} {key}" for entity, key in kept if key not in obs.present.get(entity, set())]
    counts = Counter(entity for entity, _ in created)
    uncertain = len([c for c in created if c not in deleted and c in maybe_deleted])
    detail = (f"{len(created):,} acknowledged creates ({', '.join(f'{e}: {n:,}' for e, n in sorted(counts.items()))}), "
              f"{len(created) - len(kept) - uncertain:,} of them deleted later"
              + (f", {uncertain} the target of a delete whose answer never came" if uncertain else "")
              + f", the other {len(kept):,} all in the database")
    if missing:
        detail = f"{len(missing)} of {len(kept):,} acknowledged creates not in the database: {_listed(missing)}"
    return Check("every acknowledged create is stored", not missing and bool(created), detail)


def check_acknowledged_deletes(obs: Observations) -> Check:
    deleted = [(w.event_type.split(".")[0], w.key) for w in obs.writes if w.event_type.endswith(".deleted")]
    still_there = [f"{entity} {key}" for entity, key in deleted if key in obs.present.get(entity, set())]
    detail = f"{len(deleted):,} acknowledged deletes, none of them in the database"
    if still_there:
        detail = f"{len(still_there)} of {len(deleted):,} acknowledged deletes still in the database: {_listed(still_there)}"
    return Check("every acknowledged delete is gone", not still_there and bool(deleted), detail)


def check_outbox_matches_writes(obs: Observations) -> Check:
    """One event per acknowledged write; an event beyond them only for a write whose answer never came."""
    expected = Counter((w.event_type, w.key) for w in obs.writes)
    actual = Counter((event_type, key) for _, _, event_type, key in obs.events)
    without_event = expected - actual
    without_write = actual - expected
    extra, allowed = sum(without_write.values()), len(obs.unanswered_writes)
    passed = not without_event and extra <= allowed
    detail = (f"{len(obs.events):,} events for {len(obs.writes):,} acknowledged writes"
              + (f" and {allowed} whose outcome the client never learnt (no answer, a proxy's 502, or resent by "
                 "nginx after reaching an instance)" if allowed else ""))
    if without_event:
        detail += f"; acknowledged writes without their event: {_listed([f'{t} {k}' for t, k in without_event])}"
    if extra > allowed:
        detail += (f"; {extra} events of writes never acknowledged (at most {allowed} allowed): "
                   f"{_listed([f'{t} {k}' for t, k in without_write])}")
    return Check("the outbox has one event per acknowledged write", passed, detail)


def check_relay_drained(obs: Observations) -> Check:
    passed = obs.unpublished == 0
    detail = (f"no event left with published_at IS NULL, {obs.drain_seconds:.1f} s after the load stopped" if passed
              else f"{obs.unpublished} events still unpublished after {obs.drain_seconds:.0f} s")
    return Check("the relay published every event", passed, detail)


def check_every_event_delivered(obs: Observations) -> Check:
    committed = [event_id for event_id, _, _, _ in obs.events]
    received = {d.message_id for d in obs.deliveries}
    missing = [event_id for event_id in committed if event_id not in received]
    unknown = sorted(received - set(committed))
    passed = not missing and not unknown and bool(committed)
    detail = f"{len(committed):,} committed events, each delivered at least once"
    if missing:
        detail = f"{len(missing)} of {len(committed):,} committed events never delivered: {_listed(missing)}"
    if unknown:
        detail += f"; {len(unknown)} messages whose message_id is no committed event: {_listed(unknown)}"
    return Check("the broker delivered every committed event", passed, detail)


def first_deliveries(deliveries: list[Delivery]) -> list[Delivery]:
    seen: set[str] = set()
    firsts = []
    for delivery in deliveries:
        if delivery.message_id not in seen:
            seen.add(delivery.message_id)
            firsts.append(delivery)
    return firsts


def check_in_order(obs: Observations) -> Check:
    firsts = first_deliveries(obs.deliveries)
    out_of_order = []
    last = None
    for delivery in firsts:
        position = delivery.position
        if not isinstance(position, int) or (last is not None and position <= last):
            out_of_order.append(f"{position!r} after {last!r}")
        if isinstance(position, int):
            last = position if last is None else max(last, position)
    duplicates = len(obs.deliveries) - len(firsts)
    detail = (f"{len(firsts):,} first deliveries with strictly increasing positions; {duplicates:,} duplicates "
              f"({sum(d.redelivered for d in obs.deliveries):,} flagged redelivered)")
    if out_of_order:
        detail = f"{len(out_of_order)} first deliveries out of order: {_listed(out_of_order)}"
    return Check("first deliveries in position order", not out_of_order and bool(firsts), detail)


def check_messages_match_rows(obs: Observations) -> Check:
    """Each message's headers, routing key and Avro body say what its outbox row says."""
    from contract.avro import AvroSchemas

    rows = {event_id: (position, event_type, key) for event_id, position, event_type, key in obs.events}
    schemas = AvroSchemas()
    wrong = []
    for delivery in obs.deliveries:
        row = rows.get(delivery.message_id)
        if row is None:
            continue  # counted by check_every_event_delivered
        position, event_type, key = row
        try:
            schema, event = schemas.decode_single_object(delivery.body)
            body = (schema.name, str(event["event_id"]), event["position"], event["type"], event["key"])
        except Exception as error:  # noqa: BLE001 - any undecodable body is a failure
            wrong.append(f"{delivery.message_id}: body does not decode ({error})")
            continue
        if body != ("roomservice.Event", delivery.message_id, position, event_type, key) \
                or delivery.position != position or delivery.routing_key != event_type:
            wrong.append(f"{delivery.message_id}: row {row}, header position {delivery.position!r}, "
                         f"routing key {delivery.routing_key!r}, body {body[2:]}")
    detail = f"{len(obs.deliveries):,} messages: position header, routing key and Avro body match their rows"
    if wrong:
        detail = f"{len(wrong)} messages differ from their rows: {_listed(wrong, 3)}"
    return Check("every message matches its outbox row", not wrong, detail)


def allowed_503(obs: Observations, record: Record) -> bool:
    """A 503 is intended only while the database is stopped (and briefly after), in the optional outage."""
    outage = obs.db_outage
    return bool(outage) and record.status == 503 and outage["at"] <= record.at <= outage["until"] + 15


NOT_RESENT = {"POST", "PATCH"}  # what nginx passes to another instance only if the first never received it


def proxy_attempts(entry: dict) -> list[tuple[str, str, str]]:
    """(instance address, status, connect time) of each instance nginx tried for one request, in order."""
    if not entry["upstream_addr"]:
        return []  # answered by nginx itself (413, 429)
    return list(zip(entry["upstream_addr"].split(", "), entry["upstream_status"].split(", "),
                    entry["upstream_connect_time"].split(", "), strict=False))


def resent_after_reaching(entry: dict) -> bool:
    """Whether nginx sent the request on after an instance had received it (its connection had been made)."""
    return any(connect != "-" for _, _, connect in proxy_attempts(entry)[:-1])


def resent_writes(obs: Observations) -> list[Record]:
    """Writes nginx sent to a second instance after the first had received them: their outcome is unknown."""
    resent = {e["request_id"] for e in obs.proxy_log if resent_after_reaching(e)}
    return [r for r in obs.records if r.kind in WRITE_KINDS and r.request_id in resent]


def in_failure_window(obs: Observations, record: Record, proxied: dict[str, dict]) -> bool:
    """Whether the answer falls in the documented failure window (docs/scaling.md).

    That is a 502 to a POST or PATCH in flight on an instance when it was killed (or sent down one of its
    connections before nginx saw them close): nginx must not send it to another instance, because the
    killed one may have applied it.
    """
    if record.status != 502 or record.method not in NOT_RESENT or record.request_id not in proxied:
        return False
    attempts = proxy_attempts(proxied[record.request_id])
    ended = record.at + record.latency_ms / 1000
    return bool(attempts) and any(
        attempts[-1][0] == kill["upstream"] and record.at <= kill["at"] + KILL_WINDOW_SLACK and ended >= kill["at"]
        for kill in obs.instance_kills)


def split_5xx(obs: Observations) -> tuple[list[Record], Counter]:
    """The 5xx answers outside every intended window, and how many were inside each (by reason)."""
    proxied = {e["request_id"]: e for e in obs.proxy_log}
    failures, intended = [], Counter()
    for record in obs.records:
        if record.status < 500:
            continue
        if allowed_503(obs, record):
            intended["503 during the database outage"] += 1
        elif in_failure_window(obs, record, proxied):
            intended["502 to a POST or PATCH in flight on the killed instance"] += 1
        else:
            failures.append(record)
    return failures, intended


def check_no_5xx(obs: Observations) -> Check:
    failures, intended = split_5xx(obs)
    by_status = Counter(r.status for r in failures)
    detail = "no 5xx answer" + (
        f" (besides {', '.join(f'{n} intended: {why}' for why, n in intended.items())})" if intended else "")
    if failures:
        detail = f"{len(failures)} 5xx answers ({', '.join(f'{s}: {n}' for s, n in sorted(by_status.items()))}), listed below"
    return Check("zero 5xx answers" + (" outside the failure window" if obs.instance_kills else ""), not failures, detail)


def check_failover_only_when_safe(obs: Observations) -> Check:
    """nginx passed a POST or PATCH on only if the first instance never received it; none reached two instances."""
    passed_on = [e for e in obs.proxy_log if len(proxy_attempts(e)) > 1]
    resent = [e for e in passed_on if resent_after_reaching(e)]
    unsafe = [f"{e['method']} {e['uri']} ({e['request_id']}: {e['upstream_addr']}, connect {e['upstream_connect_time']})"
              for e in resent if e["method"] in NOT_RESENT]
    methods = {e["request_id"]: e["method"] for e in obs.proxy_log}
    twice = [f"{methods[rid]} {rid} in {', '.join(names)}" for rid, names in obs.served_by.items()
             if len(names) > 1 and methods.get(rid) in NOT_RESENT]
    by_method = Counter(e["method"] for e in passed_on)
    detail = (f"{len(passed_on):,} requests passed on to another instance "
              f"({', '.join(f'{m} {n:,}' for m, n in sorted(by_method.items())) or 'none'}): "
              f"{len(passed_on) - len(resent):,} after a refused connection, {len(resent):,} after reaching the "
              f"killed instance ({', '.join(sorted({e['method'] for e in resent})) or 'none'}); no POST or PATCH "
              "sent on after reaching an instance, none in two instances' access logs")
    if unsafe or twice:
        detail = "; ".join(filter(None, [
            f"{len(unsafe)} POST/PATCH sent on after an instance had received them: {_listed(unsafe, 3)}" if unsafe else "",
            f"{len(twice)} POST/PATCH in two instances' access logs: {_listed(twice, 3)}" if twice else ""]))
    elif obs.instance_kills and not passed_on:
        detail = "no request was passed on to another instance: the kill did not reach the traffic"
    return Check("nginx sent a request to a second instance only when safe", not unsafe and not twice and bool(passed_on),
                 detail)


def check_killed_instance_back(obs: Observations) -> Check:
    """Each killed instance answered requests through nginx again after its restart."""
    if not obs.instance_kills:
        return Check("the killed instance served again after its restart", False, "no instance was killed")
    details, passed = [], True
    for kill in obs.instance_kills:
        served = [e for e in obs.proxy_log if e["at"] >= kill.get("back_at", math.inf) and e["status"] < 500
                  and proxy_attempts(e) and proxy_attempts(e)[-1][0] == kill["upstream"]]
        passed &= bool(served)
        details.append(f"{kill['name']} killed at {kill['at']:.1f} s, ready again at {kill.get('back_at', math.nan):.1f} s, "
                       f"then answered {len(served):,} requests through nginx")
    return Check("the killed instance served again after its restart", passed, "; ".join(details))


def check_relay_takeover(obs: Observations) -> Check:
    """The killed relay held the publishing turn, and new events were delivered after its death."""
    if not obs.relay_kills:
        return Check("the relay holding the turn was killed and publishing went on", False, "no relay was killed")
    details, passed = [], True
    firsts = first_deliveries(obs.deliveries)
    for kill in obs.relay_kills:
        after = [d for d in firsts if d.at > kill["at"]]
        passed &= kill["held_turn"] and bool(after)
        details.append(f"{kill['name']} killed at {kill['at']:.1f} s "
                       + ("while it held the publishing turn" if kill["held_turn"] else "but it did not hold the turn")
                       + (" in the middle of a batch" if kill.get("mid_batch") else "")
                       + (f"; the next new event was delivered {after[0].at - kill['at']:.2f} s later" if after
                          else "; no new event was delivered after it"))
    return Check("the relay holding the turn was killed and publishing went on", passed, "; ".join(details))


def check_no_failed_connections(obs: Observations) -> Check:
    failures = [r for r in obs.records if r.status == 0]
    detail = "every request was answered" if not failures else (
        f"{len(failures)} requests got no answer: {_listed([f'{r.method} {r.path}: {r.body.decode()}' for r in failures], 3)}")
    return Check("zero failed connections", not failures, detail)


def check_stale_if_match(obs: Observations) -> Check:
    passed = not obs.stale_accepted and obs.stale_attempts > 0
    detail = f"{obs.stale_attempts:,} PATCH/PUT with a stale If-Match, none accepted"
    if obs.stale_accepted:
        detail = f"{len(obs.stale_accepted)} of {obs.stale_attempts:,} stale If-Match accepted: {_listed(obs.stale_accepted, 3)}"
    return Check("a stale If-Match is refused", passed, detail)


def check_pages(obs: Observations) -> Check:
    detail = "no room on two pages of one walk sorted by created_at" if not obs.page_violations else (
        f"{len(obs.page_violations)} walks saw a room twice: {_listed(obs.page_violations, 2)}")
    return Check("paged searches see each room once", not obs.page_violations, detail)


def check_broker_restart(obs: Observations) -> Check:
    restart = obs.broker_restart
    if not restart:
        return Check("the broker restarted mid-load and delivery resumed", False, "the broker was not restarted")
    after = [d for d in first_deliveries(obs.deliveries) if d.at > restart["ready_at"]]
    detail = (f"restarted at {restart['at']:.0f} s ({restart['seconds']:.1f} s down); {len(after):,} events first "
              f"delivered after it, the first {after[0].at - restart['ready_at']:.1f} s after the broker was ready"
              if after else f"restarted at {restart['at']:.0f} s, but no event was first delivered after it")
    return Check("the broker restarted mid-load and delivery resumed", bool(after), detail)


def check_everything_ran(obs: Observations) -> Check:
    problems = obs.process_exits + [crash.strip().splitlines()[-1] for crash in obs.client_crashes]
    detail = ((f"every instance, relay and nginx stayed up but for the {len(obs.instance_kills) + len(obs.relay_kills)} "
               "killed on purpose" if obs.replicas > 1 else "the service and the relay stayed up")
              + "; no client or consumer thread failed") if not problems else _listed(problems)
    return Check("every process and thread ran to the end", not problems, detail)


CHECKS = [check_acknowledged_creates, check_acknowledged_deletes, check_outbox_matches_writes, check_relay_drained,
          check_every_event_delivered, check_in_order, check_messages_match_rows, check_no_5xx,
          check_no_failed_connections, check_stale_if_match, check_pages, check_broker_restart, check_everything_ran]
REPLICA_CHECKS = [check_failover_only_when_safe, check_killed_instance_back, check_relay_takeover]


def run_checks(obs: Observations) -> list[Check]:
    """Every check that applies to the run: the broker restart's if one was planned, the replicas' with --replicas."""
    checks = [check for check in CHECKS if check is not check_broker_restart or obs.expect_broker_restart]
    return [check(obs) for check in checks + (REPLICA_CHECKS if obs.replicas > 1 else [])]


CORRUPTIONS = {
    "lose-create": "delete one acknowledged, never deleted room from the database before the checks",
    "keep-delete": "pretend a room that is still stored was acknowledged as deleted",
    "forget-write": "forget one acknowledged write, so its event has no acknowledged write",
    "drop-delivery": "forget every delivery of one event",
    "reorder": "swap the first deliveries of two events",
    "bad-header": "give one delivery a wrong position header",
    "fake-5xx": "add a 500 answer to the records",
    "fake-stale": "record a stale If-Match as accepted",
}


def corrupt(obs: Observations, names: list[str], url: str) -> None:
    """Damage the observations (or the database) on purpose, to show that the named checks can fail."""
    import sqlalchemy as sa

    deleted = {w.key for w in obs.writes if w.event_type == "room.deleted"}
    for name in names:
        print(f"    corrupting on purpose: {CORRUPTIONS[name]}", flush=True)
        if name == "lose-create":
            victim = next(w.key for w in obs.writes if w.event_type == "room.created" and w.key not in deleted)
            engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
            with engine.begin() as connection:
                connection.execute(sa.text("DELETE FROM rooms WHERE id = :id"), {"id": victim})
            engine.dispose()
        elif name == "keep-delete":
            touched = {w.key for w in obs.writes}
            _, _, present = database_state(url)
            victim = next(key for key in sorted(present["room"]) if key not in touched)
            obs.writes.append(Write("room.deleted", victim, obs.load_seconds))
        elif name == "forget-write":
            obs.writes.pop(len(obs.writes) // 2)
        elif name == "drop-delivery":
            victim = obs.deliveries[len(obs.deliveries) // 2].message_id
            obs.deliveries = [d for d in obs.deliveries if d.message_id != victim]
        elif name == "reorder":
            firsts = first_deliveries(obs.deliveries)
            a, b = firsts[len(firsts) // 3], firsts[len(firsts) // 3 + 1]
            i, j = obs.deliveries.index(a), obs.deliveries.index(b)
            obs.deliveries[i], obs.deliveries[j] = b, a
        elif name == "bad-header":
            i = len(obs.deliveries) // 4
            obs.deliveries[i] = obs.deliveries[i]._replace(position=-1)
        elif name == "fake-5xx":
            obs.records.append(Record("get_room", "GET", "/v1/rooms/corrupted", 500, 1.0, obs.load_seconds,
                                      b'{"title": "Internal Server Error (corrupted on purpose)"}'))
        elif name == "fake-stale":
            obs.stale_accepted.append("PATCH /v1/rooms/corrupted with a stale If-Match answered 200 (on purpose)")


# --------------------------------------------------------------------------- the report


def run_facts() -> dict:
    """The date, the commit and the machine the numbers come from."""
    def command(*args: str) -> str:
        return subprocess.run(args, cwd=PROJECT_ROOT, capture_output=True, text=True, check=False).stdout.strip()

    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": command("git", "rev-parse", "--short=10", "HEAD") or "unknown",
        "dirty": bool(command("git", "status", "--porcelain", "--untracked-files=no")),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


def percentile(sorted_values: list[float], share: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(share * len(sorted_values)) - 1))]


def render_report(options: argparse.Namespace, facts: dict, obs: Observations, checks: list[Check]) -> str:
    passed = sum(check.passed for check in checks)
    verdict = "PASS" if passed == len(checks) else "FAIL"
    seconds = obs.load_seconds or 1.0
    statuses = Counter(r.status for r in obs.records)
    by_kind: dict[str, list[Record]] = defaultdict(list)
    for record in obs.records:
        by_kind[record.kind].append(record)
    firsts = first_deliveries(obs.deliveries)
    restart = obs.broker_restart
    gaps = [b.at - a.at for a, b in itertools.pairwise(obs.deliveries)]
    lines = [
        "# Soak test",
        "",
        f"Latest run: {facts['date']}, commit `{facts['commit']}`{' (with uncommitted changes)' if facts['dirty'] else ''}; "
        f"`bench/soak.py --duration {options.duration}"
        + (f" --rate {options.rate:g}" if options.rate != DEFAULTS['rate'] else "")
        + (f" --threads {options.threads}" if options.threads != DEFAULTS['threads'] else "")
        + (f" --replicas {options.replicas}" if options.replicas > 1 else "")
        + (f" --db-outage {options.db_outage}" if options.db_outage else "")
        + (f" --corrupt {','.join(options.corrupt)}" if options.corrupt else "") + "`: "
        f"{options.threads} client threads "
        + (f"paced to {options.rate:g} req/s in all" if options.rate > 0 else "unpaced")
        + (f", the service (`serve.py`) with {options.workers} workers and the relay (`relay.py`)"
           if options.replicas == 1 else
           f" (each from a loopback address of its own), nginx in front of {options.replicas} service instances "
           f"(`serve.py`, {options.workers} worker{'s' if options.workers > 1 else ''} each) and {options.relays} "
           "relays (`relay.py`)")
        + f" on a throwaway PostgreSQL seeded with {options.rooms:,} rooms and {options.items:,} items"
        + (", RabbitMQ restarted mid-load" if obs.expect_broker_restart else "")
        + ("; one instance killed (SIGKILL) and started again, the relay holding the publishing turn killed and "
           "started again" if options.replicas > 1 else "") + "; "
        f"{facts['cores']} cores, load average {facts['load_average']} before the run. Made by `make soak` "
        "(see docs/operations.md, The soak test).",
        "",
        f"**Result: {verdict}** ({passed} of {len(checks)} checks passed)",
        "",
        "| check | result | detail |",
        "| --- | --- | --- |",
        *[f"| {c.name} | {'PASS' if c.passed else '**FAIL**'} | {c.detail} |" for c in checks],
        "",
        "## Load",
        "",
        f"{len(obs.records):,} requests in {seconds:.0f} s: {len(obs.records) / seconds:.0f} req/s. By status: "
        + ", ".join(f"{s if s else 'no answer'}: {n:,}" for s, n in sorted(statuses.items())) + "."
        + (" A 404 is a read or update of a room or item another client had just deleted." if statuses[404] else "")
        + (" A 412 is a stale If-Match: on purpose in `*_stale`, otherwise another client changed the entity "
           "between the read and the write." if statuses[412] else "")
        + (f" {obs.key_retries} creates were sent again with their Idempotency-Key after an answer that left their "
           "outcome unknown (`retry_*`)." if obs.key_retries else ""),
        "",
        "| request | count | statuses | p50 ms | p99 ms | max ms |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for kind in sorted(by_kind, key=lambda k: -len(by_kind[k])):
        records = by_kind[kind]
        latencies = sorted(r.latency_ms for r in records)
        kind_statuses = ", ".join(f"{s if s else 'no answer'} ×{n:,}" for s, n in sorted(Counter(r.status for r in records).items()))
        lines.append(f"| `{kind}` | {len(records):,} | {kind_statuses} | {percentile(latencies, 0.5):.1f} | "
                     f"{percentile(latencies, 0.99):.1f} | {latencies[-1]:.1f} |")
    all_latencies = sorted(r.latency_ms for r in obs.records)
    if all_latencies:
        lines.append(f"| all | {len(obs.records):,} | | {percentile(all_latencies, 0.5):.1f} | "
                     f"{percentile(all_latencies, 0.99):.1f} | {all_latencies[-1]:.1f} |")
    lines += [
        "",
        "## Events",
        "",
        f"{len(obs.events):,} events committed; {len(obs.deliveries):,} deliveries of {len(firsts):,} distinct events, "
        f"{len(obs.deliveries) - len(firsts):,} duplicates ({sum(d.redelivered for d in obs.deliveries):,} flagged "
        f"redelivered by the broker); the consumer reconnected {obs.consumer_reconnects} time(s). "
        f"Relay log: {facts.get('relay_retries', 0)} 'broker unavailable' retries"
        + (f", {facts.get('relay_db_retries', 0)} 'database unavailable'" if obs.db_outage else "") + ". "
        f"Everything was published and received {obs.drain_seconds:.1f} s after the load stopped.",
        "",
    ]
    if restart:
        after = [d for d in firsts if d.at > restart["ready_at"]]
        lines.append(
            f"Broker restart at {restart['at']:.1f} s into the load: stopped and started again in "
            f"{restart['seconds']:.1f} s (graceful stop, then until it accepted AMQP connections)"
            + (f"; the first new event arrived {after[0].at - restart['ready_at']:.1f} s after that "
               "(the relay's backoff)" if after else "")
            + (f"; the longest gap between two deliveries was {max(gaps):.1f} s." if gaps else ".")
        )
        lines.append("")
    if obs.db_outage:
        outage = obs.db_outage
        during = [r for r in obs.records if outage["at"] <= r.at <= outage["until"] + 15]
        recovered = next((r.at for r in obs.records if r.at > outage["until"] and 200 <= r.status < 300
                          and r.kind != "search_questions"), None)
        lines += [f"Database outage from {outage['at']:.1f} s to {outage['until']:.1f} s: "
                  + ", ".join(f"{s}: {n}" for s, n in sorted(Counter(r.status for r in during).items()))
                  + " in that window (and 15 s after)"
                  + (f"; the first 2xx after it {recovered - outage['until']:.1f} s after PostgreSQL was back."
                     if recovered else "; no 2xx after it."), ""]
    if obs.replicas > 1:
        lines += replicas_section(obs)
    failures, _ = split_5xx(obs)
    if failures:
        def cell(record: Record) -> str:
            return (record.body or b"").decode(errors="replace").replace("|", "\\|").replace("\n", " ")[:300]

        groups: dict[tuple[int, str], list[Record]] = defaultdict(list)
        for record in failures:
            groups[record.status, cell(record)].append(record)
        lines += ["## 5xx answers", "", "Grouped by status and body:", "",
                  "| status | count | from s | to s | requests | body |", "| ---: | ---: | ---: | ---: | --- | --- |"]
        for (status, body), records in sorted(groups.items(), key=lambda item: -len(item[1])):
            kinds = ", ".join(f"`{k}` {n}" for k, n in Counter(r.kind for r in records).most_common())
            lines.append(f"| {status} | {len(records):,} | {records[0].at:.1f} | {records[-1].at:.1f} | {kinds} | {body} |")
        lines += ["", f"The first {min(len(failures), 20)} of them:", "", "| at s | request | status |",
                  "| ---: | --- | ---: |"]
        lines += [f"| {r.at:.1f} | `{r.method} {r.path}` | {r.status} |" for r in failures[:20]]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def replicas_section(obs: Observations) -> list[str]:
    """The report's part on the instances behind nginx, the kills and what nginx did about them."""
    served = Counter(obs.instances.get(attempts[-1][0], attempts[-1][0]) if (attempts := proxy_attempts(e)) else "nginx itself"
                     for e in obs.proxy_log)
    lines = ["## Replicas", "",
             f"nginx logged {len(obs.proxy_log):,} requests; answered by "
             + ", ".join(f"{name}: {n:,}" for name, n in sorted(served.items())) + "."]
    _, intended = split_5xx(obs)
    for kill in obs.instance_kills:
        passed_on = [e for e in obs.proxy_log if len(proxy_attempts(e)) > 1
                     and any(address == kill["upstream"] for address, _, _ in proxy_attempts(e)[:-1])]
        reached = Counter(e["method"] for e in passed_on if resent_after_reaching(e))
        refused = Counter(e["method"] for e in passed_on if not resent_after_reaching(e))
        lines += ["", f"{kill['name']} was killed at {kill['at']:.1f} s (SIGKILL to its process group) and was ready "
                  f"again at {kill.get('back_at', math.nan):.1f} s. nginx passed {len(passed_on):,} requests meant "
                  "for it to another instance: "
                  + (", ".join(f"{m} {n}" for m, n in sorted(refused.items())) or "none")
                  + " after a refused connection (never received, so any method may move), "
                  + (", ".join(f"{m} {n}" for m, n in sorted(reached.items())) or "none")
                  + " after it had received them and died (idempotent methods only). "
                  f"{intended['502 to a POST or PATCH in flight on the killed instance']} POST or PATCH in flight on it "
                  "were answered 502 (the failure window: nginx does not resend them, and they may or may not "
                  "have been applied)."]
    for kill in obs.relay_kills:
        firsts = [d for d in first_deliveries(obs.deliveries) if d.at > kill["at"]]
        seen: set[str] = set()
        again = 0
        for delivery in obs.deliveries:
            if delivery.message_id in seen and kill["at"] <= delivery.at <= kill["at"] + 10:
                again += 1
            seen.add(delivery.message_id)
        lines += ["", f"{kill['name']} was killed at {kill['at']:.1f} s"
                  + (" while it held the publishing turn" if kill["held_turn"] else "")
                  + (" in the middle of a batch (claimed, being published, not yet marked)" if kill.get("mid_batch") else "")
                  + f" and started again at {kill.get('back_at', math.nan):.1f} s; "
                  + (f"the next new event was delivered {firsts[0].at - kill['at']:.2f} s after the kill" if firsts
                     else "no new event was delivered after it")
                  + f", and {again} duplicates arrived in the 10 s after it (a batch published but not yet marked "
                  "is published again by the relay that takes the turn)."]
    return lines + [""]


def save_raw(obs: Observations) -> None:
    """Every request and delivery as JSON lines in the log folder, to look into a tail or a gap after the run."""
    with gzip.open(LOG_DIR / "requests.jsonl.gz", "wt") as out:
        for r in obs.records:
            out.write(json.dumps({"at": round(r.at, 4), "kind": r.kind, "method": r.method, "path": r.path,
                                  "status": r.status, "ms": round(r.latency_ms, 3), "request_id": r.request_id}) + "\n")
    with gzip.open(LOG_DIR / "deliveries.jsonl.gz", "wt") as out:
        for d in obs.deliveries:
            out.write(json.dumps({"at": round(d.at, 4), "message_id": d.message_id, "position": d.position,
                                  "routing_key": d.routing_key, "redelivered": d.redelivered}) + "\n")


def history_line(options: argparse.Namespace, facts: dict, obs: Observations, checks: list[Check]) -> str:
    failed = [c.name for c in checks if not c.passed]
    restart = f"{obs.broker_restart['seconds']:.1f}" if obs.broker_restart else "—"
    return (f"| {facts['date']} | `{facts['commit']}`{'+' if facts['dirty'] else ''} | {obs.load_seconds:.0f} | "
            f"{len(obs.records):,} | {len(obs.records) / (obs.load_seconds or 1):.0f} | {len(obs.events):,} | "
            f"{len(obs.deliveries) - len(first_deliveries(obs.deliveries)):,} | {restart} | "
            f"{'PASS' if not failed else 'FAIL: ' + '; '.join(failed)}"
            f"{f' (--replicas {obs.replicas}: {len(checks)} checks)' if obs.replicas > 1 else ''} |")


def with_history(report: str, previous: str, line: str) -> str:
    """The new report followed by the run history: the previous file's lines and this run's."""
    kept = []
    if HISTORY_HEADING in previous:
        kept = [ln for ln in previous.split(HISTORY_HEADING, 1)[1].splitlines() if re.match(r"\| \d{4}-", ln)]
    return (report + "\n" + HISTORY_HEADING + "\n\nOne line per run (`+` after the commit: uncommitted changes).\n\n"
            "| date | commit | load s | requests | req/s | events | duplicates | broker restart s | result |\n"
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n" + "\n".join([*kept, line]) + "\n")


# --------------------------------------------------------------------------- main


DEFAULTS = {"duration": 300, "threads": 6, "rate": 150.0}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--duration", type=int, default=DEFAULTS["duration"], help="seconds of load")
    parser.add_argument("--threads", type=int, default=DEFAULTS["threads"], help="client threads")
    parser.add_argument("--rate", type=float, default=DEFAULTS["rate"],
                        help="requests per second of all clients together (0: as fast as they can)")
    parser.add_argument("--max-requests", type=int, default=500_000, help="stop the load after this many requests")
    parser.add_argument("--restart-at", type=float, default=0.5,
                        help="restart the broker at this share of the load (0: not at all)")
    parser.add_argument("--db-outage", type=int, default=0, metavar="SECONDS",
                        help="also stop PostgreSQL for this long at 3/4 of the load (off: 0); 503s are allowed "
                             "then only, for services that answer 503 while the database is away")
    parser.add_argument("--workers", type=int, default=2, help="service worker processes (APP_WORKERS), per instance")
    parser.add_argument("--replicas", type=int, default=1,
                        help="service instances; from 2 on, behind nginx with --relays relays, one instance killed "
                             "and restarted and the publishing relay killed and restarted mid-load")
    parser.add_argument("--relays", type=int, default=2, help="relays with --replicas")
    parser.add_argument("--kill-at", type=float, default=0.3,
                        help="with --replicas: SIGKILL the first instance at this share of the load")
    parser.add_argument("--down-for", type=float, default=3.0,
                        help="with --replicas: seconds before the killed instance is started again")
    parser.add_argument("--relay-kill-at", type=float, default=0.65,
                        help="with --replicas: SIGKILL the relay holding the publishing turn at this share of the load")
    parser.add_argument("--nginx-rate", type=int, default=50, help="with --replicas: nginx's requests/s per client address")
    parser.add_argument("--nginx-burst", type=int, default=100, help="with --replicas: nginx's burst per client address")
    parser.add_argument("--nginx-workers", type=int, default=2, help="with --replicas: nginx worker processes")
    parser.add_argument("--rooms", type=int, default=2_000, help="rooms to seed")
    parser.add_argument("--items", type=int, default=500, help="items to seed")
    parser.add_argument("--drain-timeout", type=int, default=120,
                        help="seconds to wait after the load for every event to be published and received")
    parser.add_argument("--seed", type=int, default=7, help="seed of the clients' random choices")
    parser.add_argument("--corrupt", type=lambda text: [name for name in text.split(",") if name], default=[],
                        help="damage the observations on purpose to see checks fail (comma-separated): "
                             + "; ".join(f"{name}: {what}" for name, what in CORRUPTIONS.items()))
    parser.add_argument("--output", type=Path, default=REPORT_FILE, help="markdown report")
    options = parser.parse_args(argv)
    unknown = [name for name in options.corrupt if name not in CORRUPTIONS]
    if unknown:
        parser.error(f"unknown --corrupt {', '.join(unknown)}; choose from {', '.join(CORRUPTIONS)}")
    if options.duration < 10 or options.threads < 1 or not 0 <= options.restart_at < 1:
        parser.error("--duration must be at least 10, --threads at least 1 and --restart-at between 0 and 1")
    if options.replicas < 1 or options.relays < 1 or not 0 < options.kill_at < options.relay_kill_at < 1:
        parser.error("--replicas and --relays must be at least 1, and 0 < --kill-at < --relay-kill-at < 1")
    if options.replicas > 1 and options.threads > 200:
        parser.error("--threads: at most 200 with --replicas (one loopback address each, 127.0.0.10 on)")
    options.output = options.output.resolve()
    return options


def main(argv: list[str] | None = None) -> int:
    """Run the soak, write the report, and stop everything that was started, also on failure or Ctrl-C."""
    options = parse_args(argv)
    started = Started()
    with exit_on_signals():
        try:
            return run(options, started)
        finally:
            print("stopping everything the soak started ...", flush=True)
            started.stop_all()


if __name__ == "__main__":
    sys.exit(main())

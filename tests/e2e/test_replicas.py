"""The scale-out proof, short: two service instances behind nginx and two relays, under load and faults; and
what nginx does, by method, with a request in flight on a replica that dies.

The soak's replicas mode (`make soak SOAK_ARGS="--replicas 2"`, bench/soak.py and bench/replicas.py) in
about 20 s of load instead of 5 minutes, on the suite's PostgreSQL (a database of its own) and RabbitMQ
(an exchange and queue of its own), without the broker restart: two `python serve.py` instances with one
worker each (the soak runs two each) behind nginx running deploy/nginx/rooms.conf.template, two relays
taking turns, four clients each from a loopback address of its own sending creates (half of them with an
Idempotency-Key, sent again while their outcome is unknown), PATCH/PUT with If-Match, deletes, reads and
paged searches. A fifth into the load one instance is killed with SIGKILL (its whole process group) and
started again 2 s later; later the relay holding the publishing turn is killed and started again. Then
every check of the soak must pass, among them: every acknowledged write is stored, every committed event
delivered at least once and in order, nginx passed a POST or PATCH to another instance only when the first
never received it and none reached two instances, and no 5xx but a 502 to a POST or PATCH that was in
flight on the killed instance (docs/scaling.md, the failure window).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from bench import soak
from bench.replicas import with_application_name
from bench.run import seed_database, stepper
from providers.database import migrate
from providers.sql_events import OUTBOX_LOCK_KEY
from tests.conftest import API_KEY
from tests.support.factories import new_room
from tests.support.nginx import ThrowawayNginx
from tests.support.postgres import scratch_database
from tests.support.serve_process import ServeProcess

SHORT_RUN = ["--replicas", "2", "--workers", "1", "--relays", "2", "--duration", "20", "--threads", "4",
             "--rate", "80", "--restart-at", "0", "--kill-at", "0.2", "--down-for", "2", "--relay-kill-at", "0.6",
             "--rooms", "200", "--items", "100", "--drain-timeout", "60", "--nginx-workers", "1"]


@pytest.fixture
def replicas_database(postgres_admin_url: str) -> Iterator[str]:
    """A migrated PostgreSQL database of its own."""
    with scratch_database(postgres_admin_url, "rooms_replicas") as url:
        migrate(url, configure_logging=False)
        yield url


def test_two_instances_behind_nginx_and_two_relays_lose_nothing_when_an_instance_and_the_publishing_relay_are_killed(
        replicas_database, rabbitmq_url, tmp_path):
    options = soak.parse_args(SHORT_RUN)
    room_ids = seed_database(replicas_database, rooms=options.rooms, items=options.items, seed=options.seed)
    _, _, seeded = soak.database_state(replicas_database)
    token = secrets.token_hex(4)
    exchange, queue = f"replicas-{token}.events", f"replicas-{token}.every-event"
    started = soak.Started()
    try:
        observations = soak.drive(options, started, stepper(), database_url=replicas_database, amqp_url=rabbitmq_url,
                                  room_ids=room_ids, item_ids=sorted(seeded["item"], key=int), log_dir=tmp_path,
                                  exchange=exchange, queue=queue)
    finally:
        started.stop_all()
        soak.delete_queue(rabbitmq_url, exchange, queue)
    soak.observe_database(observations, replicas_database)

    checks = soak.run_checks(observations)
    report = soak.render_report(options, soak.run_facts(), observations, checks)
    assert [check.name for check in checks if not check.passed] == [], report
    # The faults reached the traffic and the publisher (the checks require it too; said here in so many words).
    assert observations.instance_kills and observations.relay_kills[0]["held_turn"], report
    assert any(len(soak.proxy_attempts(entry)) > 1 for entry in observations.proxy_log), report
    assert len(observations.writes) > 200 and len(observations.deliveries) >= len(observations.events) > 200, report


# --------------------------------------------------------------------------- what nginx does with a request
# in flight on a replica that dies, by method: made certain rather than left to timing. The test holds the
# outbox's advisory lock, so every write blocks just before its commit; it finds in pg_locks which replica's
# transaction is waiting, kills that replica, and then lets the writes go on.


class Pair:
    """Two serve.py replicas (one worker each, told apart in pg_stat_activity) behind nginx."""

    def __init__(self, database_url: str, log_dir: Path) -> None:
        self.database_url = database_url
        self.replicas = {name: ServeProcess(with_application_name(database_url, name), log_dir / f"{name}.log",
                                            APP_LOG_FORMAT="json") for name in ("service-a", "service-b")}
        self.nginx: ThrowawayNginx | None = None
        self.engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)

    def waiting(self) -> set[str]:
        """The replicas with a transaction waiting for a lock right now."""
        with self.engine.connect() as connection:
            return set(connection.execute(sa.text(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE NOT l.granted AND a.application_name LIKE 'service-%'")).scalars())

    def wait_until_waiting(self, names: set[str], timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not names <= self.waiting():
            assert time.monotonic() < deadline, f"no transaction of {names} waited for the lock"
            time.sleep(0.02)


@pytest.fixture
def pair(replicas_database: str, tmp_path: Path) -> Iterator[Pair]:
    """Two replicas and nginx, all stopped afterwards."""
    pair = Pair(replicas_database, tmp_path)
    with ExitStack() as stack:
        for replica in pair.replicas.values():
            stack.enter_context(replica)
        pair.nginx = stack.enter_context(ThrowawayNginx([f"127.0.0.1:{r.port}" for r in pair.replicas.values()]))
        yield pair
    pair.engine.dispose()


def send_in_background(method: str, url: str, **arguments) -> tuple[threading.Thread, dict]:
    """Send the request from a thread; its answer (or error) lands in the returned dict."""
    outcome: dict = {}

    def send() -> None:
        try:
            outcome["answer"] = httpx.request(method, url, timeout=30, **arguments)
        except httpx.HTTPError as error:
            outcome["error"] = error

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread, outcome


class OutboxHeld:
    """A session holding the outbox's advisory lock: every write waits just before its commit until `release`."""

    def __init__(self, database_url: str) -> None:
        self.engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
        self.connection = self.engine.connect()
        self.connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": OUTBOX_LOCK_KEY})

    def release(self) -> None:
        """Let the waiting writes go on (and close the session)."""
        if not self.connection.closed:
            self.connection.close()
        self.engine.dispose()


@pytest.fixture
def hold_outbox(pair: Pair) -> Iterator:
    """Call it to hold the outbox's lock; released at the latest when the test ends."""
    held: list[OutboxHeld] = []

    def hold() -> OutboxHeld:
        held.append(OutboxHeld(pair.database_url))
        return held[-1]

    yield hold
    for lock in held:
        lock.release()


def test_a_post_in_flight_on_a_replica_that_dies_gets_502_and_is_never_sent_to_the_other(pair, hold_outbox):
    room = new_room()
    outbox = hold_outbox()
    thread, outcome = send_in_background("POST", f"{pair.nginx.url}/v1/rooms", json=room,
                                         headers={"X-API-Key": API_KEY, "X-Request-ID": "post-in-flight"})
    deadline = time.monotonic() + 15
    while not (waiting := pair.waiting()):
        assert time.monotonic() < deadline, "the POST never reached its commit"
        time.sleep(0.02)
    (receiver,) = waiting
    pair.replicas[receiver].process.kill()  # SIGKILL: one worker, one process
    thread.join(timeout=30)
    outbox.release()

    answer = outcome["answer"]
    assert answer.status_code == 502
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert answer.json()["request_id"] == "post-in-flight"
    (entry,) = [e for e in pair.nginx.access_entries() if e["request_id"] == "post-in-flight"]
    assert entry["upstream_addr"] == f"127.0.0.1:{pair.replicas[receiver].port}"  # one attempt, no other
    (survivor,) = set(pair.replicas) - {receiver}
    assert "post-in-flight" not in pair.replicas[survivor].output()
    # The dead replica's transaction rolled back once it got the lock and found its client gone.
    with pair.engine.connect() as connection:
        deadline = time.monotonic() + 10
        while connection.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"),
                                 {"name": receiver}).scalar_one():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert connection.execute(sa.text("SELECT count(*) FROM rooms WHERE url = :url"), {"url": room["url"]}).scalar_one() == 0


def test_a_put_in_flight_on_a_replica_that_dies_is_sent_to_the_other_and_applied_once(pair, hold_outbox):
    created = httpx.post(f"{pair.replicas['service-a'].url}/v1/items", json={"name": "Lamp"},
                         headers={"X-API-Key": API_KEY})
    assert created.status_code == 201, created.text
    outbox = hold_outbox()
    item_id, etag = created.json()["id"], created.headers["ETag"]
    thread, outcome = send_in_background(
        "PUT", f"{pair.nginx.url}/v1/items/{item_id}", json={"name": "Desk lamp"},
        headers={"X-API-Key": API_KEY, "If-Match": etag, "X-Request-ID": "put-in-flight"})
    deadline = time.monotonic() + 15
    while not (waiting := pair.waiting()):
        assert time.monotonic() < deadline, "the PUT never reached its commit"
        time.sleep(0.02)
    (receiver,) = waiting
    (survivor,) = set(pair.replicas) - {receiver}
    pair.replicas[receiver].process.kill()
    # nginx sends it to the other replica, whose transaction waits behind the dead one's row lock.
    pair.wait_until_waiting({survivor})
    outbox.release()
    thread.join(timeout=30)

    answer = outcome["answer"]
    assert answer.status_code == 200, answer.text  # the first attempt never committed: this one applied it
    assert answer.json()["name"] == "Desk lamp" and answer.headers["ETag"] != etag
    (entry,) = [e for e in pair.nginx.access_entries() if e["request_id"] == "put-in-flight"]
    addresses = [f"127.0.0.1:{pair.replicas[name].port}" for name in (receiver, survivor)]
    assert entry["upstream_addr"] == ", ".join(addresses)
    assert entry["upstream_connect_time"].split(", ")[0] != "-"  # the first replica had received it
    assert soak.resent_after_reaching(entry)
    with pair.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM events WHERE type = 'item.updated' AND key = :id"),
                                  {"id": str(item_id)}).scalar_one() == 1

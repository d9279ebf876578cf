"""The scale-out proof, short: two service instances behind nginx and two relays, under load and faults.

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
from collections.abc import Iterator

import pytest

from bench import soak
from bench.run import seed_database, stepper
from providers.database import migrate
from tests.postgres import scratch_database

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
    assert len(observations.writes) > 300 and len(observations.deliveries) >= len(observations.events) > 300, report

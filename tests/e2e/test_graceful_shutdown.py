"""SIGTERM to `python serve.py` mid-burst: every acknowledged write is stored, long polls answer at once, exit 0 in time.

The production entry point runs as it would in a container (uvicorn, its worker processes, a PostgreSQL
database of its own that it migrates itself), and the test is its client and its orchestrator. Below it,
the two pieces that make long polls answer at once, each on its own.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import orjson
import pytest
import sqlalchemy as sa

from providers.availability import Stopping
from providers.sql_events import SqlEventFeed
from tests.conftest import API_KEY
from tests.support.factories import new_room
from tests.support.postgres import scratch_database
from tests.support.serve_process import ServeProcess
from web.availability import stopping_on_signals

GRACEFUL_SECONDS = 8
LONG_POLL_SECONDS = 25  # longer than the graceful timeout: only an early answer lets the process stop in time
SENDERS = 12
SIGTERM_AFTER_ACKNOWLEDGED = 40


@pytest.fixture
def shutdown_database(postgres_admin_url: str) -> Iterator[str]:
    """An empty PostgreSQL database of its own (the server migrates it at start-up, as in production)."""
    with scratch_database(postgres_admin_url, "rooms_shutdown") as url:
        yield url


@dataclass
class Burst:
    """What the clients sent and what became of each write, by room url."""

    acknowledged: dict[str, float] = field(default_factory=dict)  # url -> when its 201 arrived
    refused: set[str] = field(default_factory=set)  # no connection: never reached the server
    unanswered: set[str] = field(default_factory=set)  # sent, but the connection ended without an answer
    other_answers: dict[str, int] = field(default_factory=dict)  # url -> any status but 201
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def sent(self) -> set[str]:
        return set(self.acknowledged) | self.refused | self.unanswered | set(self.other_answers)


def send_until_the_server_goes(base_url: str, burst: Burst, give_up: threading.Event) -> None:
    """POST rooms one after another on one keep-alive connection until a request gets no answer."""
    with httpx.Client(base_url=base_url, timeout=30, headers={"X-API-Key": API_KEY}) as client:
        while not give_up.is_set():
            room = new_room()
            url = room["url"]
            try:
                response = client.post("/v1/rooms", json=room)
            except httpx.ConnectError:
                with burst.lock:
                    burst.refused.add(url)
                return
            except httpx.TransportError:
                with burst.lock:
                    burst.unanswered.add(url)
                return
            with burst.lock:
                if response.status_code == 201:
                    burst.acknowledged[url] = time.monotonic()
                else:
                    burst.other_answers[url] = response.status_code


def stored(url: str) -> tuple[set[str], int]:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        urls = set(connection.execute(sa.text("SELECT url FROM rooms")).scalars())
        events = connection.execute(sa.text("SELECT count(*) FROM events WHERE type = 'room.created'")).scalar_one()
    engine.dispose()
    return urls, events


@pytest.mark.parametrize("workers", [1, 2], ids=["one-worker", "two-workers"])
def test_sigterm_mid_burst_keeps_every_acknowledged_write_wakes_long_polls_and_exits_0(
        shutdown_database, tmp_path, workers):
    server = ServeProcess(shutdown_database, tmp_path / "serve.log", APP_WORKERS=str(workers),
                          APP_GRACEFUL_SHUTDOWN_SECONDS=str(GRACEFUL_SECONDS))
    with server:
        base_url, process = server.url, server.process
        # A duplicate write: the worker logs its 409 at INFO, through the logging serve.py sets up in every worker.
        duplicate = new_room()
        assert httpx.post(f"{base_url}/v1/rooms", json=duplicate, headers={"X-API-Key": API_KEY}).status_code == 201
        assert httpx.post(f"{base_url}/v1/rooms", json=duplicate, headers={"X-API-Key": API_KEY}).status_code == 409

        long_poll: dict[str, object] = {}

        def poll() -> None:
            # No question is ever deleted here, so only the shutdown can end this wait early.
            try:
                response = httpx.get(f"{base_url}/v1/events", timeout=LONG_POLL_SECONDS + 15,
                                     params={"type": "question.deleted", "wait": LONG_POLL_SECONDS})
            except httpx.TransportError as error:
                long_poll.update(status=repr(error), at=time.monotonic())
                return
            long_poll.update(status=response.status_code, body=response.text, at=time.monotonic())

        poller = threading.Thread(target=poll)
        poller.start()
        burst, give_up = Burst(), threading.Event()
        senders = [threading.Thread(target=send_until_the_server_goes, args=(base_url, burst, give_up))
                   for _ in range(SENDERS)]
        for sender in senders:
            sender.start()
        deadline = time.monotonic() + 30
        while len(burst.acknowledged) < SIGTERM_AFTER_ACKNOWLEDGED and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(burst.acknowledged) >= SIGTERM_AFTER_ACKNOWLEDGED, server.output()
        assert poller.is_alive(), "the long poll answered before the shutdown"

        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        exit_code = process.wait(timeout=GRACEFUL_SECONDS + 10)
        exited = time.monotonic()
        give_up.set()
        for sender in senders:
            sender.join(timeout=30)
        poller.join(timeout=30)
        output = server.output()

    assert exit_code == 0, output
    assert exited - signalled < GRACEFUL_SECONDS, output  # done before uvicorn would cut requests short
    assert "Traceback" not in output and "timeout graceful shutdown exceeded" not in output, output
    assert output.count("Application shutdown complete") == workers, output  # each worker's lifespan closed its pool
    assert re.search(r"INFO web\.problems \[[0-9a-f-]+\] 409 Conflict: Room ", output), output

    # The long poll answered at once, with what it had (nothing), long before its wait was over.
    assert long_poll.get("status") == 200, output
    assert orjson.loads(long_poll["body"])["data"] == []
    assert long_poll["at"] - signalled < GRACEFUL_SECONDS / 2

    # No error answers; requests in flight at the signal were finished, not dropped.
    assert burst.other_answers == {}
    assert any(at > signalled for at in burst.acknowledged.values()), "no request was in flight at the signal"
    # Every acknowledged write is stored; anything else stored was sent but never answered.
    urls, events = stored(shutdown_database)
    urls.discard(duplicate["url"])
    assert set(burst.acknowledged) <= urls
    assert urls <= set(burst.acknowledged) | burst.unanswered
    assert urls <= burst.sent
    assert events == len(urls) + 1


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_a_long_poll_answers_at_once_when_the_process_starts_stopping(engine):
    stopping = Stopping()
    feed = SqlEventFeed(engine, stopping)
    answered: dict[str, float] = {}

    def poll() -> None:
        began = time.monotonic()
        answered["events"] = len(feed.read(0, 10, wait_seconds=20))
        answered["after"] = time.monotonic() - began

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.3)
    assert poller.is_alive()  # still waiting for an event
    stopping.set()
    poller.join(timeout=5)
    assert answered == {"events": 0, "after": pytest.approx(0.3, abs=0.25)}
    # Once stopping, a new long poll does not wait at all.
    began = time.monotonic()
    assert feed.read(0, 10, wait_seconds=20) == []
    assert time.monotonic() - began < 0.2


def test_the_stop_signal_sets_stopping_and_still_reaches_the_server_handler():
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda number, _frame: received.append(number))
    try:
        server_handler = signal.getsignal(signal.SIGTERM)
        stopping = Stopping()
        with stopping_on_signals(stopping):
            assert signal.getsignal(signal.SIGTERM) is not server_handler
            os.kill(os.getpid(), signal.SIGTERM)
            deadline = time.monotonic() + 2
            while not received and time.monotonic() < deadline:
                time.sleep(0.01)
        assert stopping.is_set() and received == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is server_handler  # given back when the app stops serving
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_the_default_action_of_a_signal_is_left_alone():
    # With no server handler in place (the default action: terminate), there is nothing to wrap.
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with stopping_on_signals(Stopping()):
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, previous)

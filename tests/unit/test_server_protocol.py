"""The httptools protocol serve.py runs: the request head bounded in size and time, bad HTTP answered as a problem.

Built on uvicorn's HttpToolsProtocol (web/server_protocol.py); these tests drive it with a fake transport,
so they fail if an uvicorn upgrade moves the callbacks it overrides.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from web.server_protocol import BoundedHttpToolsProtocol


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False
        self.reading = True

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name, default=None):
        return {"sockname": ("127.0.0.1", 9090), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading


async def ok_app(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
def connection():
    loop = asyncio.new_event_loop()
    config = Config(ok_app, h11_max_incomplete_event_size=4096, lifespan="off")
    config.load()
    protocol = BoundedHttpToolsProtocol(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    transport = FakeTransport()
    protocol.connection_made(transport)
    yield loop, protocol, transport
    protocol.connection_lost(None)
    loop.close()


HEAD_TIMEOUT = 0.2
BODY_TIMEOUT = 0.3


@pytest.fixture
def timed():
    """A connection factory with short read timeouts (the head's 0.2 s, the body's 0.3 s) and a 5 s keep-alive."""
    loop = asyncio.new_event_loop()
    protocols = []

    def connect(app=ok_app) -> tuple[BoundedHttpToolsProtocol, FakeTransport]:
        config = Config(app, lifespan="off", timeout_keep_alive=5)
        config.load()
        protocol = BoundedHttpToolsProtocol(config=config, server_state=ServerState(), app_state={}, _loop=loop,
                                            head_timeout=HEAD_TIMEOUT, body_timeout=BODY_TIMEOUT)
        transport = FakeTransport()
        protocol.connection_made(transport)
        protocols.append(protocol)
        return protocol, transport

    def wait(seconds: float) -> None:
        loop.run_until_complete(asyncio.sleep(seconds))

    yield connect, wait
    for protocol in protocols:
        protocol.connection_lost(None)
    loop.close()


def answer(transport: FakeTransport) -> tuple[bytes, dict]:
    head, _, body = transport.written.partition(b"\r\n\r\n")
    return head, orjson.loads(body)


def test_a_request_head_over_the_limit_is_431_and_the_connection_closed(connection):
    _loop, protocol, transport = connection
    protocol.data_received(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")
    for _ in range(10):
        protocol.data_received(b"X-Filler: " + b"a" * 1000 + b"\r\n")
    head, problem = answer(transport)
    assert head.startswith(b"HTTP/1.1 431 ") and b"content-type: application/problem+json" in head
    assert problem["status"] == 431 and "4096 bytes" in problem["detail"] and problem["request_id"]
    assert transport.closed


def test_a_head_within_the_limit_reaches_the_app_and_so_does_the_next_one(connection):
    loop, protocol, transport = connection
    for _ in range(3):  # keep-alive: each request's head is counted on its own
        protocol.data_received(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * 3000 + b"\r\n\r\n")
        loop.run_until_complete(asyncio.sleep(0.01))
    assert transport.written.count(b"HTTP/1.1 200 OK") == 3 and not transport.closed


def test_a_request_the_parser_refuses_is_a_400_problem(connection):
    _loop, protocol, transport = connection
    protocol.data_received(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n")
    head, problem = answer(transport)
    assert head.startswith(b"HTTP/1.1 400 ") and problem["title"] == "Bad Request" and problem["request_id"]


def test_a_body_that_arrives_with_its_head_does_not_count_as_head(connection):
    loop, protocol, transport = connection
    body = b"x" * 20_000
    protocol.data_received(b"POST /v1/items HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    loop.run_until_complete(asyncio.sleep(0.01))
    assert transport.written.startswith(b"HTTP/1.1 200 OK"), transport.written[:200]


def test_a_whole_head_over_the_limit_in_one_read_is_431(connection):
    _loop, protocol, transport = connection
    protocol.data_received(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10_000 + b"\r\n\r\n")
    head, problem = answer(transport)
    assert head.startswith(b"HTTP/1.1 431 ") and problem["status"] == 431 and transport.closed


def test_what_the_protocol_relies_on_of_uvicorn_is_still_there():
    # docs/library-internals.md: if an uvicorn upgrade renames any of these, the bounds stop working silently
    # at worst; this fails first.
    for name in ("data_received", "connection_made", "connection_lost", "on_message_begin", "on_url", "on_header",
                  "on_headers_complete", "on_message_complete", "send_400_response"):
        assert callable(getattr(HttpToolsProtocol, name)), name
    config = Config(ok_app, lifespan="off")
    config.load()
    protocol = HttpToolsProtocol(config=config, server_state=ServerState(), app_state={}, _loop=asyncio.new_event_loop())
    for name in ("transport", "loop", "cycle", "pipeline", "server_state", "config"):
        assert hasattr(protocol, name), name
    protocol.loop.close()
    cycle_attributes = RequestResponseCycle.__init__.__code__.co_names
    for name in ("response_started", "response_complete", "keep_alive", "disconnected", "message_event",
                 "waiting_for_100_continue"):
        assert name in cycle_attributes, name


def test_serve_passes_the_timeouts_through_a_partial_the_spawned_workers_can_unpickle():
    import functools
    import pickle

    factory = functools.partial(BoundedHttpToolsProtocol, head_timeout=3, body_timeout=4)
    loop = asyncio.new_event_loop()
    config = Config(ok_app, lifespan="off", http=pickle.loads(pickle.dumps(factory)))
    config.load()
    protocol = config.http_protocol_class(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    assert (protocol._head_timeout, protocol._body_timeout) == (3, 4)
    loop.close()


def test_a_head_not_complete_in_time_is_a_408_problem_and_the_connection_closed(timed):
    connect, wait = timed
    protocol, transport = connect()
    protocol.data_received(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-A: ")
    wait(HEAD_TIMEOUT / 2)
    protocol.data_received(b"still coming")
    assert not transport.closed
    wait(HEAD_TIMEOUT)
    head, problem = answer(transport)
    assert head.startswith(b"HTTP/1.1 408 ") and b"content-type: application/problem+json" in head
    assert b"connection: close" in head and b"x-request-id: " + problem["request_id"].encode() in head
    assert problem["status"] == 408 and "APP_REQUEST_HEAD_TIMEOUT_SECONDS" in problem["detail"]
    assert transport.closed


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(timed):
    connect, wait = timed
    _protocol, transport = connect()
    wait(HEAD_TIMEOUT * 1.5)
    assert transport.closed and transport.written == b""


def test_a_head_in_pieces_within_the_time_is_served_and_the_connection_kept(timed):
    connect, wait = timed
    protocol, transport = connect()
    for piece in (b"GET /v1/health HT", b"TP/1.1\r\nHost: x\r\n", b"\r\n"):
        protocol.data_received(piece)
        wait(HEAD_TIMEOUT / 4)
    wait(HEAD_TIMEOUT * 2)  # idle after the answer: uvicorn's keep-alive timeout (5 s) applies, not the head's
    assert transport.written.startswith(b"HTTP/1.1 200 OK") and not transport.closed
    protocol.data_received(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
    wait(0.01)
    assert transport.written.count(b"HTTP/1.1 200 OK") == 2 and not transport.closed


def test_the_head_clock_of_a_later_request_starts_with_its_first_bytes(timed):
    connect, wait = timed
    protocol, transport = connect()
    protocol.data_received(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
    wait(HEAD_TIMEOUT * 2)
    protocol.data_received(b"GET /v1/health HTTP/1.1\r\n")
    wait(HEAD_TIMEOUT / 2)
    assert not transport.closed
    wait(HEAD_TIMEOUT)
    assert transport.written.count(b"HTTP/1.1 200 OK") == 1 and b"HTTP/1.1 408 " in transport.written
    assert transport.closed


def body_reader(received: list):
    async def app(scope, receive, send) -> None:
        while True:
            message = await receive()
            received.append(message)
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 201, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def test_a_stalled_body_is_a_408_the_app_reads_a_disconnect_and_writes_nothing(timed):
    connect, wait = timed
    received: list = []
    protocol, transport = connect(body_reader(received))
    protocol.data_received(b"POST /v1/items HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
    wait(BODY_TIMEOUT * 1.5)
    head, problem = answer(transport)
    assert head.startswith(b"HTTP/1.1 408 ") and problem["status"] == 408
    assert "APP_REQUEST_BODY_TIMEOUT_SECONDS" in problem["detail"] and transport.closed
    assert received[-1] == {"type": "http.disconnect"}
    assert b"201" not in transport.written  # the app's answer after the disconnect is dropped


def test_a_slow_body_that_keeps_coming_is_read_whole(timed):
    connect, wait = timed
    received: list = []
    protocol, transport = connect(body_reader(received))
    protocol.data_received(b"POST /v1/items HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
    for byte in b"abcde":  # 5 pauses of 0.6 of the body timeout: 1.5 times the bound in all
        wait(BODY_TIMEOUT * 0.6)
        protocol.data_received(bytes([byte]))
    wait(0.01)
    assert transport.written.startswith(b"HTTP/1.1 201 ") and not transport.closed
    assert b"".join(message.get("body", b"") for message in received) == b"abcde"


def test_a_body_the_server_does_not_read_is_not_the_clients_stall(timed):
    connect, wait = timed
    protocol, transport = connect(body_reader([]))
    protocol.data_received(b"POST /v1/items HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
    transport.pause_reading()  # as uvicorn's flow control does when the app has not taken what is buffered
    wait(BODY_TIMEOUT * 2)
    assert not transport.closed
    transport.resume_reading()
    wait(BODY_TIMEOUT * 1.5)
    assert transport.closed


def test_an_answer_that_takes_long_is_not_cut(timed):
    async def long_poll(scope, receive, send) -> None:
        await asyncio.sleep((HEAD_TIMEOUT + BODY_TIMEOUT) * 2)
        await ok_app(scope, receive, send)

    connect, wait = timed
    protocol, transport = connect(long_poll)
    protocol.data_received(b"GET /v1/events?wait=30 HTTP/1.1\r\nHost: x\r\n\r\n")
    wait((HEAD_TIMEOUT + BODY_TIMEOUT) * 2.5)
    assert transport.written.startswith(b"HTTP/1.1 200 OK") and not transport.closed


def test_the_rest_of_a_body_answered_early_does_not_keep_the_connection_open(timed):
    # The app answers before reading the body; the body's end then arrives and cancels uvicorn's keep-alive
    # timer, which nothing re-arms: the head timeout closes the idle connection instead.
    connect, wait = timed
    protocol, transport = connect()
    protocol.data_received(b"POST /v1/items HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
    wait(0.01)
    protocol.data_received(b"cd")
    wait(HEAD_TIMEOUT * 1.5)
    assert transport.written.startswith(b"HTTP/1.1 200 OK") and b"408" not in transport.written
    assert transport.closed


def test_a_late_pipelined_head_closes_the_connection_after_the_answer_in_flight(timed):
    release = asyncio.Event()

    async def slow(scope, receive, send) -> None:
        await release.wait()
        await ok_app(scope, receive, send)

    connect, wait = timed
    protocol, transport = connect(slow)
    protocol.data_received(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/health HTTP/1.1\r\n")
    wait(HEAD_TIMEOUT * 1.5)
    assert transport.written == b"" and not transport.closed  # no 408 in the middle of the answer
    release.set()
    wait(0.01)
    assert transport.written.startswith(b"HTTP/1.1 200 OK") and b"408" not in transport.written
    assert transport.closed

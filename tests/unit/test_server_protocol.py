"""The httptools protocol serve.py runs: the request head bounded, bad HTTP answered as a problem.

Built on uvicorn's HttpToolsProtocol (web/server_protocol.py); these tests drive it with a fake transport,
so they fail if an uvicorn upgrade moves the callbacks it overrides.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from web.server_protocol import BoundedHttpToolsProtocol


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name, default=None):
        return {"sockname": ("127.0.0.1", 9090), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


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

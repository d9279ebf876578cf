"""Slow and unfinished requests against `python serve.py` itself: the time to read a request is bounded.

A head that never ends, or a body shorter than its Content-Length, held a connection (a file descriptor)
open for good. With APP_REQUEST_HEAD_TIMEOUT_SECONDS and APP_REQUEST_BODY_TIMEOUT_SECONDS at 1 s, the
worker answers 408 and closes, writes nothing, still serves a slow client that keeps sending, never cuts an
answer that takes long (a long poll), and stays the same process.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import API_KEY
from tests.e2e.test_hostile_input_server import read_answer
from tests.support.serve_process import ServeProcess

TIMEOUT = 1  # seconds, both bounds
BOUND = TIMEOUT + 2  # by when a connection must be answered and closed, with room for a loaded machine


@pytest.fixture
def server(tmp_path, sqlite_template):
    database = tmp_path / "rooms.sqlite3"
    database.write_bytes(Path(sqlite_template).read_bytes())
    with ServeProcess(f"sqlite:///{database}", tmp_path / "serve.log", APP_WORKERS="1",
                      APP_REQUEST_HEAD_TIMEOUT_SECONDS=str(TIMEOUT),
                      APP_REQUEST_BODY_TIMEOUT_SECONDS=str(TIMEOUT)) as process:
        yield process


def answer_and_close(connection: socket.socket) -> tuple[bytes, dict, float]:
    """Read the one answer a stalled request gets, then the close; return its head, problem and the time taken."""
    started = time.monotonic()
    connection.settimeout(BOUND + 5)
    head, body = read_answer(connection)
    assert connection.recv(65536) == b"", "the connection stayed open after the answer"
    return head, json.loads(body), time.monotonic() - started


def item_names(server: ServeProcess, name: str) -> list[str]:
    response = httpx.get(f"{server.url}/v1/items", params={"name": name})
    assert response.status_code == 200, response.text
    return [item["name"] for item in response.json()["data"]]


def test_an_unfinished_head_is_a_408_problem_and_the_connection_closed(server):
    pid = server.process.pid
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-A: ")
        head, problem, took = answer_and_close(connection)
    assert head.startswith(b"HTTP/1.1 408 ")
    assert b"content-type: application/problem+json" in head.lower() and b"connection: close" in head.lower()
    assert problem["status"] == 408 and problem["request_id"]
    assert "APP_REQUEST_HEAD_TIMEOUT_SECONDS" in problem["detail"]
    assert TIMEOUT * 0.9 <= took < BOUND
    assert httpx.get(f"{server.url}/v1/health").status_code == 200
    assert server.process.pid == pid and server.process.poll() is None


def test_many_unfinished_heads_are_all_closed_and_the_worker_keeps_serving(server):
    pid = server.process.pid
    connections = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(100)]
    try:
        for connection in connections:
            connection.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-A: ")
        assert httpx.get(f"{server.url}/v1/health").status_code == 200  # served meanwhile
        for connection in connections:
            head, _problem, took = answer_and_close(connection)
            assert head.startswith(b"HTTP/1.1 408 ") and took < BOUND
    finally:
        for connection in connections:
            connection.close()
    assert server.process.pid == pid and server.process.poll() is None


def test_a_connection_that_sends_nothing_is_closed(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=BOUND + 5) as connection:
        started = time.monotonic()
        assert connection.recv(65536) == b""
        assert time.monotonic() - started < BOUND


def test_a_stalled_body_is_a_408_and_nothing_is_stored(server):
    pid = server.process.pid
    name = f"stalled {uuid.uuid4().hex[:8]}"
    body = json.dumps({"name": name}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(
            b"POST /v1/items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-API-Key: "
            + API_KEY.encode() + b"\r\nContent-Length: %d\r\n\r\n" % (len(body) + 10) + body
        )
        head, problem, took = answer_and_close(connection)
    assert head.startswith(b"HTTP/1.1 408 ") and b"application/problem+json" in head
    assert problem["status"] == 408 and "APP_REQUEST_BODY_TIMEOUT_SECONDS" in problem["detail"]
    assert TIMEOUT * 0.9 <= took < BOUND
    assert item_names(server, name) == []
    assert server.process.pid == pid and server.process.poll() is None
    assert "Traceback" not in server.output()


def test_a_slow_client_that_keeps_sending_is_served(server):
    name = f"slow {uuid.uuid4().hex[:8]}"
    body = json.dumps({"name": name}).encode()
    head = (b"POST /v1/items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-API-Key: "
            + API_KEY.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        # The head in three pieces within the head's bound; the body in pieces, each gap under the body's bound
        # but 1.5 times it in all.
        for piece in (head[:20], head[20:60], head[60:]):
            connection.sendall(piece)
            time.sleep(TIMEOUT / 4)
        for start in range(0, len(body), len(body) // 3 + 1):
            time.sleep(TIMEOUT / 2)
            connection.sendall(body[start:start + len(body) // 3 + 1])
        answer_head, answer_body = read_answer(connection)
    assert answer_head.startswith(b"HTTP/1.1 201 "), answer_head + answer_body
    assert item_names(server, name) == [name]


def test_a_long_poll_whose_request_is_complete_is_not_cut(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        started = time.monotonic()
        response = client.get("/v1/events", params={"after": 10**15, "wait": TIMEOUT * 3})
        took = time.monotonic() - started
        assert response.status_code == 200 and response.json()["data"] == [], response.text
        assert took >= TIMEOUT * 3 * 0.9


def test_an_idle_connection_between_requests_is_kept_by_uvicorns_keep_alive(server):
    request = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(request)
        assert read_answer(connection)[0].startswith(b"HTTP/1.1 200 ")
        time.sleep(TIMEOUT * 2)  # longer than the head's bound, shorter than uvicorn's keep-alive (5 s)
        connection.sendall(request)
        assert read_answer(connection)[0].startswith(b"HTTP/1.1 200 ")

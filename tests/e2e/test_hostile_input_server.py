"""Hostile and odd requests against `python serve.py` itself: uvicorn as production runs it, one worker.

The worker must answer each with a 4xx problem and keep serving: same process, no stack trace, memory bounded.
"""

from __future__ import annotations

import base64
import json
import socket
import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import API_KEY
from tests.support.factories import new_room
from tests.support.serve_process import ServeProcess

AUTH = {"X-API-Key": API_KEY}
JSON = {**AUTH, "Content-Type": "application/json"}


def cursor(payload: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()


def hostile_requests() -> list[tuple[str, dict]]:
    """(name, httpx.request keyword arguments) of every hostile class the JSON API must survive."""
    deep = b"[" * 100_000 + b"]" * 100_000
    return [
        ("json nested 100,000 deep", dict(method="POST", url="/v1/items", content=b'{"name": ' + deep + b"}", headers=JSON)),
        ("100,000 bad members", dict(method="POST", url="/v1/rooms", content=orjson.dumps(new_room(images=[1] * 100_000)),
                                     headers=JSON)),
        ("a body without content type", dict(method="POST", url="/v1/items", content=b'{"name": "x"}', headers=AUTH)),
        ("a price cursor beyond int64", dict(method="GET", url="/v1/rooms?sort=price&cursor="
                                             + cursor({"s": "price", "v": 2**64 - 1, "i": str(uuid.uuid4())}))),
        ("a timestamp cursor beyond year 9999", dict(method="GET", url="/v1/rooms?cursor=" + cursor(
            {"s": "created_at", "v": "9999-12-31T23:59:59-23:59", "i": str(uuid.uuid4())}))),
        ("a NUL in a questions cursor", dict(method="GET", url="/v1/questions?cursor=" + cursor({"c": "1\u0000"}))),
        ("radius_km=nan", dict(method="GET", url="/v1/rooms?near=1,1&radius_km=nan")),
        ("wait=nan", dict(method="GET", url="/v1/events?wait=nan")),
        ("a WebSocket handshake", dict(method="GET", url="/v1/rooms", headers={
            "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})),
        ("an h2c upgrade with a body", dict(method="POST", url="/v1/items", content=b'{"name": "x"}', headers={
            **JSON, "Connection": "Upgrade, HTTP2-Settings", "Upgrade": "h2c", "HTTP2-Settings": "AAMAAABkAARAAAAAAAIAAAAA"})),
        ("a gzip-encoded body", dict(method="POST", url="/v1/items", content=b"\x1f\x8b\x08\x00", headers={
            **JSON, "Content-Encoding": "gzip"})),
        ("an Idempotency-Key sent twice", dict(method="POST", url="/v1/items", content=b'{"name": "x"}', headers=[
            *JSON.items(), ("Idempotency-Key", "valid"), ("Idempotency-Key", "k" * 300)])),
    ]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def server(tmp_path, sqlite_template):
    database = tmp_path / "rooms.sqlite3"
    database.write_bytes(Path(sqlite_template).read_bytes())
    with ServeProcess(f"sqlite:///{database}", tmp_path / "serve.log", APP_WORKERS="1") as process:
        yield process


def test_the_worker_answers_every_hostile_request_with_a_4xx_problem_and_survives(server):
    pid = server.process.pid
    with httpx.Client(base_url=server.url, timeout=30) as client:
        client.get("/v1/health")
        before = rss_kib(pid)
        for name, request in hostile_requests():
            response = client.request(**request)
            assert 400 <= response.status_code < 500, (name, response.status_code, response.text[:300])
            assert response.headers["content-type"] == "application/problem+json", name
            assert len(response.content) < 64 * 1024, name
            assert server.process.poll() is None, f"the worker died on {name}:\n{server.output()}"
            assert client.get("/v1/health").status_code == 200, name
        after = rss_kib(pid)
    assert server.process.pid == pid and server.process.poll() is None
    assert after - before < 64 * 1024, f"RSS grew from {before} to {after} KiB"
    assert "Traceback" not in server.output()


def test_a_chunked_json_body_is_read_by_the_real_server(server):
    def chunks():
        yield b'{"name": '
        yield b'"desk lamp"}'

    with httpx.Client(base_url=server.url) as client:
        created = client.post("/v1/items", content=chunks(), headers=JSON)
        assert created.status_code == 201, created.text
        assert client.get(created.headers["Location"]).json()["name"] == "desk lamp"


def test_a_websocket_handshake_is_counted_and_logged_like_any_answer(server):
    request = (
        b"GET /v1/rooms HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Request-ID: ws-probe-1\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(request)
        head, body = read_answer(connection)
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"content-type: application/problem+json" in head.lower()
    assert json.loads(body)["request_id"] == "ws-probe-1"
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'rooms_http_requests_total{method="GET",operation_id="none",status="400"} 1.0' in metrics
    assert "ws-probe-1" in server.output()


def read_answer(connection: socket.socket) -> tuple[bytes, bytes]:
    """Read one HTTP answer (its head, and its body by Content-Length) from a raw connection."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += connection.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += connection.recv(65536)
    return head, body


def test_a_request_head_over_the_limit_is_431_and_costs_no_memory(server):
    pid = server.process.pid
    before = rss_kib(pid)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            for _ in range(200):  # 20 MB of one header field, unless the server stops listening first
                connection.sendall(b"a" * 100_000)
        except (ConnectionResetError, BrokenPipeError):
            pass
        else:
            raise AssertionError("the server read 20 MB of a header field")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
        head, body = read_answer(connection)
    assert head.startswith(b"HTTP/1.1 431 ") and b"application/problem+json" in head
    assert "APP_MAX_HEADER_BYTES" in json.loads(body)["detail"]
    assert rss_kib(pid) - before < 16 * 1024
    assert httpx.get(f"{server.url}/v1/health").status_code == 200


def test_malformed_http_is_a_400_problem(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(b"FOO /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        head, body = read_answer(connection)
    assert head.startswith(b"HTTP/1.1 400 ") and b"application/problem+json" in head
    assert json.loads(body)["request_id"]

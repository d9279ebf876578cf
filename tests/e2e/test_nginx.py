"""nginx in front of the service (deploy/nginx/rooms.conf.template): request ids, body limit, rate limit, own errors.

The real stack: `python serve.py` on a PostgreSQL database of its own, behind Debian's nginx running the
repository's template (tests/support/nginx.py), unprivileged on a free port. nginx sees every client as
127.0.0.1 unless the client binds another loopback address, which Linux routes to `lo` as well: that is
how two clients of the rate limit are told apart here.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from providers.database import migrate
from tests.conftest import API_KEY
from tests.support.nginx import ThrowawayNginx
from tests.support.postgres import free_port, scratch_database
from tests.support.serve_process import ServeProcess

MAX_BODY_BYTES = 4096  # small, so the edge of the limit is cheap to send; the same number for both
HEX_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(scope="module")
def service_database(postgres_admin_url: str) -> Iterator[str]:
    """A migrated PostgreSQL database of its own."""
    with scratch_database(postgres_admin_url, "rooms_nginx") as url:
        migrate(url, configure_logging=False)
        yield url


@pytest.fixture(scope="module")
def service(service_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """serve.py with JSON logs and a 4 KiB body limit."""
    log = tmp_path_factory.mktemp("nginx-service") / "serve.log"
    with ServeProcess(service_database, log, APP_MAX_BODY_BYTES=str(MAX_BODY_BYTES), APP_LOG_FORMAT="json") as server:
        yield server


@pytest.fixture
def proxy(service: ServeProcess) -> Iterator[ThrowawayNginx]:
    """nginx in front of the service with the same body limit and a generous rate limit."""
    with ThrowawayNginx([f"127.0.0.1:{service.port}"], max_body_bytes=MAX_BODY_BYTES) as nginx:
        yield nginx


def client_from(address: str, base_url: str) -> httpx.Client:
    """An HTTP client whose connections come from `address` (any 127.x.y.z reaches loopback)."""
    return httpx.Client(base_url=base_url, transport=httpx.HTTPTransport(local_address=address), timeout=10)


def access_lines(log: Path) -> list[dict]:
    """The service's access-log records (APP_LOG_FORMAT=json): one per request it saw."""
    records = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("logger") == "rooms.access":
                records.append(record)
    return records


def wait_for(condition, timeout: float = 5.0):
    """Return condition()'s first truthy value; logs are written a moment after the answer leaves."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def nginx_entry(proxy: ThrowawayNginx, request_id: str) -> dict | None:
    return next((entry for entry in proxy.access_entries() if entry["request_id"] == request_id), None)


def service_entry(service: ServeProcess, request_id: str) -> dict | None:
    return next((record for record in access_lines(service.log) if record["request_id"] == request_id), None)


@pytest.mark.parametrize("sent, kept", [
    ("client-chosen.id:1", True),  # one the service accepts: passed on as it is
    (None, False),  # none: nginx makes one
    ("has spaces and ümlauts", False),  # one the service would replace: nginx replaces it first
])
def test_nginx_and_the_service_log_the_same_request_id(service, proxy, sent, kept):
    headers = {"X-Request-ID": sent.encode()} if sent else {}
    with client_from("127.0.0.1", proxy.url) as client:
        answer = client.get("/v1/rooms/00000000-0000-4000-8000-000000000000", headers=headers)

    assert answer.status_code == 404  # the service's own answer, passed through
    request_id = answer.headers["X-Request-ID"]
    assert request_id == sent if kept else HEX_ID.fullmatch(request_id)
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert answer.json()["request_id"] == request_id
    in_nginx = wait_for(lambda: nginx_entry(proxy, request_id))
    in_service = wait_for(lambda: service_entry(service, request_id))
    assert in_nginx is not None and in_nginx["status"] == 404 and in_nginx["upstream_addr"] == f"127.0.0.1:{service.port}"
    assert in_service is not None and in_service["status"] == 404 and in_service["operation_id"] == "get_room"


def padded_item(size: int) -> bytes:
    """A valid item document of exactly `size` bytes (JSON allows the trailing spaces)."""
    document = json.dumps({"name": f"Padded item {time.monotonic_ns()}"}).encode()
    return document + b" " * (size - len(document))


def test_a_body_at_the_limit_reaches_the_service_and_one_byte_more_is_refused_by_nginx_as_the_service_would(
        service, proxy):
    headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
    with client_from("127.0.0.1", proxy.url) as client:
        at_limit = client.post("/v1/items", content=padded_item(MAX_BODY_BYTES), headers=headers)
        over = client.post("/v1/items", content=padded_item(MAX_BODY_BYTES + 1), headers=headers)
        chunks = padded_item(MAX_BODY_BYTES + 1)
        chunked = client.post("/v1/items", content=iter([chunks[:1000], chunks[1000:]]), headers=headers)
    with client_from("127.0.0.1", service.url) as client:
        direct = client.post("/v1/items", content=padded_item(MAX_BODY_BYTES + 1), headers=headers)

    assert at_limit.status_code == 201, at_limit.text
    assert direct.status_code == over.status_code == chunked.status_code == 413
    for answer in (over, chunked):
        assert answer.headers["Content-Type"] == "application/problem+json"
        document = answer.json()
        assert document.pop("request_id") == answer.headers["X-Request-ID"]
        expected = direct.json()
        expected.pop("request_id")
        assert document == expected  # nginx's 413 is the service's, word for word
        # nginx answered it: the request never reached the service.
        request_id = answer.headers["X-Request-ID"]
        assert wait_for(lambda: nginx_entry(proxy, request_id))["upstream_addr"] == ""  # noqa: B023 - called here
        assert service_entry(service, request_id) is None
    assert wait_for(lambda: service_entry(service, at_limit.headers["X-Request-ID"]))["status"] == 201


def test_a_burst_from_one_client_gets_429_problems_with_retry_after_while_another_client_is_served(service):
    rate, burst = 2, 3
    with ThrowawayNginx([f"127.0.0.1:{service.port}"], max_body_bytes=MAX_BODY_BYTES, rate_per_second=rate,
                        burst=burst) as nginx:
        with client_from("127.0.0.2", nginx.url) as greedy, client_from("127.0.0.3", nginx.url) as modest:
            began = time.monotonic()
            burst_answers = [greedy.get("/v1/health") for _ in range(12)]
            took = time.monotonic() - began
            modest_answers = [modest.get("/v1/health") for _ in range(burst + 1)]
            time.sleep(1.1)  # what Retry-After asks for: one request's worth of the rate has come back
            after_waiting = greedy.get("/v1/health")

        statuses = [answer.status_code for answer in burst_answers]
        # nodelay: the first request and the burst go through at once, the rest is refused but for what the
        # rate gave back while they were sent (none when the twelve take under half a second, as they do).
        assert statuses[:burst + 1] == [200] * (burst + 1) and set(statuses) == {200, 429}
        assert statuses.count(200) <= burst + 1 + int(took * rate)
        assert [answer.status_code for answer in modest_answers] == [200] * (burst + 1)
        assert after_waiting.status_code == 200
        for refused in [answer for answer in burst_answers if answer.status_code == 429]:
            assert refused.headers["Content-Type"] == "application/problem+json"
            assert refused.headers["Retry-After"] == "1"
            assert refused.json() == {
                "type": "about:blank", "title": "Too Many Requests", "status": 429,
                "detail": f"More than {rate} requests per second from this address; retry after 1 s.",
                "request_id": refused.headers["X-Request-ID"],
            }
        entries = wait_for(lambda: len(nginx.access_entries()) == 12 + burst + 2 and nginx.access_entries())
        assert {e["remote_addr"] for e in entries} == {"127.0.0.2", "127.0.0.3"}
        refused_ids = {answer.headers["X-Request-ID"] for answer in burst_answers if answer.status_code == 429}
        assert all(e["upstream_addr"] == "" for e in entries if e["request_id"] in refused_ids)
        served = {record["request_id"] for record in access_lines(service.log)}
        assert not refused_ids & served  # a refused request costs the service nothing
        assert "limiting requests" in nginx.error_log_text()


def test_without_a_live_replica_nginx_answers_502_as_problem_json_for_reads_and_writes():
    dead = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    with ThrowawayNginx(dead) as nginx, client_from("127.0.0.1", nginx.url) as client:
        answers = [client.get("/v1/rooms"), client.post("/v1/rooms", json={}, headers={"X-API-Key": API_KEY})]
        head = client.head("/v1/rooms")

        for answer in answers:
            assert answer.status_code == 502
            assert answer.headers["Content-Type"] == "application/problem+json"
            document = answer.json()
            assert document["title"] == "Bad Gateway" and document["status"] == 502
            assert document["request_id"] == answer.headers["X-Request-ID"]
        assert head.status_code == 502 and head.content == b""
        # The first request tried both replicas (a refused connection was never sent, so even a POST
        # may move on); that marked both down for fail_timeout, so the others were answered at once.
        entries = wait_for(lambda: len(nginx.access_entries()) == 3 and nginx.access_entries())
        assert [(e["upstream_addr"], e["upstream_connect_time"]) for e in entries] == [
            (", ".join(dead), "-, -"), ("rooms_service", "-"), ("rooms_service", "-")]
        assert nginx.error_log_text().count("no live upstreams") == 2


def test_the_services_own_503_passes_through_nginx_untouched(service, proxy, service_database):
    engine = sa.create_engine(service_database)
    with engine.begin() as connection:
        head = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
        # The migrations look one behind: /v1/ready answers 503 with Retry-After, its own problem.
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '0001'"))
    try:
        with client_from("127.0.0.1", proxy.url) as client:
            answer = client.get("/v1/ready")
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text("UPDATE alembic_version SET version_num = :head"), {"head": head})
        engine.dispose()

    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "5"  # the service's APP_RETRY_AFTER_SECONDS
    # The service's problem, not nginx's page for a 503 of its own.
    assert answer.json()["detail"] == f"The database's migrations are behind: current 0001, head {head}."
    assert wait_for(lambda: nginx_entry(proxy, answer.headers["X-Request-ID"]))["upstream_status"] == "503"

"""GET /metrics through the real stack: requests by operation, latency, the pool, the outbox's lag, the relay."""

from __future__ import annotations

import dataclasses
import math
import socket
import time
import uuid

import pika.exceptions
import pytest
from sqlalchemy import Engine

from app import create_app, dispose_app
from contract.avro import AvroSchemas
from providers.database import make_engine
from relay import AmqpPublisher, publish_pending
from tests.support.factories import new_room
from tests.support.postgres import free_port
from tests.support.scrape import scrape


def test_metrics_are_prometheus_text_outside_the_api(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# TYPE rooms_http_requests_total counter" in response.text
    assert "# TYPE rooms_http_request_duration_seconds histogram" in response.text
    assert client.get("/v1/metrics").status_code == 404
    refused = client.post("/metrics")
    assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["request_id"] == refused.headers["x-request-id"]


def test_requests_are_counted_exactly_by_operation_method_and_status(client, auth):
    before = scrape(client)
    room = client.post("/v1/rooms", json=new_room(), headers=auth).json()
    for _ in range(3):
        assert client.get(f"/v1/rooms/{room['id']}").status_code == 200
    assert client.get(f"/v1/rooms/{uuid.uuid4()}").status_code == 404
    assert client.get("/v1/rooms/not-a-uuid").status_code == 400
    assert client.post("/v1/rooms", json=new_room()).status_code == 401
    assert client.head(f"/v1/rooms/{room['id']}").status_code == 200
    assert client.get("/v1/nowhere").status_code == 404
    assert client.put("/v1/rooms").status_code == 405
    assert client.request("BREW", "/v1/rooms").status_code == 405
    after = scrape(client)

    def delta(operation_id: str, method: str, status: int) -> float:
        return after.requests(operation_id, method, status) - before.requests(operation_id, method, status)

    assert delta("create_room", "POST", 201) == 1
    assert delta("create_room", "POST", 401) == 1
    assert delta("get_room", "GET", 200) == 3
    assert delta("get_room", "GET", 404) == 1
    assert delta("get_room", "GET", 400) == 1
    assert delta("get_room", "HEAD", 200) == 1
    assert delta("none", "GET", 404) == 1
    assert delta("none", "PUT", 405) == 1
    assert delta("none", "other", 405) == 1  # a method the label does not know is not a new series
    assert "BREW" not in after.text
    # The scrape before this one was answered, and counted, in between.
    assert delta("none", "GET", 200) == 1


def test_latency_is_a_histogram_by_operation_with_its_buckets_filled(client, auth):
    room = client.post("/v1/rooms", json=new_room(), headers=auth).json()
    before = scrape(client)
    for _ in range(4):
        client.get(f"/v1/rooms/{room['id']}")
    client.get(f"/v1/rooms/{uuid.uuid4()}")
    after = scrape(client)
    name = "rooms_http_request_duration_seconds"
    assert after.value(f"{name}_count", operation_id="get_room") - before.value(f"{name}_count", operation_id="get_room") == 5
    assert after.value(f"{name}_sum", operation_id="get_room") > before.value(f"{name}_sum", operation_id="get_room")
    buckets = sorted(
        ((float(labels["le"]), value) for n, labels, value in after.samples
         if n == f"{name}_bucket" and labels["operation_id"] == "get_room"),
    )
    assert [le for le, _ in buckets][-1] == math.inf and len(buckets) == 15
    counts = [value for _, value in buckets]
    assert counts == sorted(counts), "buckets are cumulative"
    assert counts[-1] == after.value(f"{name}_count", operation_id="get_room")
    # A local read takes well under 10 s: every observation landed in a finite bucket.
    assert dict(buckets)[10.0] == counts[-1]


def test_the_pool_gauges_follow_checkouts_and_each_pool_adds_its_capacity(app, client, settings):
    engine = app.injector.get(Engine)
    before = scrape(client)
    with engine.connect(), engine.connect():
        during = scrape(client)
    after = scrape(client)
    in_use = "rooms_db_pool_connections_in_use"
    assert during.value(in_use) - before.value(in_use) == 2
    assert after.value(in_use) == before.value(in_use)

    second = create_app(settings)
    try:
        grown = scrape(client)
    finally:
        dispose_app(second)
    # The pool and as many again in overflow, on both databases (providers.database.pool_capacity).
    assert grown.value("rooms_db_pool_connections_max") - after.value("rooms_db_pool_connections_max") == 2 * settings.pool_size
    assert scrape(client).value("rooms_db_pool_connections_max") == after.value("rooms_db_pool_connections_max")


def test_the_outbox_lag_falls_as_the_relay_publishes_and_the_relay_is_counted(client, auth, settings, rabbitmq_url):
    lag = "rooms_outbox_unpublished_events"
    published = "rooms_relay_events_published_total"
    assert scrape(client).value(lag) == 0
    for _ in range(3):
        client.post("/v1/rooms", json=new_room(), headers=auth)
    client.post("/v1/questions", json={"question_code": "77", "category": "c", "message": "m"}, headers=auth)
    before = scrape(client)
    assert before.value(lag) == 4

    engine = make_engine(settings.database_url, pool_size=1)
    publisher = AmqpPublisher(rabbitmq_url, f"rooms.events.{uuid.uuid4().hex[:8]}", AvroSchemas())
    try:
        assert publish_pending(engine, publisher, batch_size=3) == 3
        middle = scrape(client)
        assert middle.value(lag) == 1
        assert middle.value(published, type="room.created") - before.value(published, type="room.created") == 3
        assert publish_pending(engine, publisher, batch_size=3) == 1
        done = scrape(client)
        assert done.value(lag) == 0
        assert done.value(published, type="question.created") - before.value(published, type="question.created") == 1

        client.delete("/v1/questions/77", headers=auth)
        unreachable = AmqpPublisher(f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F", "rooms.events", AvroSchemas())
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            publish_pending(engine, unreachable, batch_size=3)
        failed = scrape(client)
        failures = "rooms_relay_publish_failures_total"
        assert failed.value(failures, reason="broker") - done.value(failures, reason="broker") == 1
        assert failed.value(lag) == 1  # nothing was marked
        assert failed.value(published) == done.value(published)
    finally:
        publisher.close()
        engine.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_scrape_answers_with_an_unknown_lag_while_the_database_is_down(settings):
    # Port 9 (discard) on loopback: nothing listens, every connection is refused at once.
    app = create_app(dataclasses.replace(settings, database_url="postgresql+psycopg2://rooms@127.0.0.1:9/rooms"))
    try:
        metrics = scrape(app.test_client())
    finally:
        dispose_app(app)
    assert math.isnan(metrics.value("rooms_outbox_unpublished_events"))
    assert metrics.has("rooms_http_requests_total")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_scrape_does_not_wait_for_a_database_that_hangs(settings):
    # A listening socket that never answers: the connection is made, the database's greeting never comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        app = create_app(dataclasses.replace(settings, database_url=f"postgresql+psycopg2://rooms@127.0.0.1:{port}/rooms"))
        try:
            client = app.test_client()
            started = time.monotonic()
            first = scrape(client)
            first_took = time.monotonic() - started
            started = time.monotonic()
            second = scrape(client)  # the first count is still waiting: this one does not start another
            second_took = time.monotonic() - started
        finally:
            dispose_app(app)
    assert math.isnan(first.value("rooms_outbox_unpublished_events")) and first_took < 2.5
    assert math.isnan(second.value("rooms_outbox_unpublished_events")) and second_took < 0.5


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_scrape_that_fails_is_a_logged_500_problem(app, client, monkeypatch, caplog):
    async def broken():
        raise OSError("a metrics file vanished")

    monkeypatch.setattr(app.metrics, "exposition", broken)
    response = client.get("/metrics", headers={"X-Request-ID": "scrape-1"})
    assert response.status_code == 500 and response.headers["content-type"] == "application/problem+json"
    assert response.json()["request_id"] == "scrape-1" and "vanished" not in response.text
    assert any(record.exc_info and "vanished" in str(record.exc_info[1]) for record in caplog.records)

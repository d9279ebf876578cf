"""X-Request-ID: the client's when sane, else generated; on every answer, in every problem, in handlers and logs."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid

import pytest
from flask import g

from app import create_app, dispose_app
from observability.logs import JsonFormatter, RequestContextFilter
from observability.request_ids import current_request_id
from tests.integration.test_transactions_and_faults import _module
from tests.support.factories import new_room

GENERATED = re.compile(r"[0-9a-f]{32}")


SANE = ["abc", "0af7651916cd43dd8448eb211c80319c", "trace:span.1-2_3", "x" * 128]
INSANE = ["", "with space", "x" * 129, "semi;colon", 'quote"d', "ünïcode", "a/b"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_sane_client_id_is_echoed(client):
    for sent in SANE:
        assert client.get("/v1/health", headers={"X-Request-ID": sent}).headers["x-request-id"] == sent


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_insane_client_id_is_replaced_by_a_generated_one(client):
    for sent in INSANE:
        response = client.get("/v1/health", headers={"X-Request-ID": sent.encode("utf-8")})
        assert response.status_code == 200  # never refused for it
        assert GENERATED.fullmatch(response.headers["x-request-id"]), sent


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_without_a_client_id_each_answer_gets_a_new_one_also_outside_the_api(client):
    ids = [client.get(path).headers["x-request-id"] for path in ("/v1/health", "/v1/health", "/openapi.json", "/metrics", "/ui/")]
    assert all(GENERATED.fullmatch(i) and uuid.UUID(i).version == 4 and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)
    assert len(set(ids)) == len(ids)


def assert_problem_carries_the_id(response, status: int, sent: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["content-length"]) == len(response.content)
    problem = response.json()
    assert problem["status"] == status
    assert problem["request_id"] == response.headers["x-request-id"]
    if sent is not None:
        assert problem["request_id"] == sent
    return problem


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_kind_of_problem_carries_the_request_id(client, auth):
    sent = {"X-Request-ID": "problem-check-1"}
    room = new_room()
    assert client.post("/v1/rooms", json=room, headers=auth).status_code == 201
    # Connexion's request validation, with every failing field.
    invalid = client.post("/v1/rooms", json=new_room(price="cheap"), headers=auth | sent)
    assert assert_problem_carries_the_id(invalid, 400, "problem-check-1")["errors"]
    assert_problem_carries_the_id(client.get("/v1/rooms/not-a-uuid", headers=sent), 400, "problem-check-1")
    # Connexion's security.
    assert_problem_carries_the_id(client.post("/v1/rooms", json=new_room(), headers=sent), 401, "problem-check-1")
    # A domain error from a handler, and Connexion's router.
    assert_problem_carries_the_id(client.get(f"/v1/rooms/{uuid.uuid4()}"), 404)
    assert_problem_carries_the_id(client.get("/v1/nowhere"), 404)
    # Our 405 handler (with Allow) and the body-size limit in front of routing.
    assert client.put("/v1/rooms", headers=sent).headers["allow"] == "GET, HEAD, POST"
    assert_problem_carries_the_id(client.put("/v1/rooms", headers=sent), 405, "problem-check-1")
    too_large = client.post("/v1/rooms", content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
                            headers=auth | {"content-type": "application/json"})
    assert_problem_carries_the_id(too_large, 413)
    # A domain conflict, with its own extension member kept.
    conflict = assert_problem_carries_the_id(client.post("/v1/rooms", json=room, headers=auth | sent), 409, "problem-check-1")
    assert conflict["conflicting_id"]
    # The path check in front of everything, and a wrong content type.
    assert_problem_carries_the_id(client.get("/v1/rooms/%0A"), 400)
    unsupported = client.post("/v1/rooms", content=b"<room/>", headers=auth | {"content-type": "application/xml"})
    assert_problem_carries_the_id(unsupported, 415)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_500_problem_carries_the_request_id(settings, auth):
    app = create_app(settings, modules=[_module(RuntimeError("boom"))])
    try:
        response = app.test_client().post("/v1/rooms", json=new_room(), headers=auth | {"X-Request-ID": "fault-1"})
    finally:
        dispose_app(app)
    assert_problem_carries_the_id(response, 500, "fault-1")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_successful_answer_is_left_as_it_is_apart_from_the_header(client):
    response = client.get("/v1/health", headers={"X-Request-ID": "ok-1"})
    assert response.json() == {"status": "ok"} and response.headers["x-request-id"] == "ok-1"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_handlers_see_the_request_id_in_context_and_in_g(app, client):
    seen = []

    @app.app.after_request
    def remember(response):
        seen.append((current_request_id(), g.request_id))
        return response

    client.get("/v1/health", headers={"X-Request-ID": "in-handler-1"})
    generated = client.get("/v1/health").headers["x-request-id"]
    assert seen == [("in-handler-1", "in-handler-1"), (generated, generated)]
    assert current_request_id() is None  # outside any request


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_log_records_of_a_request_carry_its_id_and_operation(client, auth):
    # web.problems logs each domain error from Connexion's error handler, in a worker thread.
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestContextFilter())
    handler.setFormatter(JsonFormatter())
    problems_logger = logging.getLogger("web.problems")
    previous_level = problems_logger.level
    problems_logger.addHandler(handler)
    problems_logger.setLevel(logging.INFO)
    try:
        client.get(f"/v1/rooms/{uuid.uuid4()}", headers={"X-Request-ID": "logged-1"})
    finally:
        problems_logger.removeHandler(handler)
        problems_logger.setLevel(previous_level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["request_id"], line["operation_id"], line["level"]) for line in lines] == [("logged-1", "get_room", "INFO")]
    assert lines[0]["message"].startswith("404 Not Found")

"""Idempotency-Key on the creates, through the real app on SQLite and PostgreSQL: retries get the first answer."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from injector import Injector, Module, provider, singleton

from app import create_app, dispose_app
from composition import InMemoryProvidersModule
from contract.avro import AvroSchemas
from providers.idempotency import IdempotencyStore
from providers.memory_items import InMemoryItemsProvider
from rest.idempotency import IdempotentCreates
from rest.request import RequestFacts
from settings import Settings
from tests.conftest import LiveServer
from tests.integration.test_concurrency import race
from tests.integration.test_rooms_api import assert_problem
from tests.support.entity_check import EntityCheckingClient
from tests.support.factories import new_room

SCHEMAS = AvroSchemas()
OTHER_API_KEY = "other-test-key"

# (path, a valid new body, the table the entity lands in) for each create that takes a key.
CREATES = [
    ("/v1/rooms", lambda: new_room(), "rooms"),
    ("/v1/items", lambda: {"name": "Desk lamp"}, "items"),
    ("/v1/questions", lambda: {"question_code": "1001", "category": "general", "message": "How far?"}, "questions"),
]


def count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def stored_keys(engine: sa.Engine) -> list[str]:
    with engine.connect() as connection:
        return sorted(connection.execute(sa.text("SELECT key FROM idempotency_keys")).scalars())


def keyed(auth: dict[str, str], key: str) -> dict[str, str]:
    return {**auth, "Idempotency-Key": key}


@pytest.mark.parametrize("path, body, table", CREATES, ids=[table for _, _, table in CREATES])
def test_a_retry_with_the_same_key_gets_the_first_answer_and_creates_nothing(client, auth, engine, path, body, table):
    document = body()
    first = client.post(path, json=document, headers=keyed(auth, "retry-1"))
    retry = client.post(path, json=document, headers=keyed(auth, "retry-1"))
    assert first.status_code == 201, first.text
    assert retry.status_code == 201 and retry.content == first.content
    for name in ("Location", "ETag", "Content-Type"):
        assert retry.headers.get(name) == first.headers.get(name), name
    assert "Idempotent-Replayed" not in first.headers and retry.headers["Idempotent-Replayed"] == "true"
    assert count(engine, table) == 1 and count(engine, "events") == 1


def test_the_quoted_form_of_the_draft_names_the_same_key(client, auth, engine):
    first = client.post("/v1/items", json={"name": "Lamp"}, headers=keyed(auth, '"8e03978e-40d5-43e8"'))
    retry = client.post("/v1/items", json={"name": "Lamp"}, headers=keyed(auth, "8e03978e-40d5-43e8"))
    assert retry.headers["Idempotent-Replayed"] == "true" and retry.content == first.content
    assert stored_keys(engine) == ["8e03978e-40d5-43e8"]


def test_the_same_key_with_another_body_is_a_422_problem_and_creates_nothing(client, auth, engine):
    first = client.post("/v1/items", json={"name": "Desk lamp"}, headers=keyed(auth, "k"))
    problem = assert_problem(client.post("/v1/items", json={"name": "Floor lamp"}, headers=keyed(auth, "k")), 422)
    assert "Idempotency-Key" in problem["detail"] and problem["title"] == "Unprocessable Content"
    assert count(engine, "items") == 1 and count(engine, "events") == 1
    assert client.post("/v1/items", json={"name": "Desk lamp"}, headers=keyed(auth, "k")).content == first.content


def test_json_and_avro_sendings_of_one_room_are_the_same_request(client, auth, engine):
    room = new_room()  # leaves is_visible and images to their defaults, which an Avro record always carries
    first = client.post("/v1/rooms", json=room, headers=keyed(auth, "either-way"))
    as_avro = client.post(
        "/v1/rooms",
        content=SCHEMAS.encode_container("roomservice.NewRoom", [room]),
        headers={**keyed(auth, "either-way"), "Content-Type": "application/avro"},
    )
    spelled_out = client.post("/v1/rooms", json=room | {"is_visible": True, "images": []}, headers=keyed(auth, "either-way"))
    for retry in (as_avro, spelled_out):
        assert retry.status_code == 201 and retry.headers["Idempotent-Replayed"] == "true"
        assert retry.content == first.content
    assert count(engine, "rooms") == 1 and count(engine, "events") == 1


def test_keys_belong_to_their_api_key_and_operation(settings, auth, engine):
    app = create_app(dataclasses.replace(settings, api_keys=settings.api_keys | {OTHER_API_KEY}))
    try:
        client = EntityCheckingClient(app)
        other = {"X-API-Key": OTHER_API_KEY}
        mine = client.post("/v1/items", json={"name": "Lamp"}, headers=keyed(auth, "shared"))
        theirs = client.post("/v1/items", json={"name": "Lamp"}, headers=keyed(other, "shared"))
        assert theirs.status_code == 201 and "Idempotent-Replayed" not in theirs.headers
        assert theirs.json()["id"] != mine.json()["id"]
        assert client.post("/v1/items", json={"name": "Lamp"}, headers=keyed(other, "shared")).content == theirs.content
        question = {"question_code": "7", "category": "c", "message": "m"}
        on_questions = client.post("/v1/questions", json=question, headers=keyed(auth, "shared"))
        assert on_questions.status_code == 201 and "Idempotent-Replayed" not in on_questions.headers
    finally:
        dispose_app(app)
    assert count(engine, "items") == 2 and count(engine, "questions") == 1 and count(engine, "events") == 3


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def with_clock(clock: Clock) -> Module:
    """An override module whose idempotency guard reads `clock`."""

    class ControlledClock(Module):
        @singleton
        @provider
        def idempotent_creates(self, injector: Injector, settings: Settings, schemas: AvroSchemas,
                               request: RequestFacts) -> IdempotentCreates:
            return IdempotentCreates(lambda: injector.get(IdempotencyStore), schemas, settings.idempotency_ttl_seconds,
                                     request, clock=clock)

    return ControlledClock()


def test_an_expired_key_is_a_new_key_and_expired_keys_are_purged(settings, auth, engine):
    clock = Clock()
    app = create_app(dataclasses.replace(settings, idempotency_ttl_seconds=3600), modules=[with_clock(clock)])
    try:
        client = EntityCheckingClient(app)
        first = client.post("/v1/items", json={"name": "Lamp"}, headers=keyed(auth, "reused"))
        client.post("/v1/items", json={"name": "Chair"}, headers=keyed(auth, "forgotten"))
        clock.now += timedelta(minutes=59)
        assert client.post("/v1/items", json={"name": "Lamp"}, headers=keyed(auth, "reused")).content == first.content
        clock.now += timedelta(minutes=1)
        # Expired: another body is no 422 but a new create, whose answer the key now holds.
        later = client.post("/v1/items", json={"name": "Stool"}, headers=keyed(auth, "reused"))
        assert later.status_code == 201 and "Idempotent-Replayed" not in later.headers
        assert later.json()["id"] != first.json()["id"]
        assert client.post("/v1/items", json={"name": "Stool"}, headers=keyed(auth, "reused")).content == later.content
    finally:
        dispose_app(app)
    assert count(engine, "items") == 3
    assert stored_keys(engine) == ["reused"]  # "forgotten" expired and was purged on the way


def test_a_failed_create_keeps_no_answer_so_a_corrected_retry_succeeds(client, auth, engine):
    client.post("/v1/rooms", json=new_room(url="https://example.com/taken"), headers=auth)
    headers = keyed(auth, "fix-me")
    assert_problem(client.post("/v1/rooms", json=new_room(price=-1), headers=headers), 400)
    assert_problem(client.post("/v1/rooms", json=new_room(url="https://example.com/taken"), headers=headers), 409)
    assert stored_keys(engine) == []
    corrected = client.post("/v1/rooms", json=new_room(url="https://example.com/free"), headers=headers)
    assert corrected.status_code == 201 and "Idempotent-Replayed" not in corrected.headers
    assert count(engine, "rooms") == 2 and stored_keys(engine) == ["fix-me"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_with_in_memory_providers_too_a_failed_create_leaves_its_key_free(settings, auth):
    fakes = InMemoryProvidersModule()
    app = create_app(settings, modules=[fakes])
    try:
        client = EntityCheckingClient(app)
        client.post("/v1/questions", json={"question_code": "1", "category": "c", "message": "m"}, headers=auth)
        taken = {"question_code": "1", "category": "c", "message": "again"}
        assert_problem(client.post("/v1/questions", json=taken, headers=keyed(auth, "fix-me")), 409)
        corrected = client.post("/v1/questions", json=taken | {"question_code": "2"}, headers=keyed(auth, "fix-me"))
    finally:
        dispose_app(app)
    assert corrected.status_code == 201 and "Idempotent-Replayed" not in corrected.headers


def test_a_malformed_key_is_a_400_problem_naming_the_header(client, auth, engine):
    for key in ("has space", "x" * 256, '"unbalanced', "comma,separated", '""'):
        problem = assert_problem(client.post("/v1/items", json={"name": "Lamp"}, headers=keyed(auth, key)), 400)
        assert [error["path"] for error in problem["errors"]] == ["header.Idempotency-Key"], key
    assert count(engine, "items") == 0 and stored_keys(engine) == []


@pytest.mark.parametrize("database_url", ["postgresql", "sqlite"], indirect=True)
def test_twenty_concurrent_requests_with_one_key_create_once_and_all_get_the_same_answer(live_server, auth, engine):
    responses = race(live_server.url, [("POST", "/v1/rooms", new_room(), keyed(auth, "burst"))] * 20)
    assert len(responses) == 20
    answers = {(r.status_code, r.content, r.headers.get("Location"), r.headers.get("ETag")) for r in responses}
    assert len(answers) == 1, [r.text for r in responses if r.status_code != 201]
    assert next(iter(answers))[0] == 201
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 19
    assert count(engine, "rooms") == 1 and count(engine, "events") == 1 and stored_keys(engine) == ["burst"]


class GatedItems(InMemoryItemsProvider):
    """Items whose create waits until the test lets it finish."""

    def __init__(self, outbox) -> None:
        super().__init__(outbox)
        self.entered = threading.Event()
        self.release = threading.Event()

    def create(self, new_item):
        self.entered.set()
        assert self.release.wait(10)
        return super().create(new_item)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_where_nothing_can_wait_a_retry_of_a_running_request_is_a_409_problem(settings, auth):
    fakes = InMemoryProvidersModule()
    fakes.items = GatedItems(fakes.events)
    app = create_app(settings, modules=[fakes])
    answers: list[httpx.Response] = []
    try:
        with LiveServer(app) as server:
            def post() -> httpx.Response:
                return httpx.post(f"{server.url}/v1/items", json={"name": "Lamp"}, headers=keyed(auth, "slow"), timeout=20)

            first = threading.Thread(target=lambda: answers.append(post()))
            first.start()
            assert fakes.items.entered.wait(10)
            running = post()
            fakes.items.release.set()
            first.join(10)
            retry = post()
    finally:
        fakes.items.release.set()
        dispose_app(app)
    assert_problem(running, 409)
    assert "still being processed" in running.json()["detail"]
    assert answers[0].status_code == 201 and retry.content == answers[0].content
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert len(fakes.events.read(0, 10)) == 1

"""The provider contracts, held by the in-memory fake and by the SQL provider on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from contract.avro import AvroSchemas
from contract.errors import Conflict, InvalidInput, NotFound
from providers.database import make_engine
from providers.idempotency import CLAIMED, Claim, IdempotencyStore, KeyScope, Outcome, StoredResponse
from providers.items import ItemQuery, StoredItem, decode_item_cursor
from providers.memory_idempotency import InMemoryIdempotencyStore
from providers.memory_items import InMemoryItemsProvider
from providers.memory_questions import InMemoryQuestionsProvider
from providers.memory_rooms import InMemoryRoomsProvider
from providers.questions import QuestionQuery
from providers.rooms import Cursor, GeoCircle, RoomQuery, RoomsProvider
from providers.sql_events import SqlOutbox
from providers.sql_idempotency import SqlIdempotencyStore
from providers.sql_items import SqlItemsProvider
from providers.sql_questions import SqlQuestionsProvider
from providers.sql_rooms import SqlRoomsProvider
from tests.conftest import fresh_database
from tests.support.factories import large_room, new_room

SCHEMAS = AvroSchemas()


def on(connection: sa.Connection):
    """The connection source of a SQL provider that works on this already open connection."""
    return lambda: connection


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def connection_or_none(request: pytest.FixtureRequest, tmp_path) -> Iterator[sa.Connection | None]:
    """None for the in-memory implementations, else a connection to a fresh database of that backend."""
    if request.param == "memory":
        yield None
        return
    yield from _connection_to_fresh_database(request, tmp_path)


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_connection(request: pytest.FixtureRequest, tmp_path) -> Iterator[sa.Connection]:
    """A connection to a fresh database of each SQL backend."""
    yield from _connection_to_fresh_database(request, tmp_path)


def _connection_to_fresh_database(request: pytest.FixtureRequest, tmp_path) -> Iterator[sa.Connection]:
    with fresh_database(request, request.param, tmp_path) as url:
        engine = make_engine(url, pool_size=2)
        with engine.connect() as connection:
            yield connection
            connection.rollback()
        engine.dispose()


@pytest.fixture
def rooms(connection_or_none: sa.Connection | None) -> RoomsProvider:
    """A rooms provider of each kind; SQL ones work inside one transaction, as a request would."""
    if connection_or_none is None:
        return InMemoryRoomsProvider()
    return SqlRoomsProvider(on(connection_or_none), SqlOutbox(on(connection_or_none), SCHEMAS))


def test_create_then_get_round_trips(rooms):
    stored = rooms.create(new_room(images=[{"url": "https://example.com/i.jpg"}]))
    assert stored.version == 1
    assert rooms.get(stored.room["id"]) == stored
    assert stored.room["created_at"].tzinfo is not None


def test_every_member_reads_back_as_it_was_written(rooms):
    # Distinct values in every member, so a row read in the wrong column order cannot pass.
    sent = new_room(
        name="Name", description="Description", price=700, recurrency="weekly", provider="Provider",
        monthly_price=3000, property_size="Size", coordinates={"lat": 1.5, "lon": 2.5}, is_visible=False,
        area={"name": "Area", "country": "Country", "city": "City", "coordinates": {"lat": 3.5, "lon": 4.5}},
        images=[{"url": "https://example.com/a.jpg"}, {"url": "https://example.com/b.jpg"}],
    )
    created = rooms.create(sent)
    for room in (created.room, rooms.get(created.room["id"]).room, rooms.search(RoomQuery(city="City")).items[0]):
        assert {k: v for k, v in room.items() if k not in ("id", "created_at", "updated_at")} == sent
        assert room["created_at"] == room["updated_at"] == created.room["created_at"]


def test_create_with_taken_url_raises_conflict_naming_the_owner(rooms):
    first = rooms.create(new_room(url="https://example.com/x"))
    with pytest.raises(Conflict) as caught:
        rooms.create(new_room(url="https://example.com/x"))
    assert caught.value.conflicting_id == first.room["id"]


def test_replace_bumps_version_and_keeps_identity(rooms):
    stored = rooms.create(new_room())
    changed = dict(stored.room, price=1)
    for key in ("id", "created_at", "updated_at"):
        changed.pop(key)
    updated = rooms.replace(stored.room["id"], changed)
    assert updated.version == 2 and updated.room["price"] == 1
    assert updated.room["id"] == stored.room["id"] and updated.room["created_at"] == stored.room["created_at"]


def test_replace_into_a_taken_url_raises_conflict_and_keeps_the_room(rooms):
    first = rooms.create(new_room())
    second = rooms.create(new_room())
    body = {k: v for k, v in second.room.items() if k not in ("id", "created_at", "updated_at")}
    with pytest.raises(Conflict):
        rooms.replace(second.room["id"], body | {"url": first.room["url"]})
    assert rooms.get(second.room["id"]).room["url"] == second.room["url"]


def test_missing_rooms_raise_not_found(rooms):
    missing = str(uuid.uuid4())
    with pytest.raises(NotFound):
        rooms.get(missing)
    with pytest.raises(NotFound):
        rooms.delete(missing)
    with pytest.raises(NotFound):
        rooms.replace(missing, new_room())


def test_delete_removes(rooms):
    stored = rooms.create(new_room())
    rooms.delete(stored.room["id"])
    with pytest.raises(NotFound):
        rooms.get(stored.room["id"])


def test_search_filters_and_pages_identically_on_every_implementation(rooms):
    for price in (300, 100, 200, 100, 300):
        rooms.create(new_room(price=price))
    rooms.create(new_room(price=150, coordinates={"lat": 48.137, "lon": 11.575}, area=None))
    first = rooms.search(RoomQuery(sort="price", limit=2, max_price=250))
    assert [r["price"] for r in first.items] == [100, 100] and first.next_cursor
    second = rooms.search(RoomQuery(sort="price", limit=2, max_price=250, after=Cursor.decode(first.next_cursor, "price")))
    assert [r["price"] for r in second.items] == [150, 200] and second.next_cursor is None
    near_munich = rooms.search(RoomQuery(near=GeoCircle(48.14, 11.58, 5)))
    assert [r["price"] for r in near_munich.items] == [150]
    assert [r["price"] for r in rooms.search(RoomQuery(city="Berlin", min_price=250)).items] == [300, 300]


def test_a_cursor_for_another_sort_is_invalid_input():
    token = Cursor("price", 10, str(uuid.uuid4())).encode()
    with pytest.raises(InvalidInput):
        Cursor.decode(token, "created_at")


def test_sql_provider_never_commits(database_url):
    engine = make_engine(database_url, pool_size=2)
    with engine.connect() as connection:
        SqlRoomsProvider(on(connection), SqlOutbox(on(connection), SCHEMAS)).create(new_room())
        # Closing without a commit: whatever the provider wrote must go with it.
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM rooms")).scalar_one() == 0
    engine.dispose()



def test_items_providers_agree(connection_or_none):
    items = InMemoryItemsProvider() if connection_or_none is None else SqlItemsProvider(on(connection_or_none), SqlOutbox(on(connection_or_none), SCHEMAS))
    lamp, chair, big = (items.create({"name": n}) for n in ("Lamp", "Chair", "BIG LAMP"))
    assert lamp.item["id"] < chair.item["id"] < big.item["id"] and lamp.version == 1
    assert items.replace(chair.item["id"], {"name": "Stool"}) == StoredItem({"id": chair.item["id"], "name": "Stool"}, 2)
    page = items.search(ItemQuery(name="lamp", limit=1))
    assert [i["name"] for i in page.items] == ["Lamp"] and page.next_cursor
    rest = items.search(ItemQuery(name="lamp", limit=1, after_id=decode_item_cursor(page.next_cursor)))
    assert [i["name"] for i in rest.items] == ["BIG LAMP"] and rest.next_cursor is None
    items.delete(lamp.item["id"])
    for call in (lambda: items.get(lamp.item["id"]), lambda: items.delete(lamp.item["id"]),
                 lambda: items.replace(lamp.item["id"], {"name": "x"})):
        with pytest.raises(NotFound):
            call()


def test_questions_providers_agree(connection_or_none):
    questions = InMemoryQuestionsProvider() if connection_or_none is None else SqlQuestionsProvider(on(connection_or_none), SqlOutbox(on(connection_or_none), SCHEMAS))
    stored = questions.create({"question_code": "20", "category": "a", "message": "m", "extra": 1})
    assert stored == {"question_code": "20", "category": "a", "message": "m"}
    assert questions.get("20") == stored
    with pytest.raises(Conflict):
        questions.create({"question_code": "20", "category": "b", "message": "n"})
    questions.create({"question_code": "100", "category": "a", "message": "m"})
    questions.create({"question_code": "3", "category": "b", "message": "m"})
    assert [q["question_code"] for q in questions.search(QuestionQuery()).items] == ["100", "20", "3"]
    assert [q["question_code"] for q in questions.search(QuestionQuery(category="a", after_code="100")).items] == ["20"]
    questions.delete("20")
    with pytest.raises(NotFound):
        questions.get("20")


# --- idempotency keys ---------------------------------------------------------------------------

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
# Bytes that are not UTF-8 (an Avro container starts like this), so the body must round-trip as bytes.
ANSWER = StoredResponse(201, (("Content-Type", "application/avro"), ("Location", "/v1/items/1")), b"Obj\x01\x00\xff\n")
OTHER_ANSWER = StoredResponse(201, (("Content-Type", "application/json"), ("ETag", '"1"')), b'{"id": 2}\n')


@pytest.fixture
def keys(connection_or_none: sa.Connection | None) -> IdempotencyStore:
    """An idempotency store of each kind; SQL ones work inside one transaction, as a request would."""
    return InMemoryIdempotencyStore() if connection_or_none is None else SqlIdempotencyStore(on(connection_or_none))


def test_a_completed_key_replays_its_answer_to_the_same_fingerprint_only(keys):
    scope = KeyScope("key:a", "create_item", "k1")
    assert keys.claim(scope, "f1", T0, T0 + HOUR) == CLAIMED
    assert keys.claim(scope, "f1", T0, T0 + HOUR).outcome is Outcome.IN_PROGRESS
    keys.complete(scope, ANSWER)
    assert keys.claim(scope, "f1", T0 + HOUR / 2, T0 + HOUR * 1.5) == Claim(Outcome.REPLAY, ANSWER)
    assert keys.claim(scope, "f2", T0 + HOUR / 2, T0 + HOUR * 1.5).outcome is Outcome.MISMATCH


def test_keys_of_other_principals_and_operations_are_independent(keys):
    mine = KeyScope("key:a", "create_item", "k1")
    keys.claim(mine, "f1", T0, T0 + HOUR)
    keys.complete(mine, ANSWER)
    for scope in (KeyScope("key:b", "create_item", "k1"), KeyScope("key:a", "create_room", "k1")):
        assert keys.claim(scope, "f2", T0, T0 + HOUR) == CLAIMED
        keys.complete(scope, OTHER_ANSWER)
    assert keys.claim(mine, "f1", T0, T0 + HOUR) == Claim(Outcome.REPLAY, ANSWER)


def test_an_expired_key_is_claimed_anew_whatever_its_fingerprint(keys):
    scope = KeyScope("key:a", "create_item", "k1")
    keys.claim(scope, "f1", T0, T0 + HOUR)
    keys.complete(scope, ANSWER)
    assert keys.claim(scope, "f2", T0 + HOUR, T0 + 2 * HOUR) == CLAIMED
    keys.complete(scope, OTHER_ANSWER)
    assert keys.claim(scope, "f2", T0 + HOUR, T0 + 2 * HOUR) == Claim(Outcome.REPLAY, OTHER_ANSWER)


def test_an_abandoned_claim_leaves_the_key_free_once_the_request_has_ended(keys, connection_or_none):
    scope = KeyScope("key:a", "create_item", "k1")
    keys.claim(scope, "f1", T0, T0 + HOUR)
    keys.abandon(scope)
    if connection_or_none is not None:
        connection_or_none.rollback()  # what a failed request's transaction does
    assert keys.claim(scope, "f2", T0, T0 + HOUR) == CLAIMED


def test_purge_deletes_expired_keys_only_and_at_most_the_limit(keys):
    scopes = [KeyScope("key:a", "create_item", f"k{n}") for n in range(4)]
    for n, scope in enumerate(scopes):
        keys.claim(scope, "f", T0, T0 + HOUR * (1 if n < 3 else 2))
        keys.complete(scope, ANSWER)
    assert keys.purge_expired(T0 + HOUR, limit=2) == 2
    assert keys.purge_expired(T0 + HOUR) == 1
    assert keys.purge_expired(T0 + HOUR) == 0
    assert keys.claim(scopes[0], "f", T0 + HOUR, T0 + 2 * HOUR) == CLAIMED
    assert keys.claim(scopes[3], "f", T0 + HOUR, T0 + 2 * HOUR) == Claim(Outcome.REPLAY, ANSWER)


def test_a_search_reads_whole_only_the_large_rooms_its_page_keeps(sql_connection):
    rooms = SqlRoomsProvider(on(sql_connection), SqlOutbox(on(sql_connection), SCHEMAS), max_page_bytes=64 * 1024)
    large = [rooms.create(large_room()).room["id"] for _ in range(5)]
    small = rooms.create(new_room()).room["id"]
    statements: list[tuple[str, object]] = []

    def record(_connection, _cursor, statement, parameters, *_):
        statements.append((statement, parameters))

    sa.event.listen(sql_connection, "before_cursor_execute", record)
    page = rooms.search(RoomQuery(limit=100))
    sa.event.remove(sql_connection, "before_cursor_execute", record)

    # Three rooms of about 30 KB start under 64 KiB; the page ends there and says more follow.
    assert [room["id"] for room in page.items] == large[:3] and page.next_cursor is not None
    assert all(room == rooms.get(room["id"]).room for room in page.items)
    # The search itself held back the large rooms' long fields; only the three kept were then read whole.
    search, read_whole = statements
    assert "CASE WHEN" in search[0]
    assert sorted(str(uuid.UUID(str(value))) for value in _flat_values(read_whole[1])) == sorted(large[:3])
    rest = rooms.search(RoomQuery(limit=100, after=Cursor.decode(page.next_cursor, "created_at")))
    assert [room["id"] for room in rest.items] == [*large[3:], small] and rest.next_cursor is None


def _flat_values(parameters) -> list:
    values = parameters.values() if isinstance(parameters, dict) else parameters
    return [value for value in values if not isinstance(value, int)]

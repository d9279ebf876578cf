"""Hostile and odd input: each class a probe found answered with a 500, an unbounded answer or wrongly accepted.

Every case goes through the real app on SQLite and PostgreSQL and checks the status, that the problem
says which limit was hit, and that nothing was stored.
"""

from __future__ import annotations

import base64
import io
import json
import math
import uuid

import fastavro
import orjson
import pytest
import sqlalchemy as sa

from contract.avro import AvroSchemas, to_datum
from settings import Settings
from tests.integration.test_rooms_api import assert_problem, count_rooms
from tests.support.entity_check import client_with
from tests.support.factories import MERGE_PATCH, large_room, large_room_of_emoji, new_room


def nested(levels: int, leaf: object = "x") -> object:
    """Return `leaf` inside `levels` arrays."""
    document = leaf
    for _ in range(levels):
        document = [document]
    return document


def nested_json(levels: int) -> bytes:
    """The JSON text of `levels` nested arrays, built as text (the recursive encoder could not write it)."""
    return b"[" * levels + b'"x"' + b"]" * levels


def count_rows(engine: sa.Engine, table: str) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


# --- JSON nested beyond the depth limit: refused before anything recursive runs --------------------------------


@pytest.mark.parametrize("levels", [33, 1_000, 100_000])
def test_a_body_nested_beyond_the_limit_in_a_string_field_is_400_naming_the_limit(client, auth, engine, levels):
    body = b'{"name": ' + nested_json(levels) + b"}"
    problem = assert_problem(client.post("/v1/items", content=body, headers={**auth, "Content-Type": "application/json"}), 400)
    assert "32 levels" in problem["detail"] and "APP_MAX_JSON_DEPTH" in problem["detail"]
    assert count_rows(engine, "items") == 0


def test_a_merge_patch_nested_beyond_the_limit_is_400_and_changes_nothing(client, auth):
    room = client.post("/v1/rooms", json=new_room(), headers=auth).json()
    body = b'{"description": ' + nested_json(1_000) + b"}"
    problem = assert_problem(
        client.patch(f"/v1/rooms/{room['id']}", content=body, headers={**auth, "Content-Type": MERGE_PATCH}), 400
    )
    assert "APP_MAX_JSON_DEPTH" in problem["detail"]
    assert client.get(f"/v1/rooms/{room['id']}").json() == room


def test_a_deep_member_that_questions_ignore_is_still_refused(client, auth, engine):
    body = {"question_code": "1001", "category": "general", "message": "m", "ignored": nested(40)}
    problem = assert_problem(client.post("/v1/questions", json=body, headers=auth), 400)
    assert "APP_MAX_JSON_DEPTH" in problem["detail"]
    assert count_rows(engine, "questions") == 0


def test_a_body_at_the_depth_limit_is_validated_as_usual(client, auth):
    # 32 levels: the name is an array, so the answer is the ordinary validation error, not the depth limit.
    problem = assert_problem(client.post("/v1/items", json={"name": nested(31)}, headers=auth), 400)
    assert problem["errors"][0]["path"] == "$.name" and "APP_MAX_JSON_DEPTH" not in problem["detail"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_depth_limit_is_a_setting(settings, auth):
    with client_with(settings, max_json_depth=3) as client:
        assert client.post("/v1/items", json={"name": "lamp"}, headers=auth).status_code == 201
        problem = assert_problem(client.post("/v1/items", json={"name": nested(3)}, headers=auth), 400)
        assert "3 levels" in problem["detail"]


# --- error lists: capped, counted with bounded work, the answer bounded ------------------------------------


def test_a_body_with_more_values_than_the_limit_is_400_before_it_is_validated(client, auth, engine):
    # Valid members beyond maxItems: jsonschema would check each of them (0.9 s of a worker for 1 MB).
    body = orjson.dumps(new_room(images=[{"url": f"https://e.co/{i}"} for i in range(12_000)]))
    problem = assert_problem(client.post("/v1/rooms", content=body, headers={**auth, "Content-Type": "application/json"}), 400)
    assert "10000 values" in problem["detail"] and "APP_MAX_JSON_VALUES" in problem["detail"]
    assert count_rooms(engine) == 0


def test_a_body_with_a_hundred_thousand_bad_members_lists_the_first_hundred(settings, auth, engine):
    # Within APP_MAX_JSON_VALUES here, to show what bounds the errors themselves.
    with client_with(settings, max_json_values=200_000) as client:
        body = orjson.dumps(new_room(images=[1] * 100_000))
        response = client.post("/v1/rooms", content=body, headers={**auth, "Content-Type": "application/json"})
        problem = assert_problem(response, 400)
        assert len(problem["errors"]) == 100
        assert problem["errors_truncated"] is True
        # Counting stops at ten times the listed number: the work is bounded, whatever the body holds.
        assert problem["errors_total"] == 1_000
        assert "1000 or more validation errors" in problem["detail"] and "first 100 are listed" in problem["detail"]
        assert len(response.content) < 32 * 1024
        assert count_rooms(engine) == 0


# --- answers bounded in bytes: `limit` counts entities, APP_MAX_PAGE_BYTES bounds what they add up to ---------


def test_a_page_of_large_rooms_stops_at_the_byte_bound_and_the_cursor_goes_on(settings, auth):
    with client_with(settings, max_page_bytes=64 * 1024) as client:
        created = {client.post("/v1/rooms", json=large_room(), headers=auth).json()["id"] for _ in range(7)}
        client.post("/v1/rooms", json=new_room(), headers=auth)  # small rooms still fill a page to its limit
        seen, sizes, url = [], [], "/v1/rooms?limit=100&sort=price"
        while url:
            page = client.get(url)
            assert page.status_code == 200
            sizes.append(len(page.content))
            seen += [room["id"] for room in page.json()["data"]]
            cursor = page.json()["next_cursor"]
            url = f"/v1/rooms?limit=100&sort=price&cursor={cursor}" if cursor else None
        # Each page holds the rooms that start under 64 KiB (three of about 30 KB), then links to the next.
        assert [len(seen)] + [len(sizes)] == [8, 3]
        assert set(seen) >= created and len(set(seen)) == 8
        assert max(sizes) < 128 * 1024


def test_the_event_feed_stops_at_the_byte_bound_and_goes_on_from_its_last_position(settings, auth):
    with client_with(settings, max_page_bytes=64 * 1024) as client:
        for _ in range(7):
            assert client.post("/v1/rooms", json=large_room(), headers=auth).status_code == 201
        pages = _events_pages(client)
        positions = [event["position"] for page in pages for event in page["data"]]
        assert [len(page["data"]) for page in pages] == [3, 3, 1]
        assert positions == sorted(set(positions)) and len(positions) == 7
        avro = client.get("/v1/events?after=0&limit=1000", headers={"Accept": "application/avro"})
        assert avro.status_code == 200 and len(avro.content) < 128 * 1024


def test_the_byte_bound_counts_bytes_not_characters(settings, auth, engine):
    with client_with(settings, max_page_bytes=64 * 1024) as client:
        created = [client.post("/v1/rooms", json=large_room_of_emoji(), headers=auth).json()["id"] for _ in range(4)]
        page = client.get("/v1/rooms?limit=100").json()
        # About 7,500 characters each, but 30 KB: three start under 64 KiB, as the rooms of ASCII do.
        assert [room["id"] for room in page["data"]] == created[:3] and page["next_cursor"]
        assert [len(page["data"]) for page in _events_pages(client)] == [3, 1]


def test_the_migration_measures_stored_rooms_in_bytes(database_url, engine, auth):
    from alembic import command

    from providers.database import alembic_config

    with client_with(Settings(database_url=database_url, api_keys=frozenset({"k"}))) as client:
        room = client.post("/v1/rooms", json=large_room_of_emoji(), headers={"X-API-Key": "k"}).json()
    written = _stored_bytes(engine, room["id"])
    command.downgrade(alembic_config(database_url), "0005")
    command.upgrade(alembic_config(database_url), "0006")
    assert 29_000 < written < 31_000
    measured = _stored_bytes(engine, room["id"])
    # Never less than the service writes, so a page never grows past its bound; more for these rooms, as the
    # images' stored JSON has each emoji as two \u escapes (12 bytes, where the answer's UTF-8 has 4).
    assert written - 200 < measured < 3 * written


def _stored_bytes(engine: sa.Engine, room_id: str) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.text("SELECT stored_bytes FROM rooms WHERE id = :id"),
                                  {"id": uuid.UUID(room_id) if engine.dialect.name == "postgresql" else uuid.UUID(room_id).hex}).scalar_one()


def _events_pages(client) -> list[dict]:
    pages, after = [], 0
    while (page := client.get(f"/v1/events?after={after}&limit=1000").json())["data"]:
        pages.append(page)
        after = page["last_position"]
    return pages


def test_the_byte_bound_never_leaves_a_page_empty(settings, auth):
    with client_with(settings, max_page_bytes=1024) as client:
        first, second = (client.post("/v1/rooms", json=large_room(), headers=auth).json()["id"] for _ in range(2))
        page = client.get("/v1/rooms?sort=created_at").json()
        assert [room["id"] for room in page["data"]] == [first] and page["next_cursor"]
        assert [room["id"] for room in client.get(f"/v1/rooms?cursor={page['next_cursor']}").json()["data"]] == [second]
        assert len(client.get("/v1/events?after=0&limit=1000").json()["data"]) == 1


def test_every_error_is_listed_while_there_are_few(client, auth):
    problem = assert_problem(client.post("/v1/rooms", json=new_room(price=-1, images=[1, 2]), headers=auth), 400)
    assert len(problem["errors"]) == 3 and "errors_truncated" not in problem and "errors_total" not in problem


def test_a_long_value_is_quoted_only_in_part(client, auth):
    response = client.post("/v1/items", json={"name": "x" * 600_000}, headers=auth)
    problem = assert_problem(response, 400)
    assert len(problem["errors"][0]["message"]) <= 300 and problem["errors"][0]["message"].endswith("…")
    assert len(response.content) < 4 * 1024


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_number_of_listed_errors_is_a_setting(settings, auth):
    with client_with(settings, max_problem_errors=3) as client:
        problem = assert_problem(client.post("/v1/rooms", json=new_room(images=[1] * 50), headers=auth), 400)
        assert len(problem["errors"]) == 3 and problem["errors_total"] == 30 and problem["errors_truncated"] is True


# --- a body without Content-Type: 415, not a guess that fails in the handler -------------------------------


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("POST", "/v1/rooms", new_room()),
        ("POST", "/v1/items", {"name": "lamp"}),
        ("POST", "/v1/questions", {"question_code": "7", "category": "c", "message": "m"}),
    ],
)
def test_a_create_with_a_body_and_no_content_type_is_415(client, auth, engine, method, path, body):
    problem = assert_problem(client.request(method, path, content=orjson.dumps(body), headers=auth), 415)
    assert "no Content-Type" in problem["detail"]
    assert count_rows(engine, path.rsplit("/", 1)[1]) == 0


def test_a_change_with_a_body_and_no_content_type_is_415_and_changes_nothing(client, auth):
    room = client.post("/v1/rooms", json=new_room(), headers=auth).json()
    item = client.post("/v1/items", json={"name": "lamp"}, headers=auth).json()
    assert_problem(client.patch(f"/v1/rooms/{room['id']}", content=b'{"price": 1}', headers=auth), 415)
    assert_problem(client.put(f"/v1/items/{item['id']}", content=b'{"name": "x"}', headers=auth), 415)
    assert client.get(f"/v1/rooms/{room['id']}").json() == room
    assert client.get(f"/v1/items/{item['id']}").json() == item


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
def test_a_compressed_body_is_415_and_never_inflated(client, auth, engine, encoding):
    headers = {**auth, "Content-Type": "application/json", "Content-Encoding": encoding}
    response = client.post("/v1/items", content=b"\x1f\x8b\x08\x00" + b"\x00" * 64, headers=headers)
    assert "Content-Encoding" in assert_problem(response, 415)["detail"]
    assert response.headers["accept-encoding"] == "identity"
    assert count_rows(engine, "items") == 0


def test_a_transfer_coding_other_than_chunked_is_400(client, auth):
    headers = {**auth, "Content-Type": "application/json", "Transfer-Encoding": "gzip, chunked"}
    assert "chunked" in assert_problem(client.post("/v1/items", content=b"{}", headers=headers), 400)["detail"]


# --- crafted cursors: out-of-range numbers, NUL, unrepresentable timestamps ---------------------------------


def cursor(payload: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "path",
    [
        "/v1/rooms?sort=price&cursor=" + cursor({"s": "price", "v": 2**64 - 1, "i": str(uuid.uuid4())}),
        "/v1/rooms?sort=-price&cursor=" + cursor({"s": "-price", "v": -(2**63) - 1, "i": str(uuid.uuid4())}),
        "/v1/rooms?cursor=" + cursor({"s": "created_at", "v": "9999-12-31T23:59:59-23:59", "i": str(uuid.uuid4())}),
        "/v1/rooms?cursor=" + cursor({"s": "created_at", "v": "0001-01-01T00:00:00+23:59", "i": str(uuid.uuid4())}),
        "/v1/items?cursor=" + cursor({"i": 2**64 - 1}),
        "/v1/items?cursor=" + cursor({"i": -1}),
        "/v1/items?cursor=" + cursor({"i": 10**30}),
        "/v1/questions?cursor=" + cursor({"c": "1\u0000"}),
        "/v1/questions?cursor=" + cursor({"c": "12345678901"}),
    ],
)
def test_a_crafted_cursor_is_400_on_the_cursor(client, path):
    problem = assert_problem(client.get(path), 400)
    assert problem["errors"][0]["path"] == "query.cursor"


# --- numbers that are not numbers: NaN and infinity are refused wherever a number is taken ------------------


@pytest.mark.parametrize(
    "path, parameter",
    [
        ("/v1/rooms?near=52.5,13.4&radius_km=nan", "query.radius_km"),
        ("/v1/rooms?near=52.5,13.4&radius_km=inf", "query.radius_km"),
        ("/v1/rooms?near=52.5,13.4&radius_km=-inf", "query.radius_km"),
        ("/v1/events?wait=nan", "query.wait"),
        ("/v1/events?wait=inf", "query.wait"),
    ],
)
def test_a_non_finite_number_in_a_parameter_is_400(client, path, parameter):
    problem = assert_problem(client.get(path), 400)
    assert any(error["path"] == parameter and "finite" in error["message"] for error in problem["errors"])


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_non_finite_number_in_an_avro_body_is_400(client, auth, engine, value):
    schema = AvroSchemas().get("NewRoom")
    buffer = io.BytesIO()
    fastavro.writer(buffer, schema.parsed, [to_datum(schema.document, new_room(coordinates={"lat": value, "lon": 13.4}))])
    response = client.post("/v1/rooms", content=buffer.getvalue(), headers={**auth, "Content-Type": "application/avro"})
    problem = assert_problem(response, 400)
    assert problem["errors"][0]["path"] == "$.coordinates.lat" and "finite" in problem["errors"][0]["message"]
    assert count_rooms(engine) == 0


# --- header names as the spec names them -------------------------------------------------------------------


def test_an_underscore_look_alike_of_a_header_does_not_reach_the_handler(client, auth, engine):
    headers = {**auth, "Idempotency_Key": "k" * 300}
    first = client.post("/v1/items", json={"name": "lamp"}, headers=headers)
    second = client.post("/v1/items", json={"name": "lamp"}, headers=headers)
    assert first.status_code == second.status_code == 201 and first.json()["id"] != second.json()["id"]
    assert "idempotent-replayed" not in second.headers
    assert count_rows(engine, "idempotency_keys") == 0


def test_a_header_sent_twice_is_validated_as_the_handler_reads_it(client, auth, engine):
    headers = [*auth.items(), ("Content-Type", "application/json"), ("Idempotency-Key", "a-valid-key"),
               ("Idempotency-Key", "k" * 300)]
    problem = assert_problem(client.post("/v1/items", content=b'{"name": "lamp"}', headers=headers), 400)
    assert [error["path"] for error in problem["errors"]] == ["header.Idempotency-Key"] * len(problem["errors"])
    assert count_rows(engine, "items") == 0 and count_rows(engine, "idempotency_keys") == 0


def test_a_header_sent_twice_within_its_rules_is_one_list(client, auth):
    room = client.post("/v1/rooms", json=new_room(), headers=auth)
    headers = [*auth.items(), ("If-Match", '"7"'), ("If-Match", room.headers["ETag"])]
    assert client.delete(f"/v1/rooms/{room.json()['id']}", headers=headers).status_code == 204


# --- protocol upgrades ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("upgrade", ["websocket", "h2c"])
def test_an_upgrade_request_is_a_400_problem(client, upgrade):
    problem = assert_problem(client.get("/v1/health", headers={"Connection": "Upgrade", "Upgrade": upgrade}), 400)
    assert "Upgrade" in problem["detail"] and problem["request_id"]


def test_a_websocket_handshake_is_refused_with_a_problem(app):
    from starlette.testclient import WebSocketDenialResponse

    with pytest.raises(WebSocketDenialResponse) as denied:
        with app.test_client().websocket_connect("/v1/rooms"):
            pass
    assert denied.value.status_code == 400
    assert denied.value.headers["content-type"] == "application/problem+json"
    assert denied.value.json()["request_id"] == denied.value.headers["x-request-id"]


# --- chunked request bodies ---------------------------------------------------------------------------------


def test_a_chunked_body_is_read_like_any_other(client, auth):
    def chunks():
        yield b'{"name": '
        yield b'"lamp"}'

    created = client.post("/v1/items", content=chunks(), headers={**auth, "Content-Type": "application/json"})
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "lamp"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_chunked_body_over_the_limit_is_413(settings, auth):
    with client_with(settings, max_body_bytes=1024) as client:
        def chunks():
            for _ in range(10):
                yield b" " * 200

        response = client.post("/v1/items", content=chunks(), headers={**auth, "Content-Type": "application/json"})
        assert "1024 bytes" in assert_problem(response, 413)["detail"]


# --- Content-Type and Content-Length as HTTP writes them: case, whitespace, one of each ---------------------

QUESTION = {"question_code": "1001", "category": "general", "message": "m"}


def _create(client, auth, path: str, body: object, content_type: str):
    return client.post(path, content=orjson.dumps(body), headers={**auth, "Content-Type": content_type})


@pytest.mark.parametrize(
    "content_type",
    ["Application/JSON", "APPLICATION/JSON; CHARSET=UTF-8", "application/json ; charset=utf-8", "application/json ",
     'application/json;charset="utf-8"', "application/json;;charset=utf-8"],
)
@pytest.mark.parametrize("path, body", [("/v1/rooms", new_room()), ("/v1/items", {"name": "lamp"}), ("/v1/questions", QUESTION)])
def test_a_media_type_in_any_case_and_with_optional_whitespace_is_the_media_type(client, auth, path, body, content_type):
    created = _create(client, auth, path, body, content_type)
    assert created.status_code == 201, created.text
    assert client.get(created.headers["Location"]).json() == created.json()


def test_a_replace_and_a_merge_patch_in_upper_case_are_read_as_json(client, auth):
    item = client.post("/v1/items", json={"name": "lamp"}, headers=auth).json()
    replaced = client.put(f"/v1/items/{item['id']}", content=b'{"name": "desk"}',
                          headers={**auth, "Content-Type": "APPLICATION/JSON"})
    assert replaced.status_code == 200 and replaced.json()["name"] == "desk", replaced.text
    room = client.post("/v1/rooms", json=new_room(), headers=auth).json()
    patch = {**auth, "Content-Type": MERGE_PATCH.upper()}
    problem = assert_problem(client.patch(f"/v1/rooms/{room['id']}", content=b'{"price":-5}', headers=patch), 400)
    assert problem["errors"][0]["path"] == "$.price" and "b'" not in problem["detail"]
    assert client.patch(f"/v1/rooms/{room['id']}", content=b'{"price":5}', headers=patch).json()["price"] == 5


def test_an_avro_body_in_upper_case_is_read_as_avro(client, auth):
    schema = AvroSchemas().get("NewItem")
    buffer = io.BytesIO()
    fastavro.writer(buffer, schema.parsed, [to_datum(schema.document, {"name": "lamp"})])
    created = client.post("/v1/items", content=buffer.getvalue(), headers={**auth, "Content-Type": "APPLICATION/AVRO"})
    assert created.status_code == 201 and created.json()["name"] == "lamp", created.text


@pytest.mark.parametrize(
    "content_type, body",
    [("application/json; charset=utf-16", '{"name": "lamp"}'.encode("utf-16")),
     ("application/json; charset=UTF-16", b'{"name": "lamp"}'),
     ("application/json; charset=bogus", b'{"name": "lamp"}'),
     ("application/json; charset=latin-1", b'{"name": "lamp"}')],
)
def test_json_in_a_charset_other_than_utf_8_is_415_naming_the_rule(client, auth, engine, content_type, body):
    problem = assert_problem(client.post("/v1/items", content=body, headers={**auth, "Content-Type": content_type}), 415)
    assert "RFC 8259" in problem["detail"] and "charset=" in problem["detail"]
    assert count_rows(engine, "items") == 0


def test_a_merge_patch_in_another_charset_is_415_and_changes_nothing(client, auth):
    room = client.post("/v1/rooms", json=new_room(), headers=auth).json()
    headers = {**auth, "Content-Type": MERGE_PATCH + "; charset=utf-16"}
    assert_problem(client.patch(f"/v1/rooms/{room['id']}", content=b'{"price": 5}', headers=headers), 415)
    assert client.get(f"/v1/rooms/{room['id']}").json() == room


@pytest.mark.parametrize("content_type", ["json", "application/json; charset", "application/json, application/avro", "", "/"])
def test_a_content_type_that_is_not_a_media_type_is_400(client, auth, engine, content_type):
    response = client.post("/v1/items", content=b'{"name": "lamp"}', headers={**auth, "Content-Type": content_type})
    assert "not a media type" in assert_problem(response, 400)["detail"]
    assert count_rows(engine, "items") == 0


@pytest.mark.parametrize("second", ["application/avro", "application/json"])
def test_a_content_type_given_twice_is_400(client, auth, engine, second):
    headers = [*auth.items(), ("Content-Type", "application/json"), ("Content-Type", second)]
    problem = assert_problem(client.post("/v1/items", content=b'{"name": "lamp"}', headers=headers), 400)
    assert "Content-Type given more than once" in problem["detail"]
    assert count_rows(engine, "items") == 0


@pytest.mark.parametrize("length", [" 16 ", "16 ", "\t16", "0016"])
def test_a_content_length_with_whitespace_around_its_digits_is_read(client, auth, length):
    headers = {**auth, "Content-Type": "application/json", "Content-Length": length}
    created = client.post("/v1/items", content=b'{"name": "lamp"}', headers=headers)
    assert created.status_code == 201 and created.json()["name"] == "lamp", created.text


@pytest.mark.parametrize("length", ["abc", "-1", "+16", "1 6", "", "0x10"])
def test_a_content_length_that_is_not_a_number_is_400(client, auth, engine, length):
    headers = {**auth, "Content-Type": "application/json", "Content-Length": length}
    problem = assert_problem(client.post("/v1/items", content=b'{"name": "lamp"}', headers=headers), 400)
    assert "Content-Length" in problem["detail"]
    assert count_rows(engine, "items") == 0


@pytest.mark.parametrize("length", ["1048577", "9" * 5_000, "0" * 5_000 + "1048577"])
def test_a_content_length_over_the_limit_is_413_however_many_digits_it_has(client, auth, length):
    headers = {**auth, "Content-Type": "application/json", "Content-Length": length}
    assert "1048576 bytes" in assert_problem(client.post("/v1/items", content=b'{"name": "lamp"}', headers=headers), 413)["detail"]

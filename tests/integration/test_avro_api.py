"""Avro on the wire through the real app: negotiation, container files both ways, schema endpoints, interop."""

from __future__ import annotations

import decimal
import io
import json

import avro.datafile
import avro.io
import avro.schema
import fastavro
import pytest
import sqlalchemy as sa

from contract.avro import AvroSchemas
from tests.integration.test_rooms_api import assert_problem
from tests.support.factories import new_room

AVRO = "application/avro"
SCHEMAS = AvroSchemas()


def rabin_fingerprint(canonical: str) -> str:
    """CRC-64-AVRO as the Avro specification defines it, written out independently of fastavro."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in canonical.encode():
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp.to_bytes(8, "little").hex()


def apache_records(content: bytes) -> tuple[dict, list[dict]]:
    """Read a container file with the Apache implementation, knowing nothing in advance."""
    with avro.datafile.DataFileReader(io.BytesIO(content), avro.io.DatumReader()) as reader:
        writer_schema = json.loads(reader.meta["avro.schema"].decode())
        return writer_schema, list(reader)


def apache_container(schema: dict, records: list[dict]) -> bytes:
    """Write a container file with the Apache implementation and the given writer schema."""
    buffer = io.BytesIO()
    writer = avro.datafile.DataFileWriter(buffer, avro.io.DatumWriter(), avro.schema.parse(json.dumps(schema)))
    for record in records:
        writer.append(record)
    writer.flush()
    content = buffer.getvalue()
    writer.close()
    return content


def avro_body(schema: str, document: dict) -> bytes:
    return SCHEMAS.encode_container(schema, [document])


def rows(engine, table: str) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


# --- responses ----------------------------------------------------------------------------------


def test_a_room_as_avro_is_a_container_file_any_avro_library_reads(client, auth):
    room = client.post("/v1/rooms", json=new_room(images=[{"url": "https://example.com/i.jpg"}]), headers=auth).json()
    response = client.get(f"/v1/rooms/{room['id']}", headers={"Accept": AVRO})
    assert response.status_code == 200 and response.headers["content-type"] == AVRO
    assert response.content[:4] == b"Obj\x01"
    writer_schema, records = apache_records(response.content)
    assert writer_schema["name"] == "roomservice.Room" == response.headers["Avro-Schema-Name"]
    canonical = fastavro.schema.to_parsing_canonical_form(writer_schema)
    assert response.headers["Avro-Schema-Fingerprint"] == rabin_fingerprint(canonical)
    assert len(records) == 1
    record = records[0]
    assert str(record["id"]) == room["id"] and record["name"] == room["name"] and record["area"]["city"] == "Berlin"
    assert record["images"] == room["images"] and record["coordinates"] == room["coordinates"]
    assert response.headers["ETag"] == '"1"'


def test_a_page_as_avro_has_one_record_per_room_and_keeps_the_link(client, auth):
    created = [client.post("/v1/rooms", json=new_room(), headers=auth).json()["id"] for _ in range(3)]
    first = client.get("/v1/rooms?limit=2", headers={"Accept": AVRO})
    _, records = apache_records(first.content)
    assert [str(r["id"]) for r in records] == created[:2]
    link = first.headers["Link"]
    second = client.get(link[1 : link.index(">")], headers={"Accept": AVRO})
    assert [str(r["id"]) for r in apache_records(second.content)[1]] == created[2:]
    assert "Link" not in second.headers


@pytest.mark.parametrize(
    "accept, expected",
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("application/*", "application/json"),
        (AVRO, AVRO),
        ("application/json;q=0.5, application/avro", AVRO),
        ("application/avro;q=0.4, application/json;q=0.8", "application/json"),
        ("application/avro;q=0, */*;q=0.1", "application/json"),
        ("text/html, application/avro;q=0.1", AVRO),
    ],
)
def test_accept_is_negotiated_with_q_values(client, auth, accept, expected):
    item = client.post("/v1/items", json={"name": "x"}, headers=auth).json()
    headers = {"Accept": accept} if accept else {}
    response = client.get(f"/v1/items/{item['id']}", headers=headers)
    assert response.status_code == 200 and response.headers["content-type"].startswith(expected)
    assert "Accept" in response.headers["Vary"]


@pytest.mark.parametrize("accept", ["text/html", "application/xml, text/plain;q=0.5", "application/json;q=0, application/avro;q=0"])
def test_an_unsatisfiable_accept_is_406_and_nothing_is_written(client, auth, engine, accept):
    assert_problem(client.get("/v1/rooms", headers={"Accept": accept}), 406)
    assert_problem(client.post("/v1/items", json={"name": "x"}, headers={**auth, "Accept": accept}), 406)
    assert rows(engine, "items") == 0


def test_every_entity_operation_answers_in_avro(client, auth):
    accept = {"Accept": AVRO}
    created = client.post("/v1/rooms", json=new_room(), headers={**auth, **accept})
    assert created.status_code == 201 and created.headers["content-type"] == AVRO
    room_id = str(apache_records(created.content)[1][0]["id"])
    patched = client.patch(f"/v1/rooms/{room_id}", content=b'{"price": 9}',
                           headers={**auth, **accept, "Content-Type": "application/merge-patch+json"})
    assert apache_records(patched.content)[1][0]["price"] == 9
    item = client.post("/v1/items", json={"name": "x"}, headers={**auth, **accept})
    item_id = apache_records(item.content)[1][0]["id"]
    replaced = client.put(f"/v1/items/{item_id}", json={"name": "y"}, headers={**auth, **accept})
    assert apache_records(replaced.content)[1][0] == {"id": item_id, "name": "y"}
    assert apache_records(client.get("/v1/items", headers=accept).content)[1] == [{"id": item_id, "name": "y"}]
    question = {"question_code": "1", "category": "c", "message": "m"}
    posted = client.post("/v1/questions", json=question, headers={**auth, **accept})
    assert apache_records(posted.content)[1] == [question]
    assert apache_records(client.get("/v1/questions/1", headers=accept).content)[1] == [question]
    assert apache_records(client.get("/v1/questions", headers=accept).content)[1] == [question]


# --- request bodies -----------------------------------------------------------------------------


def test_a_room_created_from_avro_equals_one_created_from_json(client, auth):
    body = new_room()
    from_avro = client.post("/v1/rooms", content=avro_body("NewRoom", body), headers={**auth, "Content-Type": AVRO})
    assert from_avro.status_code == 201, from_avro.text
    from_json = client.post("/v1/rooms", json=body | {"url": body["url"] + "/json"}, headers=auth).json()
    strip = {"id", "url", "created_at", "updated_at"}
    assert {k: v for k, v in from_avro.json().items() if k not in strip} == {
        k: v for k, v in from_json.items() if k not in strip
    }


def test_an_avro_body_from_another_library_with_an_older_writer_schema_is_resolved(client, auth):
    older = json.loads(json.dumps(SCHEMAS.get("NewRoom").document))
    older["fields"] = [f for f in older["fields"] if f["name"] not in ("area", "is_visible", "images")]
    body = {k: v for k, v in new_room().items() if k not in ("area",)}
    response = client.post("/v1/rooms", content=apache_container(older, [body]), headers={**auth, "Content-Type": AVRO})
    assert response.status_code == 201, response.text
    room = response.json()
    assert room["is_visible"] is True and room["images"] == [] and "area" not in room


def test_an_avro_body_is_held_to_every_json_rule(client, auth, engine):
    bad = new_room(name="", price=-1, url="ftp://example.com/x", coordinates={"lat": 95.0, "lon": 0.0})
    response = client.post("/v1/rooms", content=avro_body("NewRoom", bad), headers={**auth, "Content-Type": AVRO})
    problem = assert_problem(response, 400)
    assert {e["path"] for e in problem["errors"]} == {"$.name", "$.price", "$.url", "$.coordinates.lat"}
    assert rows(engine, "rooms") == 0


def test_the_originals_bad_question_in_avro_lists_both_failures(client, auth, engine):
    body = {"question_code": "99999999990000000", "category": "", "message": "hello"}
    response = client.post("/v1/questions", content=avro_body("NewQuestion", body), headers={**auth, "Content-Type": AVRO})
    assert {e["path"] for e in assert_problem(response, 400)["errors"]} == {"$.question_code", "$.category"}
    assert rows(engine, "questions") == 0


def test_items_accept_avro_on_create_and_replace(client, auth):
    created = client.post("/v1/items", content=avro_body("NewItem", {"name": "lamp"}), headers={**auth, "Content-Type": AVRO})
    assert created.status_code == 201 and created.json()["name"] == "lamp"
    replaced = client.put(f"/v1/items/{created.json()['id']}", content=avro_body("NewItem", {"name": "desk"}),
                          headers={**auth, "Content-Type": AVRO})
    assert replaced.status_code == 200 and replaced.json()["name"] == "desk"


def _incompatible_room() -> bytes:
    schema = json.loads(json.dumps(SCHEMAS.get("NewRoom").document))
    for field in schema["fields"]:
        if field["name"] == "price":
            field["type"] = "string"
    return apache_container(schema, [new_room() | {"price": "cheap", "area": None, "is_visible": True, "images": []}])


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"not avro at all", "not a readable Avro"),
        (avro_body("NewRoom", new_room())[:-9], "not a readable Avro"),
        (SCHEMAS.encode_container("NewRoom", []), "no records"),
        (SCHEMAS.encode_container("NewRoom", [new_room(), new_room()]), "more than one record"),
        (SCHEMAS.encode_container("NewItem", [{"name": "x"}]), "cannot be read as roomservice.NewRoom"),
        (_incompatible_room(), "cannot be read as roomservice.NewRoom"),
    ],
    ids=["garbage", "truncated", "empty", "two-records", "other-record", "incompatible-type"],
)
def test_bad_avro_bodies_are_400_saying_why_and_store_nothing(client, auth, engine, content, reason):
    response = client.post("/v1/rooms", content=content, headers={**auth, "Content-Type": AVRO})
    assert reason in assert_problem(response, 400)["detail"]
    assert rows(engine, "rooms") == 0


# --- schema endpoints ---------------------------------------------------------------------------


def test_the_schema_list_names_every_schema_with_version_and_fingerprint(client):
    listed = {s["name"]: s for s in client.get("/v1/schemas").json()["data"]}
    assert {"roomservice.Room", "roomservice.NewRoom", "roomservice.Item", "roomservice.Question"} <= set(listed)
    for name, info in listed.items():
        document = client.get(f"/v1/schemas/{name}")
        assert document.status_code == 200
        canonical = fastavro.schema.to_parsing_canonical_form(document.json())
        assert info["fingerprint"] == rabin_fingerprint(canonical)
        assert document.headers["ETag"] == f'"{info["fingerprint"]}"'
        assert info["version"] >= 1
        avro.schema.parse(document.text)  # self-contained: another implementation parses it alone


def test_an_unknown_schema_is_404(client):
    assert_problem(client.get("/v1/schemas/roomservice.Nothing"), 404)


def test_a_client_can_write_a_create_body_from_the_published_schema_alone(client, auth):
    schema = client.get("/v1/schemas/roomservice.NewRoom").json()
    content = apache_container(schema, [new_room() | {"area": None, "is_visible": False, "images": []}])
    response = client.post("/v1/rooms", content=content, headers={**auth, "Content-Type": AVRO})
    assert response.status_code == 201 and response.json()["is_visible"] is False


def test_a_decimal_where_a_string_is_expected_is_quoted_plainly(client, auth, engine):
    writer = {"type": "record", "name": "NewItem", "namespace": "roomservice",
              "fields": [{"name": "name", "type": {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 2}}]}
    buffer = io.BytesIO()
    fastavro.writer(buffer, fastavro.parse_schema(writer), [{"name": decimal.Decimal("2.56")}])
    problem = assert_problem(client.post("/v1/items", content=buffer.getvalue(), headers={**auth, "Content-Type": AVRO}), 400)
    assert problem["errors"] == [{"path": "$.name", "message": "2.56 is not of type 'string'"}]
    assert rows(engine, "items") == 0

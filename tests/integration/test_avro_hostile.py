"""Hostile Avro bodies: each is refused with a small 4xx problem naming the limit it hit, nothing is stored,
and the worker that read it keeps serving (contract/avro_bounds.py, docs/avro-limits.md).

The classes are those a probe found taking a worker down or its memory: declared counts near 2**62,
10**8 nulls in a few hundred bytes, a writer schema nested 200,000 levels, a deflate block inflating to
256 MiB, codecs the service does not accept; and the neighbours of each (a datum nested past the depth
limit, a long decimal, a length past the end, a lying block size). The first tests go through the real app
on both backends; the last starts `python serve.py` and checks its worker survives them all, in parallel too.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import fastavro
import httpx
import pytest
import sqlalchemy as sa

from app import avro_limits, create_app, dispose_app
from contract.avro import AvroDecodeError, to_datum
from settings import ConfigurationError, Settings
from tests.conftest import API_KEY, BACKENDS, fresh_database
from tests.integration.test_rooms_api import assert_problem
from tests.support.entity_check import EntityCheckingClient
from tests.support.factories import new_room
from tests.support.hostile_avro import (
    SCHEMAS,
    MiB,
    block,
    container,
    header,
    item_with,
    item_with_extra,
    long_bytes,
    new_item,
    string_bytes,
)
from tests.support.serve_process import ServeProcess

AVRO = "application/avro"
MAX_PROBLEM_BYTES = 1024
"""Every refusal here is a short problem: no decoder internals, no echo of the body."""


@dataclass(frozen=True)
class Hostile:
    """A hostile NewItem body, the status it must get and a fragment of the detail that names the limit."""

    name: str
    body: Callable[[], bytes]
    status: int
    detail: str


@functools.cache
def deflate_bomb() -> bytes:
    """A NewItem whose extra string field declares and holds 256 MiB of zeros: about 254 KiB deflated."""
    size = 256 * MiB
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts = [deflater.compress(string_bytes("lamp") + long_bytes(size))]
    chunk = bytes(MiB)
    parts += [deflater.compress(chunk) for _ in range(size // MiB)]
    parts.append(deflater.flush())
    return header(item_with("string"), "deflate") + block(1, b"".join(parts))


def nested_schema(levels: int) -> bytes:
    """A NewItem writer schema whose extra field is a union nested `levels` deep (two bytes a level)."""
    return (b'{"type": "record", "name": "roomservice.NewItem", "fields": [{"name": "name", "type": "string"}, '
            b'{"name": "extra", "type": ' + b"[" * levels + b'"null"' + b"]" * levels + b"}]}")


def nested_datum(levels: int) -> bytes:
    """A NewItem written with a recursive schema (a linked list of itself) whose datum nests `levels` deep."""
    schema = {"type": "record", "name": "roomservice.NewItem",
              "fields": [{"name": "name", "type": "string"}, {"name": "next", "type": ["null", "roomservice.NewItem"]}]}
    link = string_bytes("x") + long_bytes(1)  # a name, then union branch 1: another NewItem
    return container(schema, link * levels + string_bytes("x") + long_bytes(0))


def many_named_types(count: int) -> bytes:
    fields = [{"name": "name", "type": "string"}] + [
        {"name": f"f{n}", "type": {"type": "fixed", "name": f"F{n}", "size": 0}} for n in range(count)
    ]
    return container({"type": "record", "name": "roomservice.NewItem", "fields": fields}, string_bytes("x"))


def many_metadata_entries(count: int) -> bytes:
    metadata = [(f"user.{n}".encode(), b"") for n in range(count)]
    return header(SCHEMAS.get("NewItem").document, "null", metadata) + block(1, string_bytes("x"))


NULLS = {"type": "array", "items": "null"}
HOSTILE = [
    Hostile("array-count-2**62-of-nulls", lambda: item_with_extra(NULLS, long_bytes(2**62) + long_bytes(0)),
            400, "more than 10000 values (APP_AVRO_MAX_VALUES)"),
    Hostile("10**8-nulls-in-a-few-hundred-bytes", lambda: item_with_extra(NULLS, long_bytes(10**8) + long_bytes(0)),
            400, "more than 10000 values (APP_AVRO_MAX_VALUES)"),
    Hostile("array-count-2**62-of-strings",
            lambda: item_with_extra({"type": "array", "items": "string"}, long_bytes(2**62) + long_bytes(0)),
            400, "declares more items than its bytes can hold"),
    Hostile("map-count-2**62", lambda: item_with_extra({"type": "map", "values": "null"}, long_bytes(2**62) + long_bytes(0)),
            400, "declares more items than its bytes can hold"),
    Hostile("negative-block-count-2**63-of-nulls",
            lambda: item_with_extra(NULLS, long_bytes(-(2**63)) + long_bytes(0) + long_bytes(0)),
            400, "more than 10000 values (APP_AVRO_MAX_VALUES)"),
    Hostile("negative-block-count-with-more-items-than-its-size",
            lambda: item_with_extra({"type": "array", "items": "long"}, long_bytes(-3) + long_bytes(1) + b"\x02" * 3 + long_bytes(0)),
            400, "declares more items than its bytes can hold"),
    Hostile("negative-block-count-with-a-lying-size",
            lambda: item_with_extra({"type": "array", "items": "long"}, long_bytes(-1) + long_bytes(3) + b"\x02" * 3 + long_bytes(0)),
            400, "byte size does not match its items"),
    Hostile("container-block-count-2**62",
            lambda: container(SCHEMAS.get("NewItem").document, string_bytes("x"), count=2**62),
            400, "must hold exactly one roomservice.NewItem record; it holds more than one record"),
    Hostile("writer-schema-nested-200000-levels", lambda: header(nested_schema(200_000)) + block(1, string_bytes("x") + b"\x00"),
            413, "writer schema exceeds 65536 bytes (APP_AVRO_MAX_SCHEMA_BYTES)"),
    Hostile("writer-schema-nested-past-the-depth-limit", lambda: header(nested_schema(10_000)) + block(1, string_bytes("x") + b"\x00"),
            400, "writer schema nests deeper than 128 levels of JSON (4 per level of APP_AVRO_MAX_DEPTH, 32)"),
    Hostile("datum-nested-past-the-depth-limit", lambda: nested_datum(100_000),
            400, "data nests deeper than 32 levels (APP_AVRO_MAX_DEPTH)"),
    Hostile("deflate-block-inflating-to-256-MiB", deflate_bomb,
            413, "exceeds 1048576 bytes when decompressed (APP_AVRO_MAX_DECODED_BYTES)"),
    *[
        Hostile(f"{codec}-codec", functools.partial(new_item, codec=codec), 415,
                f"codec '{codec}' is not accepted; use one of: null, deflate")
        for codec in ("bzip2", "xz", "snappy", "zstandard", "lz4")
    ],
    Hostile("decimal-of-100000-bytes",
            lambda: item_with_extra({"type": "bytes", "logicalType": "decimal", "precision": 10**9},
                                    long_bytes(100_000) + b"\x7f" * 100_000),
            400, "decimal value longer than 512 bytes"),
    Hostile("string-longer-than-the-body", lambda: container(SCHEMAS.get("NewItem").document, long_bytes(2**62) + b"x"),
            400, "length exceeds the bytes left"),
    Hostile("varint-longer-than-10-bytes", lambda: container(SCHEMAS.get("NewItem").document, b"\xff" * 20 + b"\x01"),
            400, "a number is longer than 10 bytes"),
    Hostile("a-fixed-named-like-the-record",  # fastavro matches named types by name alone, whatever their kind
            lambda: container({"type": "fixed", "name": "roomservice.NewItem", "size": 0}, b""),
            400, "cannot be read as roomservice.NewItem: its types or names do not match"),
    Hostile("over-100-named-types", lambda: many_named_types(150), 400, "more than 100 named types"),
    Hostile("over-64-metadata-entries", lambda: many_metadata_entries(100), 400, "more than 64 metadata entries"),
]


def rows(engine: sa.Engine, table: str) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def assert_refused(response: httpx.Response, case: Hostile) -> None:
    problem = assert_problem(response, case.status)
    assert case.detail in problem["detail"]
    assert len(response.content) < MAX_PROBLEM_BYTES, response.text[:300]
    for internal in ("install", "ecursion", "Traceback", "fastavro", "cramjam"):
        assert internal not in response.text


@pytest.fixture(scope="module", params=BACKENDS)
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The real app and an engine on each backend, shared by the hostile cases: each asserts it stored nothing."""
    with fresh_database(request, request.param, tmp_path_factory.mktemp("hostile")) as url:
        # As the `settings` fixture of tests/conftest.py: one app per backend instead of one per case saves ~40 s.
        application = create_app(Settings(database_url=url, api_keys=frozenset({API_KEY}), validate_responses=True, pool_size=5))
        engine = sa.create_engine(url)
        try:
            yield EntityCheckingClient(application), engine
        finally:
            engine.dispose()
            dispose_app(application)


@pytest.mark.parametrize("case", HOSTILE, ids=[case.name for case in HOSTILE])
def test_a_hostile_avro_body_is_refused_naming_its_limit_and_stores_nothing(served, auth, case):
    client, engine = served
    started = time.perf_counter()
    response = client.post("/v1/items", content=case.body(), headers={**auth, "Content-Type": AVRO})
    elapsed = time.perf_counter() - started
    assert_refused(response, case)
    assert elapsed < 2, f"{case.name} took {elapsed:.2f} s"
    assert rows(engine, "items") == 0 and rows(engine, "events") == 0


def _with_extra(name: str, entity: dict, extra_type, extra_bytes: bytes, codec: str = "null") -> bytes:
    """A body for schema `name` holding `entity`, written with one more (skipped) field encoded as `extra_bytes`."""
    schema = SCHEMAS.get(name)
    writer = json.loads(json.dumps(schema.document))
    writer["fields"].append({"name": "extra", "type": extra_type})
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema.parsed, to_datum(schema.document, entity))
    return container(writer, buffer.getvalue() + extra_bytes, codec)


def test_every_avro_operation_refuses_a_bomb_and_changes_nothing(client, auth, engine):
    item = client.post("/v1/items", json={"name": "desk"}, headers=auth).json()
    events = rows(engine, "events")
    too_many_nulls = long_bytes(10**8) + long_bytes(0)
    bodies = {
        ("POST", "/v1/rooms"): _with_extra("NewRoom", new_room(), NULLS, too_many_nulls),
        ("POST", "/v1/items"): _with_extra("NewItem", {"name": "x"}, NULLS, too_many_nulls, "deflate"),
        ("PUT", f"/v1/items/{item['id']}"): _with_extra("NewItem", {"name": "y"}, NULLS, too_many_nulls),
        ("POST", "/v1/questions"): _with_extra(
            "NewQuestion", {"question_code": "1", "category": "c", "message": "m"}, NULLS, too_many_nulls),
    }
    for (method, path), body in bodies.items():
        response = client.request(method, path, content=body, headers={**auth, "Content-Type": AVRO})
        assert "APP_AVRO_MAX_VALUES" in assert_problem(response, 400)["detail"], (method, path)
    assert client.get(f"/v1/items/{item['id']}").json()["name"] == "desk"
    assert (rows(engine, "rooms"), rows(engine, "items"), rows(engine, "questions")) == (0, 1, 0)
    assert rows(engine, "events") == events


def test_deflate_and_negative_array_block_counts_are_accepted(client, auth):
    """The spec's two codecs, and its array blocks written with a negative count and a byte size, still read."""
    schema = SCHEMAS.get("NewRoom")
    writer = json.loads(json.dumps(schema.document))
    writer["fields"] = [f for f in writer["fields"] if f["name"] != "images"] + [
        f for f in writer["fields"] if f["name"] == "images"
    ]  # images last, so its encoding is the datum's tail
    room = new_room(images=[])
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(writer), to_datum(writer, room))
    assert buffer.getvalue().endswith(b"\x00")  # an empty array: one block count of zero
    urls = ["https://example.com/a.jpg", "https://example.com/b.jpg"]
    items = b"".join(string_bytes(url) for url in urls)
    images = long_bytes(-2) + long_bytes(len(items)) + items + long_bytes(0)
    body = container(writer, buffer.getvalue()[:-1] + images, "deflate")
    response = client.post("/v1/rooms", content=body, headers={**auth, "Content-Type": AVRO})
    assert response.status_code == 201, response.text
    assert response.json()["images"] == [{"url": url} for url in urls]
    assert client.post("/v1/items", content=new_item("lamp", "deflate"), headers={**auth, "Content-Type": AVRO}).json()["name"] == "lamp"


def test_the_limits_are_settings_read_from_the_environment():
    settings = Settings.from_env({
        "APP_AVRO_MAX_DEPTH": "8", "APP_AVRO_MAX_VALUES": "500", "APP_AVRO_MAX_SCHEMA_BYTES": "4096",
        "APP_AVRO_MAX_DECODED_BYTES": "65536",
    })
    assert dataclasses.astuple(avro_limits(settings)) == (8, 500, 4096, 65536)
    with pytest.raises(ConfigurationError, match="APP_AVRO_MAX_DEPTH must be at most 100"):
        Settings.from_env({"APP_AVRO_MAX_DEPTH": "101"})
    with pytest.raises(ConfigurationError, match="APP_AVRO_MAX_VALUES must be at least 1"):
        Settings.from_env({"APP_AVRO_MAX_VALUES": "0"})
    defaults = Settings.from_env({"APP_MAX_BODY_BYTES": "2048"})
    assert avro_limits(defaults).max_decoded_bytes == 2048  # by default, the body limit
    assert dataclasses.astuple(avro_limits(defaults))[:3] == (32, 10_000, 65_536)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_lower_limits_from_the_settings_apply_to_bodies(settings, auth):
    tight = dataclasses.replace(settings, avro_max_values=30, avro_max_depth=2, avro_max_decoded_bytes=600)
    application = create_app(tight)
    try:
        client = EntityCheckingClient(application)
        headers = {**auth, "Content-Type": AVRO}
        forty_longs = item_with_extra({"type": "array", "items": "long"}, long_bytes(40) + b"\x02" * 40 + long_bytes(0))
        many_values = client.post("/v1/items", content=forty_longs, headers=headers)
        assert "more than 30 values (APP_AVRO_MAX_VALUES)" in assert_problem(many_values, 400)["detail"]
        # Room, its area, the area's coordinates: three levels of records.
        area = {"name": "Mitte", "country": "Germany", "city": "Berlin", "coordinates": {"lat": 52.5, "lon": 13.4}}
        deep = client.post("/v1/rooms", content=SCHEMAS.encode_container("NewRoom", [new_room(area=area)]), headers=headers)
        assert "data nests deeper than 2 levels (APP_AVRO_MAX_DEPTH)" in assert_problem(deep, 400)["detail"]
        large = client.post("/v1/items", content=new_item("x" * 700), headers=headers)
        assert "exceeds 600 bytes when decompressed" in assert_problem(large, 413)["detail"]
        assert client.post("/v1/rooms", content=SCHEMAS.encode_container("NewRoom", [new_room()]), headers=headers).status_code == 201
        assert client.post("/v1/items", content=new_item("x" * 100), headers=headers).status_code == 201
    finally:
        dispose_app(application)


def test_a_stored_event_that_declares_too_much_is_refused_without_decoding():
    """Single-object encodings (the outbox's stored entities) are walked within the same limits."""
    fingerprint = bytes.fromhex(SCHEMAS.get("NewRoom").fingerprint)
    datum = io.BytesIO()
    room = SCHEMAS.get("NewRoom")
    fastavro.schemaless_writer(datum, room.parsed, to_datum(room.document, new_room(images=[])))
    assert datum.getvalue().endswith(b"\x00")
    hostile = b"\xc3\x01" + fingerprint + datum.getvalue()[:-1] + long_bytes(2**62)
    with pytest.raises(AvroDecodeError, match="more items than its bytes can hold"):
        SCHEMAS.decode_single_object(hostile)
    with pytest.raises(AvroDecodeError, match="bytes after its datum"):
        SCHEMAS.decode_single_object(b"\xc3\x01" + fingerprint + datum.getvalue() + b"\x00")


# --- a real server process ----------------------------------------------------------------------

RSS_GROWTH_BOUND_MIB = 32
"""How much the worker's peak RSS may rise over its size after a few ordinary requests: measured 4 MiB; the bomb alone once added ~500."""
PARALLEL_SENDERS = 8


def _memory_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def test_a_served_worker_survives_every_hostile_body_serially_and_in_parallel(tmp_path):
    # One worker: uvicorn then serves from serve.py's own process, so its pid is the worker's, and a worker
    # that died would end the process (no supervisor would start another with a new pid).
    with ServeProcess(f"sqlite:///{tmp_path / 'rooms.sqlite3'}", tmp_path / "serve.log", APP_WORKERS="1") as server:
        pid = server.process.pid
        headers = {"X-API-Key": API_KEY, "Content-Type": AVRO}
        with httpx.Client(base_url=server.url, timeout=30, headers=headers) as http:
            for _ in range(3):
                assert http.post("/v1/items", content=new_item()).status_code == 201
            before = _memory_kib(pid)["VmRSS"]
            for case in HOSTILE:
                assert_refused(http.post("/v1/items", content=case.body()), case)
            parallel = [case for case in HOSTILE if case.status != 415] * 2
            with ThreadPoolExecutor(PARALLEL_SENDERS) as senders:
                answers = senders.map(lambda case: (case, httpx.post(f"{server.url}/v1/items", content=case.body(),
                                                                     headers=headers, timeout=30)), parallel)
                health = []
                while len(health) < 20:
                    started = time.perf_counter()
                    assert http.get("/v1/health").status_code == 200
                    health.append(time.perf_counter() - started)
                for case, response in answers:
                    assert_refused(response, case)
            assert http.post("/v1/items", content=new_item("after")).json()["name"] == "after"
        assert server.process.poll() is None and server.process.pid == pid
        memory = _memory_kib(pid)
        assert "Traceback" not in server.output()
    assert max(health) < 1.0, f"/v1/health took up to {max(health):.2f} s while hostile bodies were read"
    growth_mib = (memory["VmHWM"] - before) / 1024
    assert growth_mib < RSS_GROWTH_BOUND_MIB, f"peak RSS rose {growth_mib:.0f} MiB over {before / 1024:.0f} MiB"

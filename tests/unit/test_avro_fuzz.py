"""Property-based fuzz of the Avro decoders (contract/avro.py, contract/avro_bounds.py) with hypothesis.

Three sources of input: valid container files mutated (bytes flipped, set, inserted, deleted, cut, and
hostile varints such as 2**62 or -2**63 spliced in); container files built from generated writer schemas
(records, unions, arrays, maps, enums, fixed, recursive references, any codec) over generated counts and
bytes; and stored single-object encodings mutated. For every case the decoder must answer a record or an
AvroDecodeError with a 400/413/415 status and a short detail, never anything else, within a bounded time
and a bounded peak of Python memory (tracemalloc). Examples are derandomized, so a failure reproduces.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.avro import AvroDecodeError
from tests.integration.test_avro_api import apache_container
from tests.support.factories import new_room
from tests.support.hostile_avro import SCHEMAS, block, compress, header, long_bytes, new_item, string_bytes

SECONDS_PER_CASE = 0.5
PEAK_BYTES_PER_CASE = 16 * 1024 * 1024
"""Twice what the largest legitimate decode allocates: a body's bytes plus its data decompressed up to the cap (1 MiB)."""
MAX_DETAIL = 400
FUZZ = settings(
    derandomize=True, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _older_room_body() -> bytes:
    older = json.loads(json.dumps(SCHEMAS.get("NewRoom").document))
    older["fields"] = [f for f in older["fields"] if f["name"] not in ("area", "is_visible", "images")]
    return apache_container(older, [{k: v for k, v in new_room().items() if k != "area"}])


SEEDS = [
    ("NewRoom", SCHEMAS.encode_container("NewRoom", [new_room(images=[{"url": "https://example.com/a.jpg"}] * 3)])),
    ("NewRoom", header(SCHEMAS.get("NewRoom").document, "deflate")
     + block(1, compress("deflate", SCHEMAS.encode_single_object("NewRoom", new_room())[10:]))),
    ("NewRoom", _older_room_body()),
    ("NewItem", new_item("lamp")),
    ("NewItem", new_item("lamp", "deflate")),
    ("NewQuestion", SCHEMAS.encode_container("NewQuestion", [{"question_code": "1", "category": "c", "message": "m"}])),
]
LONGS = st.sampled_from([0, 1, -1, 2, 127, 128, 2**31 - 1, 2**31, -(2**31) - 1, 10**8, 2**62, 2**63 - 1, -(2**63)]) | st.integers(
    -(2**63), 2**63 - 1
)


def data_start(body: bytes) -> int:
    """Where a container's data blocks start: after the header, which ends with the sync marker the file ends with."""
    return body.index(body[-16:]) + 16


def assert_decodes_within_bounds(decode, *args) -> None:
    """Call the decoder: it must return, or raise AvroDecodeError with a 4xx status, within the time and memory bounds."""
    # Traced for the call alone: tracing hypothesis's own work as well would double the test's time.
    tracemalloc.start()
    started = time.perf_counter()
    try:
        decode(*args)
    except AvroDecodeError as error:
        assert error.status in (400, 413, 415)
        assert len(str(error)) < MAX_DETAIL, str(error)[:MAX_DETAIL]
    finally:
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert elapsed < SECONDS_PER_CASE, f"took {elapsed:.3f} s"
    assert peak < PEAK_BYTES_PER_CASE, f"peak {peak / 2**20:.1f} MiB"


@st.composite
def mutated(draw, seeds: list[tuple[str, bytes]], start: Callable[[bytes], int]) -> tuple[str, bytes]:
    name, seed = draw(st.sampled_from(seeds))
    body = bytearray(seed)
    # Mostly in the data, which a header many times its size would otherwise draw nearly every mutation away from.
    first = start(seed) if draw(st.integers(0, 4)) else 0
    for _ in range(draw(st.integers(1, 4))):
        operation = draw(st.sampled_from(["flip", "set", "insert", "delete", "cut", "varint"]))
        last = max(len(body) - 1, 0)
        position = draw(st.integers(min(first, last), last))
        if operation == "flip" and body:
            body[position] ^= 1 << draw(st.integers(0, 7))
        elif operation == "set" and body:
            body[position] = draw(st.integers(0, 255))
        elif operation == "insert":
            body[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif operation == "delete":
            del body[position : position + draw(st.integers(1, 16))]
        elif operation == "cut":
            del body[position:]
        else:
            # A hostile count or length in place of (or in front of) whatever varint was there.
            width = draw(st.integers(0, 2))
            body[position : position + width] = long_bytes(draw(LONGS))
    return name, bytes(body)


NAMES = st.sampled_from(["A", "B", "C", "D", "E", "F", "roomservice.NewItem"])
PRIMITIVES = st.sampled_from(["null", "boolean", "int", "long", "float", "double", "bytes", "string"])
LEAVES = (
    PRIMITIVES
    | NAMES  # a reference: to a type defined elsewhere in the schema, to the root (recursion), or undefined
    | st.builds(lambda name, size: {"type": "fixed", "name": name, "size": size}, NAMES, st.integers(0, 40))
    | st.builds(lambda name, n: {"type": "enum", "name": name, "symbols": [f"s{i}" for i in range(n)]}, NAMES, st.integers(1, 4))
    | st.just({"type": "bytes", "logicalType": "decimal", "precision": 2000, "scale": 0})
    | st.just({"type": "string", "logicalType": "uuid"})
    | st.just({"type": "long", "logicalType": "timestamp-micros"})
)


def _extend(children):
    return (
        st.builds(lambda items: {"type": "array", "items": items}, children)
        | st.builds(lambda values: {"type": "map", "values": values}, children)
        | st.lists(children, min_size=1, max_size=3)
        | st.builds(
            lambda name, types: {"type": "record", "name": name,
                                 "fields": [{"name": f"f{i}", "type": t} for i, t in enumerate(types)]},
            NAMES, st.lists(children, max_size=3),
        )
    )


WRITER_TYPES = st.recursive(LEAVES, _extend, max_leaves=10)


def _named_types(schema) -> dict:
    """The named types a generated schema defines, by name (the last definition wins, as nothing here validates)."""
    named, pending = {}, [schema]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if node.get("type") in ("record", "enum", "fixed"):
                named[node["name"]] = node
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return named


@st.composite
def datum(draw, schema, named: dict, budget: list[int]) -> bytes:
    """Bytes for one datum of `schema`: mostly well formed, with hostile counts, lengths and indexes drawn now and then."""
    budget[0] -= 1
    if budget[0] < 0:
        return b""  # out of budget (a recursive type with no way out): the datum ends early
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    kind = schema.get("type") if isinstance(schema, dict) else schema
    hostile = draw(st.integers(0, 19)) == 0
    if isinstance(schema, list):
        index = draw(LONGS) if hostile else draw(st.integers(0, len(schema) - 1))
        return long_bytes(index) + (draw(datum(schema[index], named, budget)) if 0 <= index < len(schema) else b"")
    if isinstance(kind, (dict, list)):
        return draw(datum(kind, named, budget))
    if kind in ("null", None):
        return b""
    if kind == "boolean":
        return bytes([draw(st.integers(0, 2 if hostile else 1))])
    if kind in ("int", "long"):
        return long_bytes(draw(LONGS))
    if kind in ("float", "double"):
        return draw(st.binary(min_size=4 if kind == "float" else 8, max_size=4 if kind == "float" else 8))
    if kind in ("bytes", "string"):
        value = draw(st.binary(max_size=12)) if kind == "bytes" or hostile else draw(st.text(max_size=6)).encode()
        return long_bytes(draw(LONGS) if hostile else len(value)) + value
    if kind == "fixed":
        return draw(st.binary(min_size=schema["size"], max_size=schema["size"]))
    if kind == "enum":
        return long_bytes(draw(LONGS) if hostile else draw(st.integers(0, len(schema["symbols"]) - 1)))
    if kind == "record":
        return b"".join(draw(datum(field["type"], named, budget)) for field in schema["fields"])
    if kind in ("array", "map"):
        out = b""
        for _ in range(draw(st.integers(0, 2))):
            count = draw(st.integers(1, 3))
            items = b"".join(
                (draw(datum("string", named, budget)) if kind == "map" else b"")
                + draw(datum(schema["items" if kind == "array" else "values"], named, budget))
                for _ in range(count)
            )
            if hostile:
                out += long_bytes(draw(LONGS)) + items
            elif draw(st.booleans()):  # a negative count, then the block's size in bytes
                out += long_bytes(-count) + long_bytes(len(items)) + items
            else:
                out += long_bytes(count) + items
        return out + long_bytes(0)
    return draw(st.binary(max_size=8))  # an undefined name: any bytes


@st.composite
def generated_containers(draw) -> tuple[str, bytes]:
    extra = draw(WRITER_TYPES)
    if draw(st.booleans()):  # a NewItem with one more field, which the reader skips: reached past resolution
        schema = {"type": "record", "name": "roomservice.NewItem",
                  "fields": [{"name": "name", "type": "string"}, {"name": "extra", "type": extra}]}
        data = string_bytes("x")
    else:
        schema, data = extra, b""
    data += draw(datum(extra, _named_types(schema), [60]))
    if draw(st.integers(0, 3)) == 0:
        data += draw(st.binary(max_size=16))
    if draw(st.integers(0, 15)) == 0:
        data += bytes(1024 * 1024 + 1)  # past the decompressed-size cap: a deflate bomb, or a plain oversized block
    codec = draw(st.sampled_from(["null"] * 4 + ["deflate"] * 3 + ["bzip2", "snappy", "x" * 300]))
    count = draw(st.sampled_from([1] * 8 + [0, 2, 2**62]))
    body = header(schema, codec) + block(count, compress(codec, data))
    return "NewItem", body[: len(body) - draw(st.sampled_from([0] * 10 + [1, 17]))]


NOW = datetime(2026, 12, 1, 10, tzinfo=UTC)
STORED = [
    ("", SCHEMAS.encode_single_object("Room", new_room(
        id="7f1c3a9e-2d4b-4c8e-9a6f-1b2c3d4e5f60", created_at=NOW, updated_at=NOW, is_visible=True,
        images=[{"url": "https://example.com/a.jpg"}]))),
    ("", SCHEMAS.encode_single_object("Item", {"id": 7, "name": "lamp"})),
    ("", SCHEMAS.encode_single_object("Question", {"question_code": "1", "category": "c", "message": "m"})),
]


@settings(FUZZ, max_examples=2000)
@given(case=mutated(SEEDS, data_start))
def test_mutated_container_files_decode_or_are_refused_within_bounds(case):
    assert_decodes_within_bounds(SCHEMAS.decode_single, *case)


@settings(FUZZ, max_examples=2000)
@given(case=generated_containers())
def test_containers_of_generated_writer_schemas_decode_or_are_refused_within_bounds(case):
    assert_decodes_within_bounds(SCHEMAS.decode_single, *case)


@settings(FUZZ, max_examples=1000)
@given(case=mutated(STORED, lambda _: 10))
def test_mutated_stored_events_decode_or_are_refused_within_bounds(case):
    assert_decodes_within_bounds(SCHEMAS.decode_single_object, case[1])


def test_the_seeds_decode():
    """The fuzz starts from valid input: every seed decodes as it is."""
    for name, body in SEEDS:
        assert SCHEMAS.decode_single(name, body)
    for _, stored in STORED:
        assert SCHEMAS.decode_single_object(stored)[1]

"""Avro schemas from `schemas/`, parsed once, and the codec between API JSON and Avro container files."""

from __future__ import annotations

import copy
import io
import json
import typing as t
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
from fastavro.read import SchemaResolutionError
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form

from contract.avro_bounds import (
    DEFAULT_LIMITS,
    AvroDecodeError,
    AvroLimits,
    BoundedAvroReader,
    compile_schema,
    named_kinds,
    short,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCHEMAS_DIR = PROJECT_ROOT / "schemas"
HISTORY_DIR = SCHEMAS_DIR / "history"
NAMESPACE = "roomservice"
AVRO_MEDIA_TYPE = "application/avro"


@dataclass(frozen=True)
class AvroSchema:
    """One named schema: its self-contained document, parsed form, fingerprint and version."""

    name: str
    document: dict[str, Any]
    parsed: Any  # fastavro's parsed form
    canonical: str
    fingerprint: str
    version: int
    released: bool

    @property
    def short_name(self) -> str:
        """The name without namespace, which is also the OpenAPI component's name."""
        return self.name.rsplit(".", 1)[-1]


def expanded_schema(path: Path) -> dict[str, Any]:
    """Load an .avsc file with every named type it references inlined (a self-contained document)."""
    return t.cast(dict[str, Any], load_schema(str(path), _write_hint=False))


def crc64_fingerprint(document: Mapping[str, Any]) -> str:
    """Return the CRC-64-AVRO (Rabin) fingerprint of the schema's parsing canonical form, as hex."""
    return fingerprint(to_parsing_canonical_form(dict(document)), "CRC-64-AVRO")


def released_versions(name: str, history_dir: Path = HISTORY_DIR) -> list[tuple[int, dict[str, Any]]]:
    """Return the released versions of a schema, oldest first, from `history/<name>/v<N>.avsc`."""
    folder = history_dir / name
    if not folder.is_dir():
        return []
    versions = []
    for path in folder.glob("v*.avsc"):
        versions.append((int(path.stem[1:]), json.loads(path.read_text(encoding="utf-8"))))
    return sorted(versions, key=lambda pair: pair[0])


SINGLE_OBJECT_MARKER = b"\xc3\x01"
"""The two bytes that start every Avro single-object encoded datum."""

SYNC_MARKER = bytes.fromhex("726f6f6d73657276696365a5a5a5a5a5")
"""The 16-byte sync marker of the container files this service writes (any fixed value is valid)."""


def _zigzag_varint(value: int) -> bytes:
    """Encode a long as Avro does: zig-zag, then base-128 varint."""
    encoded = (value << 1) ^ (value >> 63)
    out = bytearray()
    while encoded > 0x7F:
        out.append((encoded & 0x7F) | 0x80)
        encoded >>= 7
    out.append(encoded)
    return bytes(out)


class AvroSchemas:
    """Every schema of the service, loaded and parsed once at start-up."""

    def __init__(
        self, schemas_dir: Path = SCHEMAS_DIR, history_dir: Path = HISTORY_DIR, limits: AvroLimits = DEFAULT_LIMITS
    ) -> None:
        self._schemas: dict[str, AvroSchema] = {}
        self._headers: dict[str, bytes] = {}
        for path in sorted(schemas_dir.glob("*.avsc")):
            document = expanded_schema(path)
            name = path.name.removesuffix(".avsc")
            canonical = to_parsing_canonical_form(document)
            fp = crc64_fingerprint(document)
            history = released_versions(name, history_dir)
            last = history[-1] if history else None
            released = last is not None and crc64_fingerprint(last[1]) == fp
            version = (last[0] if released else last[0] + 1) if last else 1
            parsed = fastavro.parse_schema(document, _write_hint=True)
            self._schemas[name] = AvroSchema(name, document, parsed, canonical, fp, version, released)
        self._by_fingerprint = {schema.fingerprint: schema for schema in self._schemas.values()}
        # Every decode of bytes from outside (bodies, stored events) is bounded by these limits first.
        self._reader = BoundedAvroReader(limits)
        self._roots: dict[str, list[Any]] = {}
        self._named_kinds: dict[str, dict[str, frozenset[str]]] = {}
        for name, schema in self._schemas.items():
            named: dict[str, Any] = {}
            self._roots[name] = compile_schema(fastavro.parse_schema(schema.document, named, _write_hint=False), named)
            self._named_kinds[name] = named_kinds(named)

    def __iter__(self) -> t.Iterator[AvroSchema]:
        return iter(self._schemas.values())

    def __contains__(self, name: str) -> bool:
        return name in self._schemas

    def get(self, name: str) -> AvroSchema:
        """Return a schema by full name (`roomservice.Room`) or short name (`Room`); KeyError if unknown."""
        return self._schemas[name if "." in name else f"{NAMESPACE}.{name}"]

    def encode_container(self, name: str, entities: Iterable[Mapping[str, Any]]) -> bytes:
        """Write entities (API JSON shape) as an Avro Object Container File with the writer schema embedded."""
        schema = self.get(name)
        header = self._headers.get(schema.name)
        if header is None:
            # The header (magic, schema JSON, codec, sync marker) is the same for every file of a schema:
            # build it once instead of serialising the schema on every response.
            buffer = io.BytesIO()
            fastavro.writer(buffer, schema.parsed, [], codec="null", sync_marker=SYNC_MARKER)
            header = self._headers.setdefault(schema.name, buffer.getvalue())
        block = io.BytesIO()
        count = 0
        for entity in entities:
            fastavro.schemaless_writer(block, schema.parsed, to_datum(schema.document, entity))
            count += 1
        if count == 0:
            return header
        data = block.getvalue()
        return b"".join((header, _zigzag_varint(count), _zigzag_varint(len(data)), data, SYNC_MARKER))

    def encode_single_object(self, name: str, entity: Mapping[str, Any]) -> bytes:
        """Write one entity in Avro single-object encoding: C3 01, the schema's 8-byte fingerprint, the datum."""
        schema = self.get(name)
        buffer = io.BytesIO()
        buffer.write(SINGLE_OBJECT_MARKER + bytes.fromhex(schema.fingerprint))
        fastavro.schemaless_writer(buffer, schema.parsed, to_datum(schema.document, entity))
        return buffer.getvalue()

    def decode_single_object(self, data: bytes) -> tuple[AvroSchema, dict[str, Any]]:
        """Read a single-object encoded entity, finding its schema by fingerprint; returns it in API JSON shape."""
        if data[:2] != SINGLE_OBJECT_MARKER or len(data) < 10:
            raise AvroDecodeError("Not Avro single-object encoding.")
        schema = self._by_fingerprint.get(data[2:10].hex())
        if schema is None:
            raise AvroDecodeError(f"No schema has the fingerprint {data[2:10].hex()}.")
        end, _ = self._reader.check_datum(self._roots[schema.name], data, 10)
        if end != len(data):
            raise AvroDecodeError("The Avro data is not readable: it holds bytes after its datum.")
        try:
            datum = fastavro.schemaless_reader(io.BytesIO(data[10:]), schema.parsed, None)
        except Exception:  # noqa: BLE001 - not UTF-8, or a value its logical type cannot hold
            raise AvroDecodeError("The Avro data is not readable: a value is not valid for its type.") from None
        return schema, from_datum(schema.document, t.cast(Mapping[str, Any], datum))

    def decode_single(self, name: str, data: bytes) -> dict[str, Any]:
        """Read exactly one record from a container file, resolving its writer schema against ours.

        Returns the record in API JSON shape; raises AvroDecodeError saying what is wrong (and which limit
        was hit: the container and its record are checked against `limits` before fastavro reads them).
        """
        schema = self.get(name)
        writer, datum = self._reader.read_single_record(data, schema.name)
        mismatch = f"The body's writer schema {writer.name} cannot be read as {schema.name}: its types or names do not match."
        ours = self._named_kinds[schema.name]
        if any(writer.named_kinds[type_name] != ours[type_name] for type_name in writer.named_kinds.keys() & ours.keys()):
            raise AvroDecodeError(mismatch)
        try:
            record = fastavro.schemaless_reader(io.BytesIO(datum), writer.parsed, schema.parsed)
        except SchemaResolutionError as error:
            reason = str(error)
            # fastavro's "schema mismatch" messages dump both schemas whole; its others name a field of ours.
            if reason.lower().startswith("schema mismatch"):
                raise AvroDecodeError(mismatch) from None
            raise AvroDecodeError(
                f"The body's writer schema {writer.name} cannot be read as {schema.name}: {short(reason, 120)}."
            ) from None
        except UnicodeDecodeError:
            raise AvroDecodeError("The body's record cannot be read: a string is not valid UTF-8.") from None
        except Exception:  # noqa: BLE001 - a value its logical type cannot hold (a uuid, a timestamp, a decimal)
            raise AvroDecodeError("The body's record cannot be read: a value is not valid for its type.") from None
        if not isinstance(record, dict):
            raise AvroDecodeError(mismatch)
        return from_datum(schema.document, record)


def to_datum(schema: Mapping[str, Any], entity: Mapping[str, Any]) -> dict[str, Any]:
    """Map an entity in API JSON shape to an Avro record: absent members take the field's default (or null).

    A record in a union is given as fastavro's `(record name, datum)`, so the writer takes that branch
    instead of trying each branch against the datum (a third of the cost of encoding a room).
    """
    datum = {}
    for name, default, record, union_branch, items in _fields_of(schema):
        value = entity.get(name)
        if value is None and default is not _NO_DEFAULT:
            value = copy.deepcopy(default) if isinstance(default, (dict, list)) else default
        if value is not None:
            if record is not None:
                value = to_datum(record, value)
                if union_branch is not None:
                    value = (union_branch, value)
            elif items is not None:
                value = [to_datum(items, element) for element in value]
        datum[name] = value
    return datum


_NO_DEFAULT = object()
# Per record schema (kept alive with it, so an id is never reused while cached): what to_datum does per field.
_field_plans: dict[int, tuple[Mapping[str, Any], list[tuple[Any, ...]]]] = {}


def _fields_of(schema: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    entry = _field_plans.get(id(schema))
    if entry is None or entry[0] is not schema:
        plan = []
        for field in schema["fields"]:
            avro_type = field["type"]
            record = _record_type(avro_type)
            union_branch = _full_name(record["name"]) if record is not None and isinstance(avro_type, list) else None
            items = _record_type(avro_type["items"]) if _is_array(avro_type) else None
            plan.append((field["name"], field.get("default", _NO_DEFAULT), record, union_branch, items))
        entry = _field_plans.setdefault(id(schema), (schema, plan))
    return entry[1]


def _full_name(name: str) -> str:
    return name if "." in name else f"{NAMESPACE}.{name}"


def from_datum(schema: Mapping[str, Any], datum: Mapping[str, Any]) -> dict[str, Any]:
    """Map an Avro record to API JSON shape: null optionals are left out, uuids and timestamps become strings."""
    entity: dict[str, Any] = {}
    for field in schema["fields"]:
        value = datum.get(field["name"])
        if value is None:
            continue
        entity[field["name"]] = _json_value(field["type"], value)
    return entity


class _Decimal(Decimal):
    """A decimal a writer schema sent where ours has no decimal: shown plainly (2.56) when validation quotes it."""

    def __repr__(self) -> str:
        return str(self)


def _json_value(avro_type: Any, value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        record = _record_type(avro_type)
        return from_datum(record, value) if record is not None else value
    if isinstance(value, list):
        items = avro_type["items"] if isinstance(avro_type, dict) else None
        return [_json_value(items, element) for element in value]
    if isinstance(value, Decimal):
        return _Decimal(value)
    return value


def _record_type(avro_type: Any) -> dict[str, Any] | None:
    """The record schema a field holds (directly or as the non-null branch of a union), if any."""
    if isinstance(avro_type, list):
        branches = [branch for branch in avro_type if branch != "null"]
        return _record_type(branches[0]) if len(branches) == 1 else None
    if isinstance(avro_type, dict) and avro_type.get("type") == "record":
        return avro_type
    return None


def _is_array(avro_type: Any) -> bool:
    return isinstance(avro_type, dict) and avro_type.get("type") == "array"

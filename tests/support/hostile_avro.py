"""Builders of Avro container files byte by byte, valid and hostile, for the tests of bounded decoding."""

from __future__ import annotations

import bz2
import json
import lzma
import zlib
from typing import Any

from contract.avro import AvroSchemas
from contract.avro import _zigzag_varint as long_bytes

SCHEMAS = AvroSchemas()
SYNC = bytes(range(16))
MiB = 1024 * 1024


def string_bytes(text: str | bytes) -> bytes:
    """Encode an Avro string or bytes value: its length, then its bytes."""
    raw = text.encode() if isinstance(text, str) else text
    return long_bytes(len(raw)) + raw


def header(schema: Any, codec: str | None = "null", metadata: list[tuple[bytes, bytes]] = ()) -> bytes:
    """The container header: magic, metadata (schema JSON as given if bytes, else dumped; codec), sync marker."""
    schema_json = schema if isinstance(schema, bytes) else json.dumps(schema).encode()
    entries = [(b"avro.schema", schema_json), *([(b"avro.codec", codec.encode())] if codec else []), *metadata]
    out = b"Obj\x01" + long_bytes(len(entries))
    for key, value in entries:
        out += string_bytes(key) + string_bytes(value)
    return out + long_bytes(0) + SYNC


def block(count: int, data: bytes) -> bytes:
    """One data block: record count, byte size, the (already compressed) data, the sync marker."""
    return long_bytes(count) + long_bytes(len(data)) + data + SYNC


def container(schema: Any, data: bytes, codec: str = "null", count: int = 1) -> bytes:
    """A container file with one block of `count` records whose (uncompressed) bytes are `data`."""
    return header(schema, codec) + block(count, compress(codec, data))


def compress(codec: str, data: bytes) -> bytes:
    """Compress a block as the codec prescribes (raw deflate, bzip2, xz); other codecs get the data as is."""
    if codec == "deflate":
        deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
        return deflater.compress(data) + deflater.flush()
    if codec == "bzip2":
        return bz2.compress(data)
    if codec == "xz":
        return lzma.compress(data)
    return data


def item_with(extra_type: Any) -> dict[str, Any]:
    """A NewItem writer schema with one more field (which the service's reader schema skips) of `extra_type`."""
    return {
        "type": "record", "name": "roomservice.NewItem",
        "fields": [{"name": "name", "type": "string"}, {"name": "extra", "type": extra_type}],
    }


def item_with_extra(extra_type: Any, extra_bytes: bytes, codec: str = "null", name: str = "lamp") -> bytes:
    """A container with one NewItem record whose extra field is encoded as `extra_bytes`."""
    return container(item_with(extra_type), string_bytes(name) + extra_bytes, codec)


def new_item(name: str = "lamp", codec: str = "null") -> bytes:
    """A valid NewItem body written with the service's own schema."""
    return container(SCHEMAS.get("NewItem").document, string_bytes(name), codec)

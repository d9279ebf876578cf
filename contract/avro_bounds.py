"""Bounded reading of Avro bytes from outside: every count, length, size and nesting level checked before fastavro runs.

fastavro trusts what it reads: a declared count of 2**62 array items is looped over, a deflate block
is inflated whole, a deeply nested schema or datum is followed by recursion in compiled code, a long
decimal is converted in quadratic time. So before fastavro sees a client's bytes, this module reads
them once in pure Python, iteratively (nothing here recurses on client data), and refuses, with an
AvroDecodeError that names the limit, anything that would make the decode costlier than the limits allow:

- the container header: magic, a bounded metadata map, the writer schema's size, JSON nesting depth
  (checked on the text, before any parser sees it) and number of named types;
- the codec: only `null` and `deflate` (the two every Avro implementation must support), deflate
  inflated through `zlib.decompressobj(...).decompress(data, max_length)`, never past the cap;
- each record, walked against the writer schema: every array/map block count against the bytes left
  and against the cap on values, every string/bytes length against the bytes left, union and enum
  indexes, varint lengths, datum nesting depth.

What fastavro is then given has been proven to decode within these bounds.
"""

from __future__ import annotations

import json
import re
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import fastavro
from fastavro.schema import SchemaParseException, UnknownType

MAGIC = b"Obj\x01"
SYNC_SIZE = 16
ALLOWED_CODECS = ("null", "deflate")
"""Codecs a body may use: the two the Avro specification requires of every implementation."""

# Fixed bounds, each far above what a real writer produces and too cheap to be worth a setting.
SCHEMA_JSON_LEVELS = 4
"""JSON levels a writer schema may nest per level of `max_depth` (a record's object, its fields' list, a field's
object, a union's list)."""
MAX_METADATA_ENTRIES = 64
MAX_NAMED_TYPES = 100
MAX_DECIMAL_BYTES = 512
"""Longest decimal value accepted (about 1,200 digits): converting one to a Decimal takes quadratic time."""


class AvroDecodeError(ValueError):
    """A client's Avro bytes cannot be read as exactly one record of the expected schema.

    `status` is the HTTP status the refusal deserves: 400 for malformed bytes or a limit on structure,
    413 for a size limit, 415 for a codec that is not accepted.
    """

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.status = status


@dataclass(frozen=True)
class AvroLimits:
    """How much one Avro body (or one stored datum) may make the service do."""

    max_depth: int = 32
    """Levels of records, arrays and maps nested in a datum; a writer schema's JSON may nest four times as deep."""
    max_values: int = 10_000
    """Values in one body (every field, item, map entry and block counts as one)."""
    max_schema_bytes: int = 64 * 1024
    """Size of the writer schema embedded in a container file's header."""
    max_decoded_bytes: int = 1024 * 1024
    """Size of a body's data blocks after decompression."""


DEFAULT_LIMITS = AvroLimits()

# Kinds of compiled schema nodes. A node is a list [kind, minimum encoded size in bytes, payload].
NULL, BOOLEAN, INT, LONG, FLOAT, DOUBLE, BYTES, FIXED, ENUM, UNION, ARRAY, MAP, RECORD, DECIMAL, BLOCKS = range(15)
_PRIMITIVES = {
    "null": [NULL, 0, None], "boolean": [BOOLEAN, 1, None], "int": [INT, 1, None], "long": [LONG, 1, None],
    "float": [FLOAT, 4, None], "double": [DOUBLE, 8, None], "bytes": [BYTES, 1, None], "string": [BYTES, 1, None],
}
_NAMED_KINDS = frozenset({"record", "error", "enum", "fixed"})
_INT_LIMIT = 1 << 32
_LONG_LIMIT = 1 << 64
_JSON_TOKENS = re.compile(r'\\.|["\[\]{}]', re.DOTALL)


@dataclass(frozen=True)
class WriterSchema:
    """A writer schema as fastavro parsed it, as compiled for the bounded walk, and the kinds of its named types."""

    name: str
    parsed: Any
    root: list[Any]
    named_kinds: dict[str, frozenset[str]]


def named_kinds(named: dict[str, Any]) -> dict[str, frozenset[str]]:
    """Map each unqualified type name to the kinds (record, enum, fixed) it names, from fastavro's named schemas.

    fastavro resolves a writer's named type against the reader's by unqualified name alone, whatever their
    kinds, so a fixed named like one of our records would be read as bytes where a record belongs.
    """
    kinds: dict[str, set[str]] = {}
    for name, schema in named.items():
        kind = schema.get("type") if isinstance(schema, dict) else None
        kinds.setdefault(name.rsplit(".", 1)[-1], set()).add("record" if kind == "error" else str(kind))
    return {name: frozenset(found) for name, found in kinds.items()}


def short(text: str, limit: int = 60) -> str:
    """A client-supplied string fit to quote in an error: printable characters only, at most `limit` of them."""
    printable = "".join(c if c.isprintable() else "?" for c in text[: limit + 1])
    return printable if len(printable) <= limit else printable[:limit] + "…"


def json_depth(text: str, limit: int) -> int:
    """Return how deeply the JSON text nests arrays and objects (up to `limit` + 1), without parsing it or recursing."""
    depth = deepest = 0
    in_string = False
    # The token pattern has no nested repetition, so scanning is linear whatever the text.
    for token in _JSON_TOKENS.findall(text):
        if token == '"':
            in_string = not in_string
        elif in_string or len(token) == 2:
            continue
        elif token in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        else:
            depth -= 1
    return deepest


class BoundedAvroReader:
    """Reads container files and datums from outside within `AvroLimits`, then lets fastavro decode them."""

    def __init__(self, limits: AvroLimits = DEFAULT_LIMITS, cached_schemas: int = 16) -> None:
        self.limits = limits
        # Clients send the same few writer schemas again and again; parsing one costs far more than its
        # look-up. Keyed by the schema's bytes and bounded, so a client sending new ones only evicts.
        self._writers: OrderedDict[bytes, WriterSchema] = OrderedDict()
        self._writers_lock = threading.Lock()
        self._cached_schemas = cached_schemas

    # --- container files ------------------------------------------------------------------------

    def read_single_record(self, data: bytes, expected: str = "") -> tuple[WriterSchema, bytes]:
        """Check a container file holding exactly one record; return its writer schema and the record's bytes.

        `expected` names the record in the error for a body with none or several.
        """
        metadata, position = self._read_header(data)
        codec = metadata.get("avro.codec", b"null").decode("utf-8", "replace")
        if codec not in ALLOWED_CODECS:
            raise AvroDecodeError(
                f"The body's codec {short(codec, 20)!r} is not accepted; use one of: {', '.join(ALLOWED_CODECS)}.", 415
            )
        if "avro.schema" not in metadata:
            raise AvroDecodeError(_unreadable("its header has no avro.schema"))
        writer = self.writer_schema(metadata["avro.schema"])
        sync = data[position - SYNC_SIZE : position]
        decoded_left = self.limits.max_decoded_bytes
        values = 0
        record: bytes | None = None
        while position < len(data):
            count, position = _read_long(data, position, len(data))
            size, position = _read_long(data, position, len(data))
            if count < 0 or size < 0 or size > len(data) - position - SYNC_SIZE:
                raise AvroDecodeError(_unreadable("a data block's count or size does not fit the body"))
            if count + (record is not None) > 1:
                raise _not_one_record(expected, "more than one record")
            block = data[position : position + size]
            position += size
            if data[position : position + SYNC_SIZE] != sync:
                raise AvroDecodeError(_unreadable("a data block does not end with the file's sync marker"))
            position += SYNC_SIZE
            block = self._decompress(codec, block, decoded_left)
            decoded_left -= len(block)
            values += 1
            if values > self.limits.max_values:
                raise _too_many_values(self.limits)
            end = self.check_datum(writer.root, block, 0, values) if count else (0, values)
            if end[0] != len(block):
                raise AvroDecodeError(_unreadable("a data block holds bytes after its records"))
            values = end[1]
            if count:
                record = block
        if record is None:
            raise _not_one_record(expected, "no records")
        return writer, record

    def _read_header(self, data: bytes) -> tuple[dict[str, bytes], int]:
        if data[:4] != MAGIC:
            raise AvroDecodeError(_unreadable("it does not start with the container magic Obj\\x01"))
        end = len(data)
        position = 4
        metadata: dict[str, bytes] = {}
        entries = 0
        while True:
            count, position = _read_long(data, position, end)
            if count == 0:
                break
            if count < 0:
                count = -count
                _, position = _read_long(data, position, end)  # the block's size in bytes, which we do not need
            entries += count
            if entries > MAX_METADATA_ENTRIES:
                raise AvroDecodeError(_unreadable(f"its header has more than {MAX_METADATA_ENTRIES} metadata entries"))
            for _ in range(count):
                key, position = _read_bytes(data, position, end)
                value, position = _read_bytes(data, position, end)
                try:
                    metadata[key.decode("utf-8")] = value
                except UnicodeDecodeError:
                    raise AvroDecodeError(_unreadable("a metadata key is not UTF-8")) from None
        if end - position < SYNC_SIZE:
            raise AvroDecodeError(_unreadable("its header ends before the sync marker"))
        return metadata, position + SYNC_SIZE

    def _decompress(self, codec: str, block: bytes, decoded_left: int) -> bytes:
        if codec == "null":
            inflated = block
        else:
            inflater = zlib.decompressobj(-15)
            try:
                # Never more than one byte past what is left: enough to tell that the cap is exceeded.
                inflated = inflater.decompress(block, decoded_left + 1)
            except zlib.error:
                raise AvroDecodeError(_unreadable("a data block is not valid deflate data")) from None
        if len(inflated) > decoded_left:
            raise AvroDecodeError(
                f"The body's data exceeds {self.limits.max_decoded_bytes} bytes when decompressed "
                "(APP_AVRO_MAX_DECODED_BYTES).", 413,
            )
        return inflated

    # --- writer schemas -------------------------------------------------------------------------

    def writer_schema(self, text: bytes) -> WriterSchema:
        """Return the writer schema of these JSON bytes, parsed and compiled, once its size and shape are checked."""
        with self._writers_lock:
            cached = self._writers.get(text)
            if cached is not None:
                self._writers.move_to_end(text)
                return cached
        writer = self._compile_writer(text)
        with self._writers_lock:
            self._writers[text] = writer
            if len(self._writers) > self._cached_schemas:
                self._writers.popitem(last=False)
        return writer

    def _compile_writer(self, text: bytes) -> WriterSchema:
        limits = self.limits
        if len(text) > limits.max_schema_bytes:
            raise AvroDecodeError(
                f"The body's writer schema exceeds {limits.max_schema_bytes} bytes (APP_AVRO_MAX_SCHEMA_BYTES).", 413
            )
        try:
            document_text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise AvroDecodeError(_unreadable("its writer schema is not UTF-8")) from None
        # An Avro level takes up to four JSON levels (a record's object, its fields' list, a field's object,
        # a union's list); this bounds the recursion of json.loads and fastavro's parser.
        json_limit = SCHEMA_JSON_LEVELS * limits.max_depth
        if json_depth(document_text, json_limit) > json_limit:
            raise AvroDecodeError(
                f"The body's writer schema nests deeper than {json_limit} levels of JSON "
                f"({SCHEMA_JSON_LEVELS} per level of APP_AVRO_MAX_DEPTH, {limits.max_depth})."
            )
        try:
            document = json.loads(document_text)
        except (ValueError, RecursionError):
            raise AvroDecodeError(_unreadable("its writer schema is not JSON")) from None
        if count_named_types(document) > MAX_NAMED_TYPES:
            raise AvroDecodeError(f"The body's writer schema defines more than {MAX_NAMED_TYPES} named types.")
        try:
            named: dict[str, Any] = {}
            parsed = fastavro.parse_schema(document, named, _write_hint=True, _force=True, _ignore_default_error=True)
            root = compile_schema(parsed, named)
        except AvroDecodeError:
            raise
        except (SchemaParseException, UnknownType) as error:
            # fastavro's own words ("redefined named type: X", "Unknown type: X") name the mistake.
            raise AvroDecodeError(f"The body's writer schema is not a valid Avro schema: {short(str(error), 100)}") from None
        except Exception:  # noqa: BLE001 - a shape fastavro's parser trips over (a missing key, a wrong type)
            raise AvroDecodeError("The body's writer schema is not a valid Avro schema.") from None
        name = parsed.get("name", parsed.get("type", "?")) if isinstance(parsed, dict) else "a union"
        return WriterSchema(short(str(name)), parsed, root, named_kinds(named))

    # --- datums ---------------------------------------------------------------------------------

    def check_datum(self, root: list[Any], data: bytes, position: int = 0, values: int = 0) -> tuple[int, int]:
        """Walk one datum of schema `root` from `position` within the limits; return where it ends and the values counted.

        Raises AvroDecodeError at the first count, length, index or nesting level out of bounds.
        """
        limits = self.limits
        max_values = limits.max_values
        max_depth = limits.max_depth
        end = len(data)
        stack: list[tuple[list[Any], int]] = [(root, 1)]
        pop, push = stack.pop, stack.append
        while stack:
            node, depth = pop()
            kind = node[0]
            if kind == BLOCKS:
                # node = [BLOCKS, array or map node, items left in this block, where the block must end or -1]
                collection = node[1]
                if node[2]:
                    node[2] -= 1
                    push((node, depth))
                    if collection[0] == MAP:
                        push((collection[2], depth + 1))
                        push((_STRING, depth + 1))
                    else:
                        push((collection[2], depth + 1))
                    continue
                if node[3] >= 0 and position != node[3]:
                    raise AvroDecodeError(_bad_datum("an array or map block's byte size does not match its items"))
                count, position, block_end = _read_block_start(data, position, end)
                if count:
                    item_size = collection[2][1] + (collection[0] == MAP)  # a map entry also has its key
                    _check_count(count, item_size, block_end if block_end >= 0 else end, position, values, max_values)
                    node[2], node[3] = count, block_end
                    push((node, depth))
                continue
            values += 1
            if values > max_values:
                raise _too_many_values(limits)
            if kind == RECORD:
                if depth > max_depth:
                    raise _too_deep(limits)
                for field in reversed(node[2]):
                    push((field, depth + 1))
            elif kind == UNION:
                index, position = _read_long(data, position, end)
                if not 0 <= index < len(node[2]):
                    raise AvroDecodeError(_bad_datum("a union branch index is out of range"))
                push((node[2][index], depth))
            elif kind == INT or kind == LONG or kind == ENUM:
                value, position = _read_long(data, position, end, _INT_LIMIT if kind != LONG else _LONG_LIMIT)
                if kind == ENUM and not 0 <= value < node[2]:
                    raise AvroDecodeError(_bad_datum("an enum symbol index is out of range"))
            elif kind == BYTES or kind == DECIMAL:
                length, position = _read_long(data, position, end)
                if not 0 <= length <= end - position:
                    raise AvroDecodeError(_bad_datum("a string or bytes length exceeds the bytes left"))
                if kind == DECIMAL and length > MAX_DECIMAL_BYTES:
                    raise _long_decimal()
                position += length
            elif kind == ARRAY or kind == MAP:
                if depth > max_depth:
                    raise _too_deep(limits)
                push(([BLOCKS, node, 0, -1], depth))
            elif kind == NULL:
                continue
            else:  # BOOLEAN, FLOAT, DOUBLE, FIXED: a known number of bytes
                size = node[2] if kind == FIXED else node[1]
                if size > end - position:
                    raise AvroDecodeError(_bad_datum("a value runs past the end of its data"))
                if kind == BOOLEAN and data[position] > 1:
                    raise AvroDecodeError(_bad_datum("a boolean is neither 0 nor 1"))
                position += size
        return position, values


_STRING = _PRIMITIVES["string"]


def count_named_types(document: Any) -> int:
    """Return how many records, enums and fixed types a schema document defines (iteratively)."""
    count = 0
    pending = [document]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if isinstance(node.get("type"), str) and node["type"] in _NAMED_KINDS:
                count += 1
            pending.extend(value for key, value in node.items() if key not in ("default", "symbols"))
        elif isinstance(node, list):
            pending.extend(node)
    return count


def compile_schema(parsed: Any, named: dict[str, Any]) -> list[Any]:
    """Compile a fastavro-parsed schema into nodes for `check_datum` (iteratively; recursive types become cycles)."""
    nodes: dict[str, list[Any]] = {}
    records: list[list[Any]] = []
    work: list[tuple[Any, list[Any]]] = []

    def node_for(schema: Any) -> list[Any]:
        node: list[Any]
        # {"type": <a type>} is that type, whether inline or a name.
        while isinstance(schema, dict) and (isinstance(schema.get("type"), (dict, list)) or schema.get("type") in named):
            schema = schema["type"]
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return _PRIMITIVES[schema]
            if schema not in named:
                raise AvroDecodeError(f"The body's writer schema uses an undefined type {short(schema)!r}.")
            schema = named[schema]
        if isinstance(schema, list):
            node = [UNION, 1, None]
            work.append((schema, node))
            return node
        if not isinstance(schema, dict):
            raise AvroDecodeError("The body's writer schema has a type that is neither a name, a list nor an object.")
        kind = schema.get("type")
        if kind in _NAMED_KINDS:
            name = str(schema.get("name"))
            known = nodes.get(name)
            if known is None:
                known = nodes[name] = [None, 0, None]
                work.append((schema, known))
            node = known
            return node
        if schema.get("logicalType") == "decimal" and kind == "bytes":
            return [DECIMAL, 1, None]
        if kind in _PRIMITIVES:
            return _PRIMITIVES[kind]
        if kind in ("array", "map"):
            node = [ARRAY if kind == "array" else MAP, 1, None]
            work.append((schema, node))
            return node
        raise AvroDecodeError(f"The body's writer schema uses an unknown type {short(str(kind))!r}.")

    root = node_for(parsed)
    while work:
        schema, node = work.pop()
        if isinstance(schema, list):
            node[2] = [node_for(branch) for branch in schema]
            continue
        kind = schema["type"]
        if kind in ("record", "error"):
            node[0], node[2] = RECORD, [node_for(field["type"]) for field in schema["fields"]]
            records.append(node)
        elif kind == "enum":
            node[0], node[1], node[2] = ENUM, 1, len(schema["symbols"])
        elif kind == "fixed":
            size = schema["size"]
            if not isinstance(size, int) or size < 0:
                raise AvroDecodeError("The body's writer schema has a fixed type with an invalid size.")
            if schema.get("logicalType") == "decimal" and size > MAX_DECIMAL_BYTES:
                raise _long_decimal()
            node[0], node[1], node[2] = FIXED, size, size
        elif kind == "array":
            node[2] = node_for(schema["items"])
        else:
            node[2] = node_for(schema["values"])
    # A record's minimum size is the sum of its fields'. With recursive records this is a fixed point;
    # each round only raises the sums towards it, and any round's value is a safe lower bound.
    for _ in range(len(records) + 1):
        changed = False
        for record in records:
            size = sum(field[1] for field in record[2])
            if size != record[1]:
                record[1], changed = size, True
        if not changed:
            break
    return root


def _read_long(data: bytes, position: int, end: int, limit: int = _LONG_LIMIT) -> tuple[int, int]:
    """Read a zig-zag varint; refuse one longer than 10 bytes or outside the type's range (int: 32 bits)."""
    result = shift = 0
    while True:
        if position >= end:
            raise AvroDecodeError(_bad_datum("it ends in the middle of a value"))
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
        if shift >= 70:
            raise AvroDecodeError(_bad_datum("a number is longer than 10 bytes"))
    if result >= limit:
        raise AvroDecodeError(_bad_datum("a number is out of its type's range"))
    return (result >> 1) ^ -(result & 1), position


def _read_bytes(data: bytes, position: int, end: int) -> tuple[bytes, int]:
    length, position = _read_long(data, position, end)
    if not 0 <= length <= end - position:
        raise AvroDecodeError(_unreadable("a length in its header exceeds the bytes left"))
    return data[position : position + length], position + length


def _read_block_start(data: bytes, position: int, end: int) -> tuple[int, int, int]:
    """Read an array or map block's count (and, for a negative count, its byte size); return the block's end or -1."""
    count, position = _read_long(data, position, end)
    if count >= 0:
        return count, position, -1
    # A negative count is followed by the block's size in bytes (Avro specification, "Complex Types").
    size, position = _read_long(data, position, end)
    if not 0 <= size <= end - position:
        raise AvroDecodeError(_bad_datum("an array or map block's byte size exceeds the bytes left"))
    return -count, position, position + size


def _check_count(count: int, item_size: int, end: int, position: int, values: int, max_values: int) -> None:
    # An item of non-zero minimum size cannot be more than the bytes left; items of size zero (null, an
    # empty record) are bounded by the cap on values alone.
    if item_size and count > (end - position) // item_size:
        raise AvroDecodeError(_bad_datum("an array or map declares more items than its bytes can hold"))
    if values + count > max_values:
        raise AvroDecodeError(f"The body holds more than {max_values} values (APP_AVRO_MAX_VALUES).")


def _unreadable(reason: str) -> str:
    return f"The body is not a readable Avro object container file: {reason}."


def _bad_datum(reason: str) -> str:
    return f"The Avro data is not readable: {reason}."


def _not_one_record(expected: str, holds: str) -> AvroDecodeError:
    return AvroDecodeError(f"The body must hold exactly one {expected + ' ' if expected else ''}record; it holds {holds}.")


def _too_many_values(limits: AvroLimits) -> AvroDecodeError:
    return AvroDecodeError(f"The body holds more than {limits.max_values} values (APP_AVRO_MAX_VALUES).")


def _too_deep(limits: AvroLimits) -> AvroDecodeError:
    return AvroDecodeError(f"The body's data nests deeper than {limits.max_depth} levels (APP_AVRO_MAX_DEPTH).")


def _long_decimal() -> AvroDecodeError:
    return AvroDecodeError(f"The body has a decimal value longer than {MAX_DECIMAL_BYTES} bytes.")


"""A compiled pre-check in front of jsonschema: a valid document is known valid in a few µs (fastjsonschema).

A speedup only (web/speedups): with it off, every document goes through jsonschema as contract/rules.py
builds it, with the same answers. Measured in bench/RESULTS.md (tuning log, variant `no_validation_precheck`).
"""

from __future__ import annotations

import copy
import logging
import math
import typing as t

import fastjsonschema
import orjson
from jsonschema import Draft4Validator, ValidationError

from contract.rules import FORMAT_CHECKER, RequestValidator, validator_for

_logger = logging.getLogger(__name__)
_prechecked: dict[int, tuple[dict, FastPathValidator]] = {}


def prechecked_validator_for(schema: dict) -> FastPathValidator:
    """Return contract/rules.py's request validator for this schema object behind a compiled pre-check, built once."""
    entry = _prechecked.get(id(schema))
    if entry is None or entry[0] is not schema:
        entry = (schema, FastPathValidator(schema, validator_for(schema, RequestValidator)))
        _prechecked[id(schema)] = entry
    return entry[1]


class FastPathValidator:
    """jsonschema's validator behind a pre-check compiled to Python code by fastjsonschema.

    jsonschema interprets the schema on every call (about 170 µs for a room) to list every error; most
    documents have none. fastjsonschema checks the same schema in a few µs but stops at the first error.
    So a document the pre-check accepts is valid, and any other goes to jsonschema for the full list.
    That is only sound if the pre-check is never looser than jsonschema with our rules, so it is built
    to be at least as strict (tests/unit/test_validation_fast_path.py compares the two on generated documents):

    - OpenAPI's `nullable` becomes "null" in `type` and `enum`, the only keywords it relaxes;
    - patterns: fastjsonschema anchors every unescaped `$` at the very end (ECMA-262), as we do;
    - formats: it checks some that jsonschema skips (date-time, uri), which is only stricter, and a
      schema using a format jsonschema does check gets no pre-check at all;
    - the NUL and finite-number rules: a document with a NUL in a string or a NaN or infinity takes
      the full path.
    """

    def __init__(self, schema: dict, full: Draft4Validator) -> None:
        self._full = full
        self._precheck = _precheck_for(schema)

    def iter_errors(self, instance: t.Any) -> t.Iterator[ValidationError]:
        """Yield every error in `instance`: none when the pre-check passes, else jsonschema's."""
        if self.precheck_passes(instance):
            return iter(())
        return self._full.iter_errors(instance)

    def precheck_passes(self, instance: t.Any) -> bool:
        """Return True when the compiled pre-check alone shows that `instance` is valid."""
        if self._precheck is None:
            return False
        try:
            self._precheck(instance)
        except Exception:  # noqa: BLE001 - whatever the pre-check cannot settle, jsonschema will
            return False
        return _free_of_nul_and_non_finite(instance)


def _free_of_nul_and_non_finite(document: t.Any) -> bool:
    """Return True when no string (key or value) holds U+0000 and no number is NaN or infinite."""
    if isinstance(document, str):
        return "\x00" not in document
    if isinstance(document, float):
        return math.isfinite(document)
    if not isinstance(document, (dict, list)):
        return True
    # The JSON form says it at C speed for the strings; orjson writes NaN and infinity as null, so floats
    # are looked at one by one (a room has four).
    try:
        if b"\\u0000" in orjson.dumps(document):
            return False
    except orjson.JSONEncodeError:
        return False  # nested beyond orjson's limit: the full path (and the depth limit) will say what is wrong
    pending = [document]
    while pending:
        node = pending.pop()
        for value in node.values() if isinstance(node, dict) else node:
            if isinstance(value, float):
                if not math.isfinite(value):
                    return False
            elif isinstance(value, (dict, list)):
                pending.append(value)
    return True


def _precheck_for(schema: dict) -> t.Callable[[t.Any], t.Any] | None:
    if _uses_checked_format(schema):
        return None
    precheck_schema = _with_nullable_as_null(copy.deepcopy(schema))
    precheck_schema["$schema"] = "http://json-schema.org/draft-04/schema#"
    try:
        return fastjsonschema.compile(precheck_schema, use_default=False, detailed_exceptions=False)
    except Exception:  # noqa: BLE001 - a schema fastjsonschema cannot compile is simply checked the slow way
        _logger.debug("no compiled pre-check for schema %r", schema, exc_info=True)
        return None


_DATA_KEYWORDS = frozenset({"enum", "default", "example", "examples", "const"})


def _with_nullable_as_null(node: t.Any) -> t.Any:
    # Mirrors connexion.json_schema.allow_nullable: a nullable schema lets None through `type` and `enum`.
    if isinstance(node, list):
        return [_with_nullable_as_null(item) for item in node]
    if not isinstance(node, dict):
        return node
    result = {key: value if key in _DATA_KEYWORDS else _with_nullable_as_null(value) for key, value in node.items()}
    if result.get("x-nullable") is True or result.get("nullable"):
        if "type" in result:
            types = result["type"] if isinstance(result["type"], list) else [result["type"]]
            result["type"] = [*types, "null"] if "null" not in types else types
        if "enum" in result and None not in result["enum"]:
            result["enum"] = [*result["enum"], None]
    return result


def _uses_checked_format(node: t.Any) -> bool:
    if isinstance(node, list):
        return any(_uses_checked_format(item) for item in node)
    if not isinstance(node, dict):
        return False
    if isinstance(node.get("format"), str) and node["format"] in FORMAT_CHECKER.checkers:
        return True
    return any(_uses_checked_format(value) for key, value in node.items() if key not in _DATA_KEYWORDS)

"""The contract's validation rules: JSON Schema with OpenAPI's and this service's rules, and failing fields as a list.

Draft 4 as OpenAPI 3.0 uses it (Connexion's validators, which add `nullable`), plus three rules of this
contract: patterns end at the end of the string as ECMA-262 says, no string holds U+0000 (PostgreSQL
cannot store it), and no number is NaN or infinite. Request bodies, parameters and documents the
handlers check (a merged patch) are all held to these rules, and the failing fields come out as a list
bounded by `InputLimits`.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
import typing as t

from connexion.json_schema import Draft4RequestValidator, Draft4ResponseValidator, resolve_refs
from jsonschema import Draft4Validator, ValidationError
from jsonschema.validators import extend

from contract.errors import FieldError, InvalidInput
from contract.limits import DEFAULT_LIMITS, InputLimits

FORMAT_CHECKER = Draft4Validator.FORMAT_CHECKER


@functools.lru_cache(maxsize=256)
def _ecma_regex(pattern: str) -> re.Pattern[str]:
    # OpenAPI patterns follow ECMA-262, where `$` ends the string; Python's `$` also matches before a
    # trailing newline, which let "1001\n" through as digits-only.
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


Rule = t.Callable[[Draft4Validator, t.Any, t.Any, dict[str, t.Any]], t.Iterator[ValidationError]]


def _pattern(validator: Draft4Validator, pattern: str, instance: t.Any, schema: dict[str, t.Any]) -> t.Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _ecma_regex(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _no_nul(validator: Draft4Validator, expected_type: t.Any, instance: t.Any,
            schema: dict[str, t.Any]) -> t.Iterator[ValidationError]:
    # PostgreSQL cannot store U+0000 in text; refuse it in every string, whatever the backend.
    if isinstance(instance, str) and "\x00" in instance:
        yield ValidationError("strings must not contain the NUL character (U+0000)")


def _finite(validator: Draft4Validator, expected_type: t.Any, instance: t.Any,
            schema: dict[str, t.Any]) -> t.Iterator[ValidationError]:
    # JSON has no NaN or infinity, but a query parameter (`radius_km=nan`) or an Avro double can carry
    # one, and every range check is false for NaN: `nan > 20038` lets it through.
    if isinstance(instance, float) and not math.isfinite(instance):
        yield ValidationError(f"{instance!r} is not a finite number")


def _with_contract_rules(base: type[Draft4Validator]) -> type[Draft4Validator]:
    type_check: Rule = base.VALIDATORS["type"]

    def type_and_contract_rules(validator: Draft4Validator, expected_type: t.Any, instance: t.Any,
                                schema: dict[str, t.Any]) -> t.Iterator[ValidationError]:
        yield from type_check(validator, expected_type, instance, schema)
        yield from _no_nul(validator, expected_type, instance, schema)
        yield from _finite(validator, expected_type, instance, schema)

    extended: type[Draft4Validator] = extend(base, {"pattern": _pattern, "type": type_and_contract_rules})  # type: ignore[no-untyped-call]
    return extended


RequestValidator = _with_contract_rules(Draft4RequestValidator)
ResponseValidator = _with_contract_rules(Draft4ResponseValidator)


class Validator(t.Protocol):
    """What validating a document needs of a validator: every error, lazily."""

    def iter_errors(self, instance: t.Any) -> t.Iterator[ValidationError]: ...


ValidatorFor = t.Callable[[dict[str, t.Any]], Validator]
"""Returns the request validator for a schema object; web/speedups puts a compiled pre-check in front of it."""

# Connexion creates its validator objects on every request; the schemas they receive are the
# operation's own long-lived dicts, so a validator can be kept per schema object.
_validators: dict[tuple[int, type], tuple[dict[str, t.Any], Draft4Validator]] = {}


def validator_for(schema: dict[str, t.Any], kind: type[Draft4Validator] = RequestValidator) -> Draft4Validator:
    """Return the Draft 4 validator with the contract's rules (and OpenAPI's nullable) for this schema object, built once."""
    key = (id(schema), kind)
    entry = _validators.get(key)
    if entry is None or entry[0] is not schema:
        entry = (schema, kind(schema, format_checker=FORMAT_CHECKER))
        _validators[key] = entry
    return entry[1]


MAX_MESSAGE_CHARACTERS = 300
"""A field error's path and message are cut to this length: a message quotes the failing value."""


def field_errors(errors: t.Iterable[ValidationError], root: str = "$",
                 limits: InputLimits = DEFAULT_LIMITS) -> tuple[list[FieldError], int]:
    """Turn jsonschema errors into field errors with JSON paths; return the first ones and how many were found.

    At most `limits.max_problem_errors` are returned, in path order, and counting stops at
    `limits.counted_errors`: jsonschema finds errors lazily, so a body with 100,000 bad members costs
    no more than one with a thousand.
    """
    kept: list[FieldError] = []
    total = 0
    for error in itertools.islice(errors, limits.counted_errors):
        for failing in _field_errors_of(error, root):
            total += 1
            if len(kept) < limits.max_problem_errors:
                kept.append(failing)
        if total >= limits.counted_errors:
            break
    kept.sort(key=lambda e: e.path)
    return kept, total


def _field_errors_of(error: ValidationError, root: str) -> t.Iterator[FieldError]:
    base = root + error.json_path[1:]
    if error.validator == "required":
        # Point at the missing member, not at the object that lacks it.
        missing = error.message.split("'")[1] if error.message.count("'") >= 2 else ""
        yield field_error(f"{base}.{missing}" if missing else base, error.message)
    elif error.validator == "additionalProperties" and isinstance(error.instance, dict) and isinstance(error.schema, dict):
        allowed = set(error.schema.get("properties", {}))
        for name in sorted(set(error.instance) - allowed):
            yield field_error(f"{base}.{name}", f"'{name}' is not a writable property here")
    else:
        yield field_error(base, error.message)


def field_error(path: str, message: str) -> FieldError:
    """Return the field error with its path and message cut to MAX_MESSAGE_CHARACTERS (a message quotes the value)."""
    return FieldError(_clipped(path), _clipped(message))


def _clipped(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARACTERS else text[: MAX_MESSAGE_CHARACTERS - 1] + "…"


DETAILED_ERRORS = 10
"""How many failing fields the problem's `detail` spells out; `errors` lists the rest."""


def describe_errors(where: str, errors: list[FieldError], total: int | None = None) -> str:
    """Return the problem detail that summarises the failing fields (the first few; `errors` has the list)."""
    total = len(errors) if total is None else total
    noun = "error" if total == 1 else "errors"
    shown = "; ".join(f"{e.path}: {e.message}" for e in errors[:DETAILED_ERRORS])
    summary = f"{total} validation {noun} in the {where}: {shown}"
    if total > len(errors):
        summary = f"{total} or more validation errors in the {where}; the first {len(errors)} are listed: {shown}"
    if len(errors) > DETAILED_ERRORS:
        summary += f"; and {len(errors) - DETAILED_ERRORS} more in errors"
    return summary


class ContractRules:
    """Validates documents against the spec's component schemas with the same rules and limits as request bodies."""

    def __init__(self, spec: dict[str, t.Any], limits: InputLimits = DEFAULT_LIMITS,
                 validators: ValidatorFor = validator_for) -> None:
        self._schemas = resolve_refs(spec)["components"]["schemas"]
        self.limits = limits
        self._validator_for = validators

    def errors(self, schema_name: str, document: t.Any) -> tuple[list[FieldError], int]:
        """Return the first failing fields of `document` against the component schema `schema_name`, and how many fail."""
        return field_errors(self._validator_for(self._schemas[schema_name]).iter_errors(document), limits=self.limits)

    def check(self, schema_name: str, document: t.Any, *, what: str) -> None:
        """Raise InvalidInput listing the fields of `document` that break `schema_name`."""
        errors, total = self.errors(schema_name, document)
        if errors:
            raise InvalidInput(describe_errors(what, errors, total), errors, total)

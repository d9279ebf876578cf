"""Request validators that report every failing field (Connexion stops at the first) and compile once."""

from __future__ import annotations

import copy
import functools
import itertools
import logging
import math
import re
import typing as t
from dataclasses import dataclass

import fastjsonschema
import orjson
from connexion.datastructures import MediaTypeDict
from connexion.exceptions import BadRequestProblem, ExtraParameterProblem, ProblemException, UnsupportedMediaTypeProblem
from connexion.json_schema import Draft4RequestValidator, Draft4ResponseValidator
from connexion.lifecycle import ConnexionRequest
from connexion.utils import is_null, is_nullable
from connexion.validators import VALIDATOR_MAP, JSONRequestBodyValidator, JSONResponseBodyValidator, ParameterValidator
from jsonschema import Draft4Validator, ValidationError
from jsonschema.validators import extend

from contract.errors import FieldError, problem_errors

_FORMAT_CHECKER = Draft4Validator.FORMAT_CHECKER
_logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=256)
def _ecma_regex(pattern: str) -> re.Pattern[str]:
    # OpenAPI patterns follow ECMA-262, where `$` ends the string; Python's `$` also matches before a
    # trailing newline, which let "1001\n" through as digits-only.
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _pattern(validator, pattern, instance, schema):
    if validator.is_type(instance, "string") and not _ecma_regex(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _no_nul(validator, expected_type, instance, schema):
    # PostgreSQL cannot store U+0000 in text; refuse it in every string, whatever the backend.
    if isinstance(instance, str) and "\x00" in instance:
        yield ValidationError("strings must not contain the NUL character (U+0000)")


def _finite(validator, expected_type, instance, schema):
    # JSON has no NaN or infinity, but a query parameter (`radius_km=nan`) or an Avro double can carry
    # one, and every range check is false for NaN: `nan > 20038` lets it through.
    if isinstance(instance, float) and not math.isfinite(instance):
        yield ValidationError(f"{instance!r} is not a finite number")


def _with_contract_rules(base):
    type_check = base.VALIDATORS["type"]

    def type_and_contract_rules(validator, expected_type, instance, schema):
        yield from type_check(validator, expected_type, instance, schema)
        yield from _no_nul(validator, expected_type, instance, schema)
        yield from _finite(validator, expected_type, instance, schema)

    return extend(base, {"pattern": _pattern, "type": type_and_contract_rules})


RequestValidator = _with_contract_rules(Draft4RequestValidator)
ResponseValidator = _with_contract_rules(Draft4ResponseValidator)
# Connexion creates its validator objects on every request; the schemas they receive are the
# operation's own long-lived dicts, so a compiled validator can be kept per schema object.
_compiled: dict[tuple[int, type], tuple[dict, t.Any]] = {}


def compiled_validator(schema: dict, kind: type = RequestValidator) -> t.Any:
    """Return a Draft 4 validator (with OpenAPI's nullable) for this schema object, compiled once.

    Request validators get a compiled pre-check in front (`FastPathValidator`); response validators,
    used in tests only, are jsonschema's as they are.
    """
    key = (id(schema), kind)
    entry = _compiled.get(key)
    if entry is None or entry[0] is not schema:
        full = kind(schema, format_checker=_FORMAT_CHECKER)
        entry = (schema, FastPathValidator(schema, full) if kind is RequestValidator else full)
        _compiled[key] = entry
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
    if isinstance(node.get("format"), str) and node["format"] in _FORMAT_CHECKER.checkers:
        return True
    return any(_uses_checked_format(value) for key, value in node.items() if key not in _DATA_KEYWORDS)


@dataclass(frozen=True, slots=True)
class InputLimits:
    """Bounds on what a client's document can make the service walk and list (README, Limits)."""

    max_json_depth: int = 32
    max_json_values: int = 10_000
    max_problem_errors: int = 100

    @property
    def counted_errors(self) -> int:
        """How many failing fields are counted before counting stops (the listed ones and more)."""
        return self.max_problem_errors * 10


DEFAULT_LIMITS = InputLimits()

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
        for field_error in _field_errors_of(error, root):
            total += 1
            if len(kept) < limits.max_problem_errors:
                kept.append(field_error)
        if total >= limits.counted_errors:
            break
    kept.sort(key=lambda e: e.path)
    return kept, total


def _field_errors_of(error: ValidationError, root: str) -> t.Iterator[FieldError]:
    base = root + error.json_path[1:]
    if error.validator == "required":
        # Point at the missing member, not at the object that lacks it.
        missing = error.message.split("'")[1] if error.message.count("'") >= 2 else ""
        yield _field_error(f"{base}.{missing}" if missing else base, error.message)
    elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        for name in sorted(set(error.instance) - allowed):
            yield _field_error(f"{base}.{name}", f"'{name}' is not a writable property here")
    else:
        yield _field_error(base, error.message)


def _field_error(path: str, message: str) -> FieldError:
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


def validation_problem(where: str, errors: list[FieldError], total: int | None = None) -> ProblemException:
    """Build the 400 problem that lists the failing fields (all, or the first when there are too many)."""
    total = len(errors) if total is None else total
    return ProblemException(
        status=400, title="Bad Request", detail=describe_errors(where, errors, total), ext=problem_errors(errors, total),
    )


def beyond_json_limits(document: t.Any, limits: InputLimits) -> BadRequestProblem | None:
    """Return the 400 problem for a document nested too deep or holding too many values, else None.

    Walked without recursion, before anything recursive sees the document (jsonschema, the merge patch,
    error messages' reprs), and bounding what jsonschema walks: it checks every member of an array even
    after the array broke its `maxItems` (40,000 valid images in 1 MB took 0.9 s of a worker's event loop).
    """
    values = 0
    pending = [(document, 1)]
    while pending:
        node, depth = pending.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limits.max_json_depth:
            return too_deep(limits)
        values += len(children)
        if values > limits.max_json_values:
            return BadRequestProblem(
                detail=f"The request body holds more than {limits.max_json_values} values in its objects and "
                f"arrays, the limit (APP_MAX_JSON_VALUES)."
            )
        for child in children:
            if isinstance(child, (dict, list)):
                pending.append((child, depth + 1))
    return None


def too_deep(limits: InputLimits) -> BadRequestProblem:
    """Return the 400 problem for a body nested beyond the limit."""
    return BadRequestProblem(
        detail=f"The request body nests objects and arrays more than {limits.max_json_depth} levels deep, "
        f"the limit (APP_MAX_JSON_DEPTH)."
    )


def require_content_type(scope: dict) -> None:
    """Refuse a body sent without a Content-Type (415): Connexion would guess one and the handler fail on it."""
    has_body = False
    for name, value in scope["headers"]:
        if name == b"content-type":
            return
        if name == b"content-length":
            has_body = value not in (b"0", b"")
    if has_body:
        raise UnsupportedMediaTypeProblem(
            detail="The request has a body but no Content-Type header; send the media type of the body "
            "(the operation's requestBody in the spec lists those it accepts)."
        )


class AllErrorsJSONBodyValidator(JSONRequestBodyValidator):
    """JSON body validator that lists the failing fields, bounds what it walks, and never answers 500 for bad bytes."""

    limits = DEFAULT_LIMITS

    @property
    def _validator(self) -> FastPathValidator:
        return compiled_validator(self._schema)

    async def wrap_receive(self, receive, *, scope):
        require_content_type(scope)
        return await super().wrap_receive(receive, scope=scope)

    async def _parse(self, stream, scope) -> t.Any:
        body = b"".join([message async for message in stream])
        if not body:
            return None
        try:
            if self._encoding.lower().replace("-", "") != "utf8":
                body = body.decode(self._encoding).encode()
            document = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            if str(error).startswith("depth limit exceeded"):  # orjson's own limit, far above ours
                raise too_deep(self.limits) from None
            raise BadRequestProblem(detail=f"The request body is not valid JSON: {error}") from None
        except (UnicodeError, LookupError) as error:
            raise BadRequestProblem(detail=f"The request body is not valid JSON: {error}") from None
        problem = beyond_json_limits(document, self.limits)
        if problem is not None:
            raise problem
        return document

    def _validate(self, body: t.Any) -> None:
        if body is None and not self._nullable:
            raise BadRequestProblem(detail="The request body must not be empty.")
        errors, total = field_errors(self._validator.iter_errors(body), limits=self.limits)
        if errors:
            raise validation_problem("request body", errors, total)


# Where a validated request keeps its parsed query and path parameters (a scope extension), so that the
# handler's request, built from the same scope for the same operation, need not parse them again.
RESOLVED_PARAMETERS = "roomservice.resolved_parameters"


class AllErrorsParameterValidator(ParameterValidator):
    """Parameter validator that lists every failing parameter, with compiled schemas."""

    limits = DEFAULT_LIMITS

    def validate_request(self, request: ConnexionRequest) -> None:
        if self.strict_validation:
            extra = self.validate_query_parameter_list(request, security_params=self.security_query_params)
            if extra:
                raise ExtraParameterProblem(param_type="query", extra_params=sorted(extra))
        errors: list[FieldError] = []
        sources = {
            "query": request.query_params,
            "path": request.path_params,
            "header": _CombinedHeaders(request.headers),
            "cookie": request.cookies,
        }
        for location, params in self.parameters.items():
            values = sources.get(location)
            if values is None:
                continue
            for param in params:
                key = param["name"].replace("-", "_") if location == "path" else param["name"]
                errors.extend(self._check(location, param, values.get(key)))
        if errors:
            listed = errors[: self.limits.max_problem_errors]
            raise validation_problem("request parameters", listed, len(errors))
        # The handler's request would parse and coerce the same query string and path again.
        request.scope.setdefault("extensions", {})[RESOLVED_PARAMETERS] = (request.query_params, request.path_params)

    @staticmethod
    def _check(location: str, param: dict, value: t.Any) -> list[FieldError]:
        path = f"{location}.{param['name']}"
        if value is None:
            return [FieldError(path, f"Missing {location} parameter '{param['name']}'")] if param.get("required") else []
        if is_nullable(param) and is_null(value):
            return []
        schema = param.get("schema", param)
        return [_field_error(path, error.message) for error in compiled_validator(schema).iter_errors(value)]


class _CombinedHeaders:
    """A request's header fields as the handler will read them: several lines of one name joined by commas.

    Starlette's `get` returns the first line only, but the WSGI environ the Flask handler reads joins
    them all (PEP 3333, a2wsgi), so a valid first `Idempotency-Key` line followed by a 300-character
    second one was validated as the first and used as both.
    """

    def __init__(self, headers) -> None:
        self._headers = headers

    def get(self, name: str) -> str | None:
        values = self._headers.getlist(name)
        if not values:
            return None
        return values[0] if len(values) == 1 else ",".join(values)


class CompiledJSONResponseValidator(JSONResponseBodyValidator):
    """Response validator with a compiled schema; a HEAD response has no body to check."""

    @property
    def validator(self) -> Draft4Validator:
        return compiled_validator(self._schema, ResponseValidator)

    def wrap_send(self, send):
        if self._scope.get("method") == "HEAD":
            return send
        return super().wrap_send(send)


def validator_map(limits: InputLimits = DEFAULT_LIMITS, avro_body: type | None = None) -> dict:
    """Return Connexion's validator map with the all-errors, bounded and compiled validators (and Avro bodies) in place."""
    body = MediaTypeDict(VALIDATOR_MAP["body"])
    body["*/*json"] = type("BoundedJSONBodyValidator", (AllErrorsJSONBodyValidator,), {"limits": limits})
    if avro_body is not None:
        body["application/avro"] = avro_body
    response = MediaTypeDict(VALIDATOR_MAP["response"])
    response["*/*json"] = CompiledJSONResponseValidator
    parameter = type("BoundedParameterValidator", (AllErrorsParameterValidator,), {"limits": limits})
    return {"parameter": parameter, "body": body, "response": response}

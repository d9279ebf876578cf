"""Request validators that report every failing field (Connexion stops at the first) and compile once."""

from __future__ import annotations

import functools
import re
import typing as t

import orjson
from connexion.datastructures import MediaTypeDict
from connexion.exceptions import BadRequestProblem, ExtraParameterProblem, ProblemException
from connexion.json_schema import Draft4RequestValidator, Draft4ResponseValidator
from connexion.lifecycle import ConnexionRequest
from connexion.utils import is_null, is_nullable
from connexion.validators import VALIDATOR_MAP, JSONRequestBodyValidator, JSONResponseBodyValidator, ParameterValidator
from jsonschema import Draft4Validator, ValidationError
from jsonschema.validators import extend

from providers.errors import FieldError

_FORMAT_CHECKER = Draft4Validator.FORMAT_CHECKER


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


def _with_contract_rules(base):
    type_check = base.VALIDATORS["type"]

    def type_and_no_nul(validator, expected_type, instance, schema):
        yield from type_check(validator, expected_type, instance, schema)
        yield from _no_nul(validator, expected_type, instance, schema)

    return extend(base, {"pattern": _pattern, "type": type_and_no_nul})


RequestValidator = _with_contract_rules(Draft4RequestValidator)
ResponseValidator = _with_contract_rules(Draft4ResponseValidator)
# Connexion creates its validator objects on every request; the schemas they receive are the
# operation's own long-lived dicts, so a compiled validator can be kept per schema object.
_compiled: dict[tuple[int, type], tuple[dict, Draft4Validator]] = {}


def compiled_validator(schema: dict, kind: type = RequestValidator) -> Draft4Validator:
    """Return a Draft 4 validator (with OpenAPI's nullable) for this schema object, compiled once."""
    key = (id(schema), kind)
    entry = _compiled.get(key)
    if entry is None or entry[0] is not schema:
        entry = (schema, kind(schema, format_checker=_FORMAT_CHECKER))
        _compiled[key] = entry
    return entry[1]


def field_errors(errors: t.Iterable[ValidationError], root: str = "$") -> list[FieldError]:
    """Turn jsonschema errors into field errors with JSON paths, one per failing field."""
    result: list[FieldError] = []
    for error in errors:
        base = root + error.json_path[1:]
        if error.validator == "required":
            # Point at the missing member, not at the object that lacks it.
            missing = error.message.split("'")[1] if error.message.count("'") >= 2 else ""
            result.append(FieldError(f"{base}.{missing}" if missing else base, error.message))
        elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = set(error.schema.get("properties", {}))
            for name in sorted(set(error.instance) - allowed):
                result.append(FieldError(f"{base}.{name}", f"'{name}' is not a writable property here"))
        else:
            result.append(FieldError(base, error.message))
    result.sort(key=lambda e: e.path)
    return result


def describe_errors(where: str, errors: list[FieldError]) -> str:
    """Return the problem detail that summarises every failing field."""
    noun = "error" if len(errors) == 1 else "errors"
    return f"{len(errors)} validation {noun} in the {where}: " + "; ".join(f"{e.path}: {e.message}" for e in errors)


def validation_problem(where: str, errors: list[FieldError]) -> ProblemException:
    """Build the 400 problem that lists every failing field."""
    return ProblemException(
        status=400,
        title="Bad Request",
        detail=describe_errors(where, errors),
        ext={"errors": [{"path": e.path, "message": e.message} for e in errors]},
    )


class AllErrorsJSONBodyValidator(JSONRequestBodyValidator):
    """JSON body validator that lists every failing field and never answers 500 for bad bytes."""

    @property
    def _validator(self):
        return compiled_validator(self._schema)

    async def _parse(self, stream, scope) -> t.Any:
        body = b"".join([message async for message in stream])
        if not body:
            return None
        try:
            if self._encoding.lower().replace("-", "") != "utf8":
                body = body.decode(self._encoding).encode()
            return orjson.loads(body)
        except (orjson.JSONDecodeError, UnicodeError, LookupError) as error:
            raise BadRequestProblem(detail=f"The request body is not valid JSON: {error}") from None

    def _validate(self, body: t.Any) -> None:
        if body is None and not self._nullable:
            raise BadRequestProblem(detail="The request body must not be empty.")
        errors = field_errors(self._validator.iter_errors(body))
        if errors:
            raise validation_problem("request body", errors)


class AllErrorsParameterValidator(ParameterValidator):
    """Parameter validator that lists every failing parameter, with compiled schemas."""

    def validate_request(self, request: ConnexionRequest) -> None:
        if self.strict_validation:
            extra = self.validate_query_parameter_list(request, security_params=self.security_query_params)
            if extra:
                raise ExtraParameterProblem(param_type="query", extra_params=sorted(extra))
        errors: list[FieldError] = []
        sources = {
            "query": request.query_params,
            "path": request.path_params,
            "header": request.headers,
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
            raise validation_problem("request parameters", errors)

    @staticmethod
    def _check(location: str, param: dict, value: t.Any) -> list[FieldError]:
        path = f"{location}.{param['name']}"
        if value is None:
            return [FieldError(path, f"Missing {location} parameter '{param['name']}'")] if param.get("required") else []
        if is_nullable(param) and is_null(value):
            return []
        schema = param.get("schema", param)
        return [FieldError(path, error.message) for error in compiled_validator(schema).iter_errors(value)]


class CompiledJSONResponseValidator(JSONResponseBodyValidator):
    """Response validator with a compiled schema; a HEAD response has no body to check."""

    @property
    def validator(self) -> Draft4Validator:
        return compiled_validator(self._schema, ResponseValidator)

    def wrap_send(self, send):
        if self._scope.get("method") == "HEAD":
            return send
        return super().wrap_send(send)


def validator_map(avro_body: type | None = None) -> dict:
    """Return Connexion's validator map with the all-errors and compiled validators (and Avro bodies) in place."""
    body = MediaTypeDict(VALIDATOR_MAP["body"])
    body["*/*json"] = AllErrorsJSONBodyValidator
    if avro_body is not None:
        body["application/avro"] = avro_body
    response = MediaTypeDict(VALIDATOR_MAP["response"])
    response["*/*json"] = CompiledJSONResponseValidator
    return {"parameter": AllErrorsParameterValidator, "body": body, "response": response}

"""Connexion's request validators, replaced: every failing field listed (Connexion stops at the first), bounds
applied before anything recursive runs, and a body without a Content-Type refused."""

from __future__ import annotations

import typing as t

import orjson
from connexion.datastructures import MediaTypeDict
from connexion.exceptions import BadRequestProblem, ExtraParameterProblem, ProblemException, UnsupportedMediaTypeProblem
from connexion.lifecycle import ConnexionRequest
from connexion.utils import is_null, is_nullable
from connexion.validators import VALIDATOR_MAP, JSONRequestBodyValidator, JSONResponseBodyValidator, ParameterValidator
from jsonschema import Draft4Validator

from contract.errors import FieldError, problem_errors
from contract.limits import DEFAULT_LIMITS, InputLimits, beyond_json_limits, too_deep
from contract.rules import ResponseValidator, ValidatorFor, describe_errors, field_error, field_errors, validator_for


def validation_problem(where: str, errors: list[FieldError], total: int | None = None) -> ProblemException:
    """Build the 400 problem that lists the failing fields (all, or the first when there are too many)."""
    total = len(errors) if total is None else total
    return ProblemException(
        status=400, title="Bad Request", detail=describe_errors(where, errors, total), ext=problem_errors(errors, total),
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
    validator_for: ValidatorFor = staticmethod(validator_for)

    async def wrap_receive(self, receive, *, scope):
        require_content_type(scope)
        return await super().wrap_receive(receive, scope=scope)

    async def _parse(self, stream, scope) -> t.Any:
        body = b"".join([message async for message in stream])
        if not body:
            return None
        try:
            # UTF-8 only: web/framing.py refuses JSON labelled with another charset (RFC 8259).
            document = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            if str(error).startswith("depth limit exceeded"):  # orjson's own limit, far above ours
                raise BadRequestProblem(detail=too_deep(self.limits)) from None
            raise BadRequestProblem(detail=f"The request body is not valid JSON: {error}") from None
        beyond = beyond_json_limits(document, self.limits)
        if beyond is not None:
            raise BadRequestProblem(detail=beyond)
        return document

    def _validate(self, body: t.Any) -> None:
        if body is None and not self._nullable:
            raise BadRequestProblem(detail="The request body must not be empty.")
        errors, total = field_errors(self.validator_for(self._schema).iter_errors(body), limits=self.limits)
        if errors:
            raise validation_problem("request body", errors, total)


class AllErrorsParameterValidator(ParameterValidator):
    """Parameter validator that lists every failing parameter, each header as the handler reads it."""

    limits = DEFAULT_LIMITS
    validator_for: ValidatorFor = staticmethod(validator_for)

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

    def _check(self, location: str, param: dict, value: t.Any) -> list[FieldError]:
        path = f"{location}.{param['name']}"
        if value is None:
            return [FieldError(path, f"Missing {location} parameter '{param['name']}'")] if param.get("required") else []
        if is_nullable(param) and is_null(value):
            return []
        schema = param.get("schema", param)
        return [field_error(path, error.message) for error in self.validator_for(schema).iter_errors(value)]


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
    """Response validator with the contract's rules, built once per schema; a HEAD response has no body to check."""

    @property
    def validator(self) -> Draft4Validator:
        return validator_for(self._schema, ResponseValidator)

    def wrap_send(self, send):
        if self._scope.get("method") == "HEAD":
            return send
        return super().wrap_send(send)


def validator_map(limits: InputLimits = DEFAULT_LIMITS, avro_body: type | None = None,
                  request_validators: ValidatorFor = validator_for) -> dict:
    """Return Connexion's validator map with the all-errors, bounded validators (and Avro bodies) in place.

    `request_validators` gives the validator of a request schema: contract/rules.py's, or the same
    behind a compiled pre-check (web/speedups/precheck.py).
    """
    shared = {"limits": limits, "validator_for": staticmethod(request_validators)}
    body = MediaTypeDict(VALIDATOR_MAP["body"])
    body["*/*json"] = type("BoundedJSONBodyValidator", (AllErrorsJSONBodyValidator,), shared)
    if avro_body is not None:
        body["application/avro"] = avro_body
    response = MediaTypeDict(VALIDATOR_MAP["response"])
    response["*/*json"] = CompiledJSONResponseValidator
    parameter = type("BoundedParameterValidator", (AllErrorsParameterValidator,), shared)
    return {"parameter": parameter, "body": body, "response": response}

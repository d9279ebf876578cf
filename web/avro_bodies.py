"""Request bodies sent as Avro container files: decoded, resolved, then held to the JSON body's rules."""

from __future__ import annotations

import typing as t

from connexion.exceptions import BadRequestProblem, ProblemException
from connexion.validators import AbstractRequestBodyValidator
from starlette.datastructures import MutableHeaders

from contract.avro import AvroSchemas
from contract.avro_bounds import AvroDecodeError
from contract.rules import ContractRules
from rest.representation import JSON
from web.validation import require_content_type, validation_problem

AVRO_RECORD_KEY = "x-avro-record"
"""Extension in the spec's application/avro body schema naming the Avro record (and OpenAPI component)."""
_TITLES = {400: "Bad Request", 413: "Content Too Large", 415: "Unsupported Media Type"}


def avro_body_validator(schemas: AvroSchemas, rules: ContractRules) -> type[AbstractRequestBodyValidator]:
    """Return a Connexion body validator class for application/avro bound to these schemas and rules."""

    class AvroRequestBodyValidator(AbstractRequestBodyValidator):
        """Reads one record, validates its JSON form like a JSON body, and passes it on as JSON."""

        MUTABLE_VALIDATION = True

        async def _parse(self, stream, scope) -> t.Any:
            data = b"".join([message async for message in stream])
            if not data:
                return None
            record = self._schema[AVRO_RECORD_KEY]
            try:
                return schemas.decode_single(record, data)
            except AvroDecodeError as error:
                raise ProblemException(status=error.status, title=_TITLES[error.status], detail=str(error)) from None

        def _validate(self, body: t.Any) -> None:
            if body is None:
                raise BadRequestProblem(detail="The request body must not be empty.")
            errors, total = rules.errors(schemas.get(self._schema[AVRO_RECORD_KEY]).short_name, body)
            if errors:
                raise validation_problem("request body", errors, total)

        async def wrap_receive(self, receive, *, scope):
            require_content_type(scope)
            receive, scope = await super().wrap_receive(receive, scope=scope)
            # Downstream the body is the record's JSON form, so the handler sees exactly what a JSON client sends.
            headers = MutableHeaders(scope=scope)
            headers["content-type"] = JSON
            return receive, scope

    return AvroRequestBodyValidator

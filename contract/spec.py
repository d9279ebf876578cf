"""The OpenAPI document as loaded once at start-up, and checks of documents against its schemas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from connexion.json_schema import ExtendedSafeLoader, resolve_refs

from contract.errors import FieldError, InvalidInput
from web.validation import DEFAULT_LIMITS, InputLimits, compiled_validator, describe_errors, field_errors

SPEC_PATH = Path(__file__).resolve().parent.parent / "swagger" / "openapi.yaml"
ASYNCAPI_PATH = SPEC_PATH.with_name("asyncapi.yaml")
"""The AsyncAPI document of the events the relay publishes, beside the OpenAPI document."""


def load_spec(path: Path = SPEC_PATH) -> dict[str, Any]:
    """Read the OpenAPI document (YAML) into a dict."""
    with path.open(encoding="utf-8") as handle:
        return yaml.load(handle, ExtendedSafeLoader)


_HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def with_path_parameters_in_operations(spec: dict[str, Any]) -> dict[str, Any]:
    """Return the spec with each path's parameters listed in each of its operations instead (same meaning).

    Connexion 3.3 appends a path's parameters to the operation's own list in place
    (`OpenAPIOperation.__init__`: `self._parameters += path_parameters`) every time one of its middlewares
    builds the operation, so an operation with parameters of its own (`If-Match`, `If-None-Match`)
    validated its path parameter five times and listed a malformed id five times. With no path-level
    parameters left there is nothing to append. An operation's own parameter wins over the path's of the
    same name and location, as OpenAPI says.
    """
    components = spec.get("components", {}).get("parameters", {})

    def identity(parameter: dict[str, Any]) -> tuple[str, str]:
        if "$ref" in parameter:
            parameter = components[parameter["$ref"].rsplit("/", 1)[-1]]
        return parameter["name"], parameter["in"]

    paths = {}
    for template, item in spec.get("paths", {}).items():
        shared = item.get("parameters", [])
        if not shared:
            paths[template] = item
            continue
        flattened = {key: value for key, value in item.items() if key != "parameters"}
        for method in _HTTP_METHODS:
            if method in item:
                own = item[method].get("parameters", [])
                names = {identity(parameter) for parameter in own}
                inherited = [parameter for parameter in shared if identity(parameter) not in names]
                flattened[method] = {**item[method], "parameters": [*inherited, *own]}
        paths[template] = flattened
    return {**spec, "paths": paths}


class ContractRules:
    """Validates documents against the spec's component schemas with the same rules and limits as request bodies."""

    def __init__(self, spec: dict[str, Any], limits: InputLimits = DEFAULT_LIMITS) -> None:
        self._schemas = resolve_refs(spec)["components"]["schemas"]
        self.limits = limits

    def errors(self, schema_name: str, document: Any) -> tuple[list[FieldError], int]:
        """Return the first failing fields of `document` against the component schema `schema_name`, and how many fail."""
        return field_errors(compiled_validator(self._schemas[schema_name]).iter_errors(document), limits=self.limits)

    def check(self, schema_name: str, document: Any, *, what: str) -> None:
        """Raise InvalidInput listing the fields of `document` that break `schema_name`."""
        errors, total = self.errors(schema_name, document)
        if errors:
            raise InvalidInput(describe_errors(what, errors, total), errors, total)

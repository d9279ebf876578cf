"""The OpenAPI and AsyncAPI documents: where they are, and the OpenAPI document as Connexion is given it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from connexion.json_schema import ExtendedSafeLoader

SPEC_PATH = Path(__file__).resolve().parent.parent / "swagger" / "openapi.yaml"
ASYNCAPI_PATH = SPEC_PATH.with_name("asyncapi.yaml")
"""The AsyncAPI document of the events the relay publishes, beside the OpenAPI document."""


def load_spec(path: Path = SPEC_PATH) -> dict[str, Any]:
    """Read the OpenAPI document (YAML) into a dict."""
    with path.open(encoding="utf-8") as handle:
        document: dict[str, Any] = yaml.load(handle, ExtendedSafeLoader)
        return document


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

"""The OpenAPI document as loaded once at start-up, and checks of documents against its schemas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from connexion.json_schema import ExtendedSafeLoader, resolve_refs

from providers.errors import FieldError, InvalidInput
from web.validation import compiled_validator, describe_errors, field_errors

SPEC_PATH = Path(__file__).resolve().parent.parent / "swagger" / "openapi.yaml"


def load_spec(path: Path = SPEC_PATH) -> dict[str, Any]:
    """Read the OpenAPI document (YAML) into a dict."""
    with path.open(encoding="utf-8") as handle:
        return yaml.load(handle, ExtendedSafeLoader)


class ContractRules:
    """Validates documents against the spec's component schemas with the same rules as request bodies."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self._schemas = resolve_refs(spec)["components"]["schemas"]

    def errors(self, schema_name: str, document: Any) -> list[FieldError]:
        """Return every field of `document` that breaks the component schema `schema_name`."""
        return field_errors(compiled_validator(self._schemas[schema_name]).iter_errors(document))

    def check(self, schema_name: str, document: Any, *, what: str) -> None:
        """Raise InvalidInput listing every field of `document` that breaks `schema_name`."""
        errors = self.errors(schema_name, document)
        if errors:
            raise InvalidInput(describe_errors(what, errors), errors)

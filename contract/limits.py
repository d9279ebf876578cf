"""Bounds on client documents: how deep and how large a JSON body may be, how many failing fields a problem lists."""

from __future__ import annotations

import typing as t
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class InputLimits:
    """Bounds on what a client's document can make the service walk and list (docs/api.md, Limits)."""

    max_json_depth: int = 32
    max_json_values: int = 10_000
    max_problem_errors: int = 100

    @property
    def counted_errors(self) -> int:
        """How many failing fields are counted before counting stops (the listed ones and more)."""
        return self.max_problem_errors * 10


DEFAULT_LIMITS = InputLimits()


def beyond_json_limits(document: t.Any, limits: InputLimits) -> str | None:
    """Say why a document is nested too deep or holds too many values, or return None when it is within the limits.

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
            return (f"The request body holds more than {limits.max_json_values} values in its objects and arrays, "
                    f"the limit (APP_MAX_JSON_VALUES).")
        for child in children:
            if isinstance(child, (dict, list)):
                pending.append((child, depth + 1))
    return None


def too_deep(limits: InputLimits) -> str:
    """Say that a body is nested beyond the limit."""
    return (f"The request body nests objects and arrays more than {limits.max_json_depth} levels deep, "
            f"the limit (APP_MAX_JSON_DEPTH).")

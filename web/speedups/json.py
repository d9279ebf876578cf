"""Connexion's Jsonifier on orjson: responses serialised several times faster than with the standard library's json."""

from __future__ import annotations

import typing as t

import orjson
from connexion.jsonifier import Jsonifier


class _OrjsonModule:
    """The json-module interface Connexion's Jsonifier expects, backed by orjson."""

    @staticmethod
    def dumps(data: t.Any, **_options: t.Any) -> str:
        return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS).decode()

    @staticmethod
    def loads(data: t.Any) -> t.Any:
        return orjson.loads(data)


def orjson_jsonifier() -> Jsonifier:
    """Return a Jsonifier that writes and reads JSON with orjson."""
    return Jsonifier(_OrjsonModule)

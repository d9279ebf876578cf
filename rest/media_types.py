"""Media types as RFC 9110 (8.3.1) writes them: case-insensitive names, optional whitespace, JSON in UTF-8."""

from __future__ import annotations

import re

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE = re.compile(rf"[ \t]*({_TOKEN}/{_TOKEN})")
_PARAMETER = re.compile(rf'[ \t]*;[ \t]*(?:({_TOKEN})=({_TOKEN}|"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"))?')
_TRAILING_SPACE = re.compile(r"[ \t]*")
_IS_TOKEN = re.compile(_TOKEN)
_QUOTED_PAIR = re.compile(r"\\(.)")
_NEEDS_ESCAPE = re.compile(r'(["\\])')


class MalformedMediaType(ValueError):
    """A Content-Type that is not `type/subtype` followed by `; name=value` parameters."""


class JsonNotUtf8(ValueError):
    """A JSON media type labelled with a charset other than UTF-8, which RFC 8259 does not allow."""


def canonical_media_type(value: str) -> str:
    """Return `value` as `type/subtype;name=value`: type, subtype, parameter names and charset lowercased, no optional whitespace.

    A quoted parameter value that is a token loses its quotes. Raises MalformedMediaType for anything that
    is not a media type, and JsonNotUtf8 for JSON (`application/json`, `*+json`) with a charset other than
    utf-8.
    """
    match = _MEDIA_TYPE.match(value)
    if match is None:
        raise MalformedMediaType(value)
    essence = match.group(1).lower()
    parts = [essence]
    position = match.end()
    while True:
        parameter = _PARAMETER.match(value, position)
        if parameter is None:
            break
        position = parameter.end()
        name, parameter_value = parameter.groups()
        if name is None:
            continue  # RFC 9110 allows empty parameters (`text/plain;;charset=utf-8`)
        name = name.lower()
        if parameter_value.startswith('"'):
            parameter_value = _QUOTED_PAIR.sub(r"\1", parameter_value[1:-1])
        if name == "charset":
            parameter_value = parameter_value.lower()
            if parameter_value != "utf-8" and (essence == "application/json" or essence.endswith("+json")):
                raise JsonNotUtf8(parameter_value)
        if _IS_TOKEN.fullmatch(parameter_value) is None:
            parameter_value = '"' + _NEEDS_ESCAPE.sub(r"\\\1", parameter_value) + '"'
        parts.append(f"{name}={parameter_value}")
    if _TRAILING_SPACE.match(value, position).end() != len(value):  # type: ignore[union-attr]
        raise MalformedMediaType(value)
    return ";".join(parts)

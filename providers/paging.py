"""Keyset pagination shared by every aggregate: opaque cursors and pages."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson

from contract.errors import FieldError, InvalidInput

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of results and the cursor of the next one (None on the last page)."""

    items: list[T]
    next_cursor: str | None


def encode_cursor(payload: dict[str, Any]) -> str:
    """Return the opaque, URL-safe form of a cursor payload."""
    return base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode()


def decode_cursor(token: str, parse: Callable[[dict[str, Any]], T]) -> T:
    """Decode a client's cursor and hand its payload to `parse`; anything malformed is InvalidInput."""
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(payload, dict):
            raise ValueError("not an object")
        return parse(payload)
    except InvalidInput:
        raise
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError, OverflowError, orjson.JSONDecodeError):
        raise bad_cursor("The cursor is malformed; use the next_cursor of a previous page.") from None


INT64_MAX = 2**63 - 1
"""The largest value a BIGINT column (and SQLite's INTEGER) holds: a cursor's number beyond it is malformed."""


def int64(value: Any, *, minimum: int = -INT64_MAX - 1) -> int:
    """Return `value` if it is an integer (not a bool) within `minimum`..INT64_MAX, else raise ValueError."""
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= INT64_MAX:
        raise ValueError("not a 64-bit integer in range")
    return value


def bad_cursor(message: str) -> InvalidInput:
    """Return the 400 error for a cursor that cannot be used."""
    return InvalidInput(message, [FieldError("query.cursor", message)])


DEFAULT_MAX_PAGE_BYTES = 1024 * 1024
"""A page stops at the entity that takes its stored size to this (APP_MAX_PAGE_BYTES); `limit` alone does not
bound an answer, since one valid room can store about 800 KB."""


def page_of(rows: list[T], limit: int, cursor_after: Callable[[T], str], *, cut_short: bool = False) -> Page[T]:
    """Cut `limit + 1` sorted rows into a page, with the cursor after its last row when more follow.

    `cut_short` says the rows stop early because of their size (more follow even if there are
    `limit` or fewer)."""
    if len(rows) <= limit and not cut_short:
        return Page(rows, None)
    page = rows[:limit]
    return Page(page, cursor_after(page[-1]))


def within_bytes(rows: Sequence[T], sizes: Sequence[int], max_bytes: int) -> tuple[list[T], bool]:
    """Keep the leading rows while the sizes before each add up to less than `max_bytes` (always the first).

    Returns the rows kept and whether any were left out."""
    kept, total = 0, 0
    for size in sizes:
        if kept and total >= max_bytes:
            break
        total += size
        kept += 1
    return list(rows[:kept]), kept < len(rows)

"""Builders of valid request documents for the tests."""

from __future__ import annotations

import itertools
from typing import Any

_serial = itertools.count(1)


def new_room(**overrides: Any) -> dict[str, Any]:
    """Return a valid NewRoom body with a unique url; keyword arguments replace fields, None leaves one out."""
    n = next(_serial)
    room: dict[str, Any] = {
        "name": f"Room {n}",
        "description": "Bright room in a shared flat.",
        "price": 500,
        "recurrency": "monthly",
        "provider": "wg-gesucht",
        "url": f"https://example.com/listings/{n}",
        "monthly_price": 500,
        "property_size": "14 m²",
        "coordinates": {"lat": 52.52, "lon": 13.405},
        "area": {"name": "Mitte", "country": "Germany", "city": "Berlin"},
    }
    room.update(overrides)
    return {key: value for key, value in room.items() if value is not None}


def large_room(**overrides: Any) -> dict[str, Any]:
    """A valid room that stores about 30 KB (the spec allows about 800 KB: 100 image URLs of 2,048 characters)."""
    images = [{"url": "https://example.com/" + "i" * 1_980} for _ in range(10)]
    return new_room(description="d" * 10_000, images=images, **overrides)


def large_room_of_emoji(**overrides: Any) -> dict[str, Any]:
    """A valid room that also stores about 30 KB, in a quarter of the characters (each emoji is 4 bytes in UTF-8)."""
    images = [{"url": "https://example.com/" + "\N{GRINNING FACE}" * 495} for _ in range(10)]
    return new_room(description="\N{GRINNING FACE}" * 2_500, images=images, **overrides)


MERGE_PATCH = "application/merge-patch+json"

"""The Items aggregate: server-assigned integer keys; its provider interface and search query."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

from providers.paging import Page, decode_cursor, encode_cursor, int64, page_of

Item = dict[str, Any]
"""An item in its API shape: `id` and `name`."""


@dataclass(frozen=True, slots=True)
class StoredItem:
    """An item together with its version, the basis of its ETag."""

    item: Item
    version: int


@dataclass(frozen=True, slots=True)
class ItemQuery:
    """Items whose name contains `name` (case-insensitive), after id `after_id`, in id order."""

    name: str | None = None
    limit: int = 5
    after_id: int | None = None


def decode_item_cursor(token: str) -> int:
    """Return the last id of the previous page from a client's cursor, or raise InvalidInput."""

    def parse(payload: dict[str, Any]) -> int:
        return int64(payload["i"], minimum=0)

    return decode_cursor(token, parse)


def item_page(rows: list[Item], limit: int) -> Page[Item]:
    """Cut `limit + 1` rows in id order into a page and its next cursor."""
    return page_of(rows, limit, lambda last: encode_cursor({"i": last["id"]}))


class ItemsProvider(abc.ABC):
    """Persistence of items. Implementations join the caller's transaction and never commit."""

    @abc.abstractmethod
    def create(self, new_item: Item) -> StoredItem:
        """Store a validated new item and assign its id."""

    @abc.abstractmethod
    def get(self, item_id: int, *, for_update: bool = False) -> StoredItem:
        """Return the item; raise NotFound. `for_update` locks it until the transaction ends."""

    @abc.abstractmethod
    def replace(self, item_id: int, item: Item) -> StoredItem:
        """Overwrite the item's writable fields and bump its version; raise NotFound."""

    @abc.abstractmethod
    def delete(self, item_id: int) -> None:
        """Remove the item; raise NotFound."""

    @abc.abstractmethod
    def search(self, query: ItemQuery) -> Page[Item]:
        """Return one page of matching items in id order."""

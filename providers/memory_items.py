"""In-memory ItemsProvider for unit tests."""

from __future__ import annotations

import itertools
import threading

from contract.errors import NotFound
from providers.events import Outbox
from providers.items import Item, ItemQuery, ItemsProvider, StoredItem, item_page
from providers.paging import Page


class InMemoryItemsProvider(ItemsProvider):
    """Items in a dict with a counter for ids that are never reused."""

    def __init__(self, outbox: Outbox | None = None) -> None:
        self._outbox = outbox
        self._items: dict[int, StoredItem] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def create(self, new_item: Item) -> StoredItem:
        with self._lock:
            stored = StoredItem({"id": next(self._ids), "name": new_item["name"]}, 1)
            self._items[stored.item["id"]] = stored
            self._record("item.created", stored.item)
            return StoredItem(dict(stored.item), 1)

    def get(self, item_id: int, *, for_update: bool = False) -> StoredItem:
        stored = self._items.get(item_id)
        if stored is None:
            raise NotFound(f"Item {item_id} does not exist.")
        return StoredItem(dict(stored.item), stored.version)

    def replace(self, item_id: int, item: Item) -> StoredItem:
        with self._lock:
            current = self.get(item_id)
            stored = StoredItem({"id": item_id, "name": item["name"]}, current.version + 1)
            self._items[item_id] = stored
            self._record("item.updated", stored.item)
            return StoredItem(dict(stored.item), stored.version)

    def delete(self, item_id: int) -> None:
        with self._lock:
            if self._items.pop(item_id, None) is None:
                raise NotFound(f"Item {item_id} does not exist.")
            self._record("item.deleted", {"id": item_id}, deleted=True)

    def _record(self, event_type: str, item: Item, *, deleted: bool = False) -> None:
        if self._outbox is not None:
            self._outbox.append(event_type, "roomservice.Item", str(item["id"]), None if deleted else item)

    def search(self, query: ItemQuery) -> Page[Item]:
        needle = query.name.casefold() if query.name is not None else None
        rows = [
            dict(s.item)
            for item_id, s in sorted(self._items.items())
            if (query.after_id is None or item_id > query.after_id)
            and (needle is None or needle in s.item["name"].casefold())
        ]
        return item_page(rows[: query.limit + 1], query.limit)

"""Handlers of the /items operations."""

from __future__ import annotations

from typing import Any

from connexion import NoContent
from injector import Inject

from providers.items import ItemQuery, ItemsProvider, decode_item_cursor
from rest.conditional import entity_tag, require_match
from rest.idempotency import IdempotentCreates
from rest.representation import Answer, HandlerResult, Representer
from rest.request import RequestFacts


def search_items(
    items: Inject[ItemsProvider],
    represent: Inject[Representer],
    name: str | None = None,
    limit: int = 5,
    cursor: str | None = None,
) -> HandlerResult:
    """Return one page of the items whose name contains `name`."""
    page = items.search(ItemQuery(name=name, limit=limit, after_id=decode_item_cursor(cursor) if cursor else None))
    return represent.many("Item", page.items, page.next_cursor)


def create_item(body: dict[str, Any], items: Inject[ItemsProvider], represent: Inject[Representer],
                once: Inject[IdempotentCreates]) -> Answer:
    """Store a new item; a retry with the same Idempotency-Key gets the first answer again."""

    def create() -> HandlerResult:
        stored = items.create(body)
        return represent.created("Item", stored.item, stored.item["id"], entity_tag(stored.version))

    return once.run("create_item", "roomservice.NewItem", body, create)


def get_item(item_id: int, items: Inject[ItemsProvider], represent: Inject[Representer]) -> HandlerResult:
    """Return one item, or 304 when If-None-Match names its current ETag."""
    stored = items.get(item_id)
    return represent.read("Item", stored.item, entity_tag(stored.version))


def replace_item(item_id: int, body: dict[str, Any], items: Inject[ItemsProvider], represent: Inject[Representer],
                 http: Inject[RequestFacts]) -> HandlerResult:
    """Replace an item's writable fields."""
    require_match(http.header("If-Match"), items.get(item_id, for_update=True).version)
    stored = items.replace(item_id, body)
    return represent.one("Item", stored.item, 200, {"ETag": entity_tag(stored.version)})


def delete_item(item_id: int, items: Inject[ItemsProvider], http: Inject[RequestFacts]) -> tuple[Any, int]:
    """Delete an item."""
    precondition = http.header("If-Match")
    if precondition is not None:
        require_match(precondition, items.get(item_id, for_update=True).version)
    items.delete(item_id)
    return NoContent, 204

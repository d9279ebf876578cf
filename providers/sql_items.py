"""SQLAlchemy ItemsProvider."""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, String, delete, insert, select, update
from sqlalchemy.orm import Mapped, mapped_column

from contract.errors import NotFound
from providers.database import Base, ConnectionSource, OnConnection
from providers.events import Outbox
from providers.items import Item, ItemQuery, ItemsProvider, StoredItem, item_page
from providers.paging import Page

# SQLite only auto-assigns keys to an INTEGER PRIMARY KEY; AUTOINCREMENT keeps deleted ids from coming back.
ITEM_ID = BigInteger().with_variant(Integer(), "sqlite")


ITEM_SCHEMA = "roomservice.Item"


class ItemRow(Base):
    """One stored item."""

    __tablename__ = "items"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(ITEM_ID, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)


def _is_storable_id(item_id: int) -> bool:
    return 0 < item_id <= 2**63 - 1


class SqlItemsProvider(OnConnection, ItemsProvider):
    """Items through the request's database connection; the caller owns the transaction."""

    def __init__(self, connect: ConnectionSource, outbox: Outbox) -> None:
        super().__init__(connect)
        self._outbox = outbox

    def create(self, new_item: Item) -> StoredItem:
        statement = insert(ItemRow).values(name=new_item["name"], version=1).returning(ItemRow.id, ItemRow.version)
        row = self._connection.execute(statement).one()
        stored = StoredItem({"id": row.id, "name": new_item["name"]}, row.version)
        self._outbox.append("item.created", ITEM_SCHEMA, str(row.id), stored.item)
        return stored

    def get(self, item_id: int, *, for_update: bool = False) -> StoredItem:
        statement = select(ItemRow.id, ItemRow.name, ItemRow.version).where(ItemRow.id == item_id)
        if for_update:
            statement = statement.with_for_update()
        row = self._connection.execute(statement).one_or_none() if _is_storable_id(item_id) else None
        if row is None:
            raise NotFound(f"Item {item_id} does not exist.")
        return StoredItem({"id": row.id, "name": row.name}, row.version)

    def replace(self, item_id: int, item: Item) -> StoredItem:
        statement = (
            update(ItemRow)
            .where(ItemRow.id == item_id)
            .values(name=item["name"], version=ItemRow.version + 1)
            .returning(ItemRow.id, ItemRow.name, ItemRow.version)
        )
        row = self._connection.execute(statement).one_or_none() if _is_storable_id(item_id) else None
        if row is None:
            raise NotFound(f"Item {item_id} does not exist.")
        stored = StoredItem({"id": row.id, "name": row.name}, row.version)
        self._outbox.append("item.updated", ITEM_SCHEMA, str(row.id), stored.item)
        return stored

    def delete(self, item_id: int) -> None:
        if not _is_storable_id(item_id) or self._connection.execute(delete(ItemRow).where(ItemRow.id == item_id)).rowcount == 0:
            raise NotFound(f"Item {item_id} does not exist.")
        self._outbox.append("item.deleted", ITEM_SCHEMA, str(item_id), None)

    def search(self, query: ItemQuery) -> Page[Item]:
        statement = select(ItemRow.id, ItemRow.name)
        if query.name is not None:
            statement = statement.where(ItemRow.name.icontains(query.name, autoescape=True))
        if query.after_id is not None:
            statement = statement.where(ItemRow.id > query.after_id)
        rows = self._connection.execute(statement.order_by(ItemRow.id).limit(query.limit + 1)).all()
        return item_page([{"id": row.id, "name": row.name} for row in rows], query.limit)

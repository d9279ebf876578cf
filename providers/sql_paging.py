"""Pages bounded by their stored size in SQL, so that a page of large rows is never read whole."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, bindparam, func, select


def bounded_in_bytes(statement: Select[Any], order: Sequence[Any], size: ColumnElement[int]) -> Select[Any]:
    """Wrap a sorted, limited select so it returns its leading rows while their sizes add up to under `:max_page_bytes`.

    The database adds the sizes up (a running sum over the select's own order, before its LIMIT) and sends
    only the rows a page keeps, the first always. Meant for an order an index gives (the event feed's
    positions), where the sum is a stream: over another order the database sorts every match in full.
    `size` must be positive for every row, so that the running sum orders the outer select as `order` does.
    """
    inner = statement.add_columns(
        size.label("page_row_bytes"),
        func.sum(size).over(order_by=order, rows=(None, 0)).label("page_running_bytes"),
    ).subquery("page")
    columns = [column for column in inner.c if column.key not in ("page_row_bytes", "page_running_bytes")]
    under = inner.c.page_running_bytes - inner.c.page_row_bytes < bindparam("max_page_bytes", type_=Integer)
    return select(*columns).where(under).order_by(inner.c.page_running_bytes)

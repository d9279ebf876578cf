"""SQLAlchemy IdempotencyStore: one row per key, written in the transaction of the create it guards."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Index,
    LargeBinary,
    SmallInteger,
    String,
    and_,
    bindparam,
    delete,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from providers.database import Base, ConnectionSource, OnConnection
from providers.idempotency import (
    CLAIMED,
    IN_PROGRESS,
    MISMATCH,
    Claim,
    IdempotencyStore,
    KeyScope,
    Outcome,
    StoredResponse,
)


class IdempotencyRow(Base):
    """One key: who used it for what, the request's fingerprint and, once the create finished, its answer."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_expires_at", "expires_at"),)

    principal: Mapped[str] = mapped_column(String(64), primary_key=True)
    operation: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[int | None] = mapped_column(SmallInteger)
    headers: Mapped[list[Any] | None] = mapped_column(JSON)
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


_T = IdempotencyRow
_CLAIM_COLUMNS = (_T.principal, _T.operation, _T.key, _T.fingerprint, _T.created_at, _T.expires_at)
# The same statement on PostgreSQL and SQLite (3.24+). On PostgreSQL, ON CONFLICT DO NOTHING waits for
# a concurrent transaction that inserted the same key and then does nothing if it committed, so of
# concurrent duplicates exactly one claims the key and the others read its committed answer. On SQLite
# the insert takes the database's write lock, which serialises writers anyway. A typed text() is
# compiled once; dialect Insert constructs with ON CONFLICT are compiled again on every call.
CLAIM_KEY = text(
    f"INSERT INTO idempotency_keys ({', '.join(c.name for c in _CLAIM_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c.name for c in _CLAIM_COLUMNS)}) "
    "ON CONFLICT (principal, operation, key) DO NOTHING"
).bindparams(*(bindparam(c.name, type_=c.type) for c in _CLAIM_COLUMNS))
# Bind names differ from the column names: update() reserves those for its SET clause.
_SAME_KEY = and_(_T.principal == bindparam("p"), _T.operation == bindparam("o"), _T.key == bindparam("k"))
READ_KEY = select(_T.fingerprint, _T.status, _T.headers, _T.body, _T.expires_at).where(_SAME_KEY)
DROP_EXPIRED_KEY = delete(_T).where(_SAME_KEY, _T.expires_at <= bindparam("now"))
COMPLETE_KEY = update(_T).where(_SAME_KEY).values(
    status=bindparam("r_status", type_=SmallInteger()),
    headers=bindparam("r_headers", type_=JSON()),
    body=bindparam("r_body", type_=LargeBinary()),
)
# SKIP LOCKED: keys a running request holds (about to replace an expired one) are left for later, so
# two purges, or a purge and a claim, never wait on each other. SQLite has no FOR UPDATE and drops it.
PURGE_EXPIRED = delete(_T).where(
    tuple_(_T.principal, _T.operation, _T.key).in_(
        select(_T.principal, _T.operation, _T.key)
        .where(_T.expires_at <= bindparam("now"))
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True)
    )
)
# Replacing an expired key races with other requests doing the same; a few rounds always settle it.
_CLAIM_ROUNDS = 3


def _scope_params(scope: KeyScope) -> dict[str, str]:
    return {"p": scope.principal, "o": scope.operation, "k": scope.key}


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything is stored in UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class SqlIdempotencyStore(OnConnection, IdempotencyStore):
    """Keys in the `idempotency_keys` table, on the request's connection; the caller owns the transaction."""

    def __init__(self, connect: ConnectionSource) -> None:
        super().__init__(connect)

    def claim(self, scope: KeyScope, fingerprint: str, now: datetime, expires_at: datetime) -> Claim:
        connection = self._connection
        values = {"principal": scope.principal, "operation": scope.operation, "key": scope.key,
                  "fingerprint": fingerprint, "created_at": now, "expires_at": expires_at}
        for _ in range(_CLAIM_ROUNDS):
            if connection.execute(CLAIM_KEY, values).rowcount == 1:
                return CLAIMED
            row = connection.execute(READ_KEY, _scope_params(scope)).one_or_none()
            if row is None:
                continue  # purged or replaced and rolled back since the insert: try again
            stored_fingerprint, status, headers, body, stored_expiry = row
            if _utc(stored_expiry) <= now:
                connection.execute(DROP_EXPIRED_KEY, _scope_params(scope) | {"now": now})
                continue
            if stored_fingerprint != fingerprint:
                return MISMATCH
            if status is None:
                return IN_PROGRESS  # only this transaction's own claim can be seen unfinished
            return Claim(Outcome.REPLAY, StoredResponse(status, tuple((name, value) for name, value in headers), bytes(body)))
        return IN_PROGRESS

    def complete(self, scope: KeyScope, response: StoredResponse) -> None:
        self._connection.execute(COMPLETE_KEY, _scope_params(scope) | {
            "r_status": response.status,
            "r_headers": [list(pair) for pair in response.headers],
            "r_body": response.body,
        })

    def abandon(self, scope: KeyScope) -> None:
        # The claim is part of the request's transaction, which rolls back for every failed request:
        # a statement here would only fail again in a transaction the database already aborted.
        return

    def purge_expired(self, now: datetime, limit: int = 1000) -> int:
        return self._connection.execute(PURGE_EXPIRED, {"now": now, "limit": limit}).rowcount

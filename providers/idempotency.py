"""Idempotency keys: the first answer to a keyed create, kept so that a retry with the same key gets it again."""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class KeyScope:
    """One key as its owner used it: keys of different principals or operations never meet."""

    principal: str
    operation: str
    key: str


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """The answer a keyed request got: status, headers in order, body bytes as sent."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


class Outcome(enum.Enum):
    """What claiming a key found."""

    CLAIMED = "claimed"  # the key is new (or had expired): this request goes ahead and completes it
    REPLAY = "replay"  # a request with the same fingerprint finished: answer its response again
    MISMATCH = "mismatch"  # the key was used with another fingerprint
    IN_PROGRESS = "in progress"  # the request that claimed the key has not finished


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of a claim; `response` is set for REPLAY only."""

    outcome: Outcome
    response: StoredResponse | None = None


CLAIMED = Claim(Outcome.CLAIMED)
MISMATCH = Claim(Outcome.MISMATCH)
IN_PROGRESS = Claim(Outcome.IN_PROGRESS)


class IdempotencyStore(abc.ABC):
    """Persistence of idempotency keys. SQL implementations join the caller's transaction and never commit.

    A claim and the create it guards commit or roll back together, so only answers of committed creates
    are ever replayed, and a failed request leaves its key free.
    """

    @abc.abstractmethod
    def claim(self, scope: KeyScope, fingerprint: str, now: datetime, expires_at: datetime) -> Claim:
        """Reserve the key for a request with this fingerprint, or report what the key already holds.

        A key whose `expires_at` is not after `now` counts as absent and is replaced. On PostgreSQL a
        claim of a key that a concurrent transaction claimed waits until that transaction ends.
        """

    @abc.abstractmethod
    def complete(self, scope: KeyScope, response: StoredResponse) -> None:
        """Record the answer of the request that claimed the key."""

    @abc.abstractmethod
    def abandon(self, scope: KeyScope) -> None:
        """Free a claimed key whose request failed (for SQL the request's rollback already does)."""

    @abc.abstractmethod
    def purge_expired(self, now: datetime, limit: int = 1000) -> int:
        """Delete up to `limit` keys that expired by `now`; return how many went."""

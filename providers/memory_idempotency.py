"""In-memory IdempotencyStore for unit tests."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

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


@dataclass(slots=True)
class _Entry:
    fingerprint: str
    expires_at: datetime
    response: StoredResponse | None = None


class InMemoryIdempotencyStore(IdempotencyStore):
    """Keys in a dict. There is no transaction to wait for, so a key whose request runs is IN_PROGRESS."""

    def __init__(self) -> None:
        self._entries: dict[KeyScope, _Entry] = {}
        self._lock = threading.Lock()

    def claim(self, scope: KeyScope, fingerprint: str, now: datetime, expires_at: datetime) -> Claim:
        with self._lock:
            entry = self._entries.get(scope)
            if entry is None or entry.expires_at <= now:
                self._entries[scope] = _Entry(fingerprint, expires_at)
                return CLAIMED
            if entry.fingerprint != fingerprint:
                return MISMATCH
            if entry.response is None:
                return IN_PROGRESS
            return Claim(Outcome.REPLAY, entry.response)

    def complete(self, scope: KeyScope, response: StoredResponse) -> None:
        with self._lock:
            self._entries[scope].response = response

    def abandon(self, scope: KeyScope) -> None:
        with self._lock:
            entry = self._entries.get(scope)
            if entry is not None and entry.response is None:
                del self._entries[scope]

    def purge_expired(self, now: datetime, limit: int = 1000) -> int:
        with self._lock:
            expired = [scope for scope, entry in self._entries.items() if entry.expires_at <= now][:limit]
            for scope in expired:
                del self._entries[scope]
            return len(expired)

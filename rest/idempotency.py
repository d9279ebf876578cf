"""Idempotent creates (IETF httpapi draft "The Idempotency-Key HTTP Header Field"): a retry gets the first answer."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from contract.avro import AvroSchemas
from contract.errors import DomainError
from providers.idempotency import IdempotencyStore, KeyScope, Outcome, StoredResponse
from rest.representation import Answer, HandlerResult, Rendered
from rest.request import RequestFacts

IDEMPOTENCY_KEY = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
PURGE_INTERVAL = timedelta(seconds=60)



class IdempotencyKeyReused(DomainError):
    """The key was already used for a request with a different body (the draft's 422)."""

    status = 422
    title = "Unprocessable Content"


class IdempotencyKeyInProgress(DomainError):
    """The request that first used the key has not finished (the draft's 409)."""

    status = 409
    title = "Conflict"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class IdempotentCreates:
    """Runs a create once per Idempotency-Key and answers its retries with the stored first answer.

    A key belongs to the authenticated principal (one per API key) and the operation, so clients never
    see each other's answers. The request's fingerprint hashes its content type and the validated body
    in its Avro binary form under the operation's request record: an Avro body reaches the handler as
    its JSON form, and a JSON body that spells out a default (`"is_visible": true`) or carries members
    the contract ignores encodes to the same bytes, so a retry of the same record matches however it is
    sent. The claim, the create and its stored answer share the request's transaction, so only answers
    of committed creates are replayed, and a failed request (any 4xx or 5xx) leaves its key unused.
    """

    def __init__(self, store: Callable[[], IdempotencyStore], schemas: AvroSchemas, ttl_seconds: int,
                 request: RequestFacts, clock: Callable[[], datetime] = _utc_now) -> None:
        self._store = store
        self._schemas = schemas
        self._request = request
        self._ttl = timedelta(seconds=ttl_seconds)
        self._clock = clock
        self._next_purge = datetime.min.replace(tzinfo=UTC)

    def run(self, operation: str, record: str, body: Mapping[str, Any], create: Callable[[], HandlerResult]) -> Answer:
        """Return `create()`'s answer, or with an Idempotency-Key that was used before, that first answer again."""
        raw_key = self._request.header(IDEMPOTENCY_KEY)
        if raw_key is None:
            return create()  # the only cost a request without the header pays: one header look-up
        # The spec's pattern admits a bare key or the draft's sf-string form; both name the same key.
        key = raw_key[1:-1] if raw_key.startswith('"') else raw_key
        scope = KeyScope(self._request.principal(), operation, key)
        now = self._clock()
        store = self._store()
        claim = store.claim(scope, self._fingerprint(record, body), now, now + self._ttl)
        if claim.outcome is Outcome.REPLAY and claim.response is not None:
            return _as_response(claim.response, {REPLAYED: "true"})
        if claim.outcome is Outcome.MISMATCH:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was already used with a different request body; "
                "send a new key for a new request."
            )
        if claim.outcome is Outcome.IN_PROGRESS:
            raise IdempotencyKeyInProgress(
                "A request with this Idempotency-Key is still being processed; retry once it has finished."
            )
        if now >= self._next_purge:
            # Expired keys are replaced when they are used again; this clears the ones nobody reuses.
            self._next_purge = now + PURGE_INTERVAL
            store.purge_expired(now)
        try:
            answer = _stored(create())
        except BaseException:
            store.abandon(scope)
            raise
        if answer.status < 400:
            store.complete(scope, answer)
        else:
            store.abandon(scope)  # errors are not kept: the request rolls back, and a corrected retry may succeed
        return _as_response(answer)

    def _fingerprint(self, record: str, body: Mapping[str, Any]) -> str:
        digest = hashlib.sha256(self._request.media_type().encode())
        digest.update(b"\n")
        digest.update(self._schemas.encode_single_object(record, body))
        return digest.hexdigest()


def _stored(result: HandlerResult) -> StoredResponse:
    """Render a handler's (body, status, headers) to the bytes sent, as Connexion would."""
    body, status, headers = result
    if isinstance(body, bytes):
        content = body
    else:
        # JSON as the app's orjson Jsonifier writes it (and Connexion's trailing newline); rendered here, so the
        # first answer and its replays are the same bytes whichever Jsonifier the app has.
        content = orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS) + b"\n"
    return StoredResponse(status, tuple(headers.items()), content)


def _as_response(answer: StoredResponse, extra_headers: Mapping[str, str] | None = None) -> Rendered:
    # The same bytes for the first answer and every replay: the body is never serialised twice.
    return Rendered(answer.body, answer.status, dict(answer.headers) | dict(extra_headers or {}))

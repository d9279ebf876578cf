"""Where the issuer's signing keys come from: a PEM key from the settings, or its JWKS URL fetched off the request path.

Connexion runs security checks on the event loop (shared/design.md §1), so a request never fetches: a fetch
runs in its own thread, and a request that needs one (no key set yet, or a token naming a `kid` the set does
not hold, as after the issuer rotated its keys) awaits that thread's outcome for at most the fetch timeout,
without blocking the loop. Requests that arrive during a fetch share it. Refetches are bounded: at most one
fetch starts per `min_refetch_seconds`, so tokens naming made-up kids cannot make the service hammer the
issuer; such a token is refused at once while the bound holds. A key set older than `refresh_seconds` keeps
serving while a background fetch replaces it; a failed fetch keeps the keys already held.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future

from rest.bearer_tokens import KeySet, key_set_from_jwks, key_set_from_pem

logger = logging.getLogger(__name__)

MAX_JWKS_BYTES = 1024 * 1024


class StaticKeys:
    """One public key, configured as PEM: nothing to fetch, ever."""

    def __init__(self, pem: str, algorithms: frozenset[str]) -> None:
        self._set = key_set_from_pem(pem, algorithms)

    def start(self) -> None:
        """Nothing to prepare."""

    def key_set(self) -> KeySet | None:
        """Return the key set."""
        return self._set

    async def refetched(self) -> KeySet | None:
        """Return None: a configured key is never refetched."""
        return None


class JwksKeys:
    """The issuer's keys from its JWKS URL, cached; see the module's docstring for when it fetches."""

    def __init__(self, url: str, algorithms: frozenset[str], *, timeout_seconds: float, refresh_seconds: float,
                 min_refetch_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self._algorithms = algorithms
        self._timeout = timeout_seconds
        self._refresh = refresh_seconds
        self._min_refetch = min_refetch_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._set: KeySet | None = None
        self._fetched_at = -math.inf
        self._last_attempt = -math.inf
        self._inflight: Future[None] | None = None
        self.fetches = 0  # attempts finished, successful or not

    def start(self) -> None:
        """Begin the first fetch in the background (the app's start-up), so that the first token finds the keys."""
        self._begin_fetch()

    def key_set(self) -> KeySet | None:
        """Return the keys held now (None before the first successful fetch); CPU only, never waits.

        A set older than the refresh interval is kept serving while a background fetch replaces it.
        """
        if self._set is not None and self._clock() - self._fetched_at > self._refresh:
            self._begin_fetch()
        return self._set

    async def refetched(self) -> KeySet | None:
        """Fetch again, unless the bound on refetches holds, and return the outcome; None when no fetch was made.

        Awaited on the event loop: the fetch runs in its own thread, and the wait ends after the fetch timeout.
        """
        future = self._begin_fetch()
        if future is None:
            return None
        try:
            # Shielded: a request that stops waiting leaves the fetch running for the others.
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), self._timeout)
        except TimeoutError:
            return None
        return self._set

    def _begin_fetch(self) -> Future[None] | None:
        with self._lock:
            if self._inflight is not None:
                return self._inflight
            now = self._clock()
            if now - self._last_attempt < self._min_refetch:
                return None
            self._last_attempt = now
            future: Future[None] = Future()
            future.set_running_or_notify_cancel()
            self._inflight = future
        threading.Thread(target=self._fetch, args=(future,), name="jwks-fetch", daemon=True).start()
        return future

    def _fetch(self, future: Future[None]) -> None:
        try:
            key_set = key_set_from_jwks(self._download(), self._algorithms)
        except Exception as error:  # any failure keeps the keys held; the next fetch is bounded like any other
            logger.warning("could not fetch the issuer's keys from %s: %s", self.url, error)
        else:
            self._set = key_set
            self._fetched_at = self._clock()
            logger.info("fetched %d signing key(s) from %s", len(key_set.keys), self.url)
        finally:
            with self._lock:
                self._inflight = None
                self.fetches += 1
            future.set_result(None)

    def _download(self) -> object:
        request = urllib.request.Request(self.url, headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310 (http(s), checked in settings)
            body = response.read(MAX_JWKS_BYTES + 1)
        if len(body) > MAX_JWKS_BYTES:
            raise ValueError(f"the JWKS is larger than {MAX_JWKS_BYTES} bytes")
        return json.loads(body)

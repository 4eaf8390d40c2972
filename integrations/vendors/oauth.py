"""OAuth client-credentials tokens shared by every worker: fetched once per expiry, refreshed early, replaced
once when the vendor says the token is no longer good.

The token store (the vendor's state, vendors/state.py) holds the shared copy; each SharedToken keeps the value it
last used in memory, so the common case costs no read. Fetching takes the store's lease first: when several
workers find the token stale at once (it expired mid-stream, or the vendor answered 401), one fetches and the
others wait for its result.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from integrations.vendors.state import Token, TokenStore

POLL = 0.05  # how often a worker waiting for another's fetch looks at the store
FAILURE_MEMORY = 30.0  # seconds a refused client id/secret is remembered, so a queue does not hammer the endpoint

__all__ = ["FAILURE_MEMORY", "SharedToken", "Token", "token_key", "use_until"]


def use_until(expires_in: float, now: datetime | None = None) -> datetime:
    """When to stop using a token that lives `expires_in` more seconds: five minutes early (as FuelSDK does),
    or a quarter of its life for short-lived tokens, so a token is never sent in its last moments."""
    margin = min(300.0, max(expires_in, 0) / 4)
    return (now or timezone.now()) + timedelta(seconds=max(expires_in - margin, 0))


def token_key(*parts: str) -> str:
    """What a token is for, hashed: the secret is one of the parts, so it is never stored in the clear."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


class SharedToken:
    """One vendor credential's token. `fetch()` calls the vendor's token endpoint and returns (value, expires_in);
    it raises DeliveryError when the vendor refuses (that error is remembered for FAILURE_MEMORY seconds)."""

    def __init__(
        self, key: str, store: TokenStore, fetch: Callable[[], tuple[dict[str, Any], float]], timeout: float
    ) -> None:
        self.key = key
        self.store = store
        self.fetch = fetch
        self.lease_seconds = timeout + 5
        self.current: Token | None = None
        self.refused: tuple[float, Exception] | None = None

    def get(self, *, replacing: str | None = None) -> Token:
        """A token good for now; with `replacing`, one that is not that token (the vendor said it is bad)."""
        if self.refused and time.monotonic() - self.refused[0] < FAILURE_MEMORY:
            raise self.refused[1]
        if self._good(self.current, replacing):
            return self.current  # type: ignore[return-value]
        deadline = time.monotonic() + self.lease_seconds * 2
        while True:
            token = self.store.read(self.key)
            if self._good(token, replacing):
                self.current = token
                return token  # type: ignore[return-value]
            lease = self.store.lease(self.key, self.lease_seconds)
            if lease:
                return self._fetch_and_store(lease, replacing)
            if time.monotonic() > deadline:  # the holder is stuck beyond its lease: fetch without it
                return self._fetch_and_store(None, replacing)
            time.sleep(POLL)

    def forget(self) -> None:
        self.current = None

    @staticmethod
    def _good(token: Token | None, replacing: str | None) -> bool:
        return token is not None and token.use_until > timezone.now() and token.access_token != replacing

    def _fetch_and_store(self, lease: str | None, replacing: str | None) -> Token:
        try:
            # Between the read and the lease, another worker may have stored a good token: use it.
            token = self.store.read(self.key)
            if not self._good(token, replacing):
                value, expires_in = self.fetch()
                token = Token(value, use_until(expires_in))
                self.store.save(self.key, lease, token)
            else:
                self.store.release(self.key, lease)
        except Exception as exc:
            if getattr(exc, "code", "") == "invalid_credentials":
                self.refused = (time.monotonic(), exc)
            self.store.release(self.key, lease)
            raise
        self.refused = None
        self.current = token
        return token  # type: ignore[return-value]

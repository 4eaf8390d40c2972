"""What a vendor keeps between calls, asked of an injected state instead of written by the vendor itself.

Vendors are stateless: an OAuth token shared by every worker, a lock that keeps two calls from overlapping and a
process-local cache (Marketo's lead ids) come from the `VendorState` the vendor is built with. The hub gives each
vendor the database-backed state (`integrations/state.py`, shared across processes); a vendor built without one
(tests, a dry run) gets `MemoryState`, so vendor code imports nothing from the models and needs no database.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Hashable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from integrations.functions.declaration import FunctionCode


@dataclass(frozen=True)
class Token:
    """An OAuth access token and what came with it, good until `use_until` (its refresh margin taken)."""

    value: dict[str, Any]  # at least "access_token"
    use_until: datetime

    @property
    def access_token(self) -> str:
        return self.value["access_token"]


class LockBusy(TimeoutError):
    """Others held the lock for longer than the caller may wait."""


class TokenStore(Protocol):
    """Where shared tokens live. A worker that finds a token stale takes the key's lease before it fetches, so one
    fetches while the others wait for the stored result."""

    def read(self, key: str) -> Token | None:
        """The stored token, or None."""

    def lease(self, key: str, seconds: float) -> str | None:
        """Take the key's fetch lease for `seconds`; its id, or None while someone else holds it."""

    def save(self, key: str, lease: str | None, token: Token) -> None:
        """Store a fetched token and free the lease (`lease` None: fetched without one)."""

    def release(self, key: str, lease: str | None) -> None:
        """Free the lease without storing (the fetch failed)."""


class VendorState(Protocol):
    tokens: TokenStore
    memo: Memo

    def function(self, slug: str, kind: str) -> FunctionCode | None:
        """The saved function `slug` of this kind (a destination function's code), or None."""

    def lock(self, key: str, seconds: float) -> AbstractContextManager[None]:
        """Hold `key` across the hub's processes for one call; a holder that died frees it after `seconds`.
        Raises LockBusy when others kept it for twice that long."""


class Memo:
    """A process-local cache of small values with a lifetime (Marketo: lead ids, so a track event needs no
    lookup call); bounded, it empties when full rather than grow."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self.values: dict[Hashable, tuple[Any, float]] = {}

    def get(self, key: Hashable) -> Any:
        found = self.values.get(key)
        return found[0] if found and found[1] > time.monotonic() else None

    def put(self, key: Hashable, value: Any, seconds: float) -> None:
        if len(self.values) >= self.max_entries:
            self.values.clear()
        self.values[key] = (value, time.monotonic() + seconds)

    def forget(self, key: Hashable) -> None:
        self.values.pop(key, None)


class MemoryTokens:
    """Tokens in this object only: what one vendor object needs when nothing is shared."""

    def __init__(self) -> None:
        self.tokens: dict[str, Token] = {}
        self.leases: dict[str, tuple[str, float]] = {}
        self.guard = threading.Lock()

    def read(self, key: str) -> Token | None:
        return self.tokens.get(key)

    def lease(self, key: str, seconds: float) -> str | None:
        with self.guard:
            held = self.leases.get(key)
            if held and held[1] > time.monotonic():
                return None
            lease = uuid.uuid4().hex
            self.leases[key] = (lease, time.monotonic() + seconds)
            return lease

    def save(self, key: str, lease: str | None, token: Token) -> None:
        with self.guard:
            self.tokens[key] = token
        self.release(key, lease)

    def release(self, key: str, lease: str | None) -> None:
        with self.guard:
            if lease is None or self.leases.get(key, ("",))[0] == lease:
                self.leases.pop(key, None)


class MemoryState:
    """State kept in memory, for one vendor object or a test: nothing is shared with other processes."""

    def __init__(self, functions: dict[str, FunctionCode] | None = None) -> None:
        self.tokens = MemoryTokens()
        self.memo = Memo()
        self.locks: dict[str, threading.Lock] = {}
        self.guard = threading.Lock()
        self.functions = functions or {}

    def function(self, slug: str, kind: str) -> FunctionCode | None:
        found = self.functions.get(slug)
        return found if found is not None and found.kind == kind else None

    @contextmanager
    def lock(self, key: str, seconds: float) -> Iterator[None]:
        with self.guard:
            held = self.locks.setdefault(key, threading.Lock())
        if not held.acquire(timeout=2 * seconds):
            raise LockBusy(key)
        try:
            yield
        finally:
            held.release()

"""OAuth client-credentials tokens shared by every worker: fetched once per expiry, refreshed early, replaced
once when the vendor says the token is no longer good.

The database row (AccessToken) is the shared copy; each vendor object keeps the value it last used in memory, so
the common case costs no query. Fetching takes the row's lease first: when several workers find the token stale
at once (it expired mid-stream, or the vendor answered 401), one fetches and the others wait for its result.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from integrations.models import AccessToken

POLL = 0.05  # how often a worker waiting for another's fetch looks at the row
FAILURE_MEMORY = 30.0  # seconds a refused client id/secret is remembered, so a queue does not hammer the endpoint


@dataclass(frozen=True)
class Token:
    value: dict[str, Any]  # at least "access_token"
    use_until: datetime

    @property
    def access_token(self) -> str:
        return self.value["access_token"]


def use_until(expires_in: float, now: datetime | None = None) -> datetime:
    """When to stop using a token that lives `expires_in` more seconds: five minutes early (as FuelSDK does),
    or a quarter of its life for short-lived tokens, so a token is never sent in its last moments."""
    margin = min(300.0, max(expires_in, 0) / 4)
    return (now or timezone.now()) + timedelta(seconds=max(expires_in - margin, 0))


def token_key(*parts: str) -> str:
    """What a token is for, hashed: the secret is one of the parts, so it is never stored in the clear here."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


class SharedToken:
    """One vendor credential's token. `fetch()` calls the vendor's token endpoint and returns (value, expires_in);
    it raises DeliveryError when the vendor refuses (that error is remembered for FAILURE_MEMORY seconds)."""

    def __init__(
        self, key: str, destination_id: int | None, fetch: Callable[[], tuple[dict[str, Any], float]], timeout: float
    ) -> None:
        self.key = key
        self.destination_id = destination_id
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
            row = AccessToken.objects.filter(key=self.key).first()
            token = _token_of(row)
            if self._good(token, replacing):
                self.current = token
                return token  # type: ignore[return-value]
            lease = self._take_lease(row)
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

    def _take_lease(self, row: AccessToken | None) -> str | None:
        now = timezone.now()
        lease = uuid.uuid4().hex
        if row is None:
            try:
                with transaction.atomic():
                    AccessToken.objects.create(
                        key=self.key,
                        destination_id=self.destination_id,
                        value={},
                        lease=lease,
                        lease_until=now + timedelta(seconds=self.lease_seconds),
                    )
                return lease
            except IntegrityError:
                return None  # another worker created it first and fetches
        free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
        taken = AccessToken.objects.filter(free, key=self.key).update(
            lease=lease, lease_until=now + timedelta(seconds=self.lease_seconds)
        )
        return lease if taken else None

    def _fetch_and_store(self, lease: str | None, replacing: str | None) -> Token:
        mine = Q(key=self.key) & (Q(lease=lease) if lease else Q())
        try:
            # Between the read and the lease, another worker may have stored a good token: use it.
            token = _token_of(AccessToken.objects.filter(key=self.key).first())
            if not self._good(token, replacing):
                value, expires_in = self.fetch()
                token = Token(value, use_until(expires_in))
                AccessToken.objects.filter(mine).update(
                    value=value, expires_at=token.use_until, fetched_at=timezone.now(), lease="", lease_until=None
                )
        except Exception as exc:
            if getattr(exc, "code", "") == "invalid_credentials":
                self.refused = (time.monotonic(), exc)
            AccessToken.objects.filter(mine).update(lease="", lease_until=None)
            raise
        AccessToken.objects.filter(mine).update(lease="", lease_until=None)
        self.refused = None
        self.current = token
        return token  # type: ignore[return-value]


def _token_of(row: AccessToken | None) -> Token | None:
    if row is None or not isinstance(row.value, dict) or "access_token" not in row.value or row.expires_at is None:
        return None
    return Token(row.value, row.expires_at)

"""The state vendors share across the hub's processes (vendors/state.py's interface), kept in rows: OAuth tokens in
AccessToken (encrypted), locks in VendorLock, and one process-wide memo. Destination.build_vendor gives every
vendor a DatabaseState; vendor modules never import this.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.apps import apps
from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.utils import timezone

from integrations.crypto import EncryptedJSONField
from integrations.functions.declaration import FunctionCode
from integrations.vendors.state import LockBusy, Memo, Token

LOCK_POLL = 0.05
MEMO = Memo()  # one per process: what a vendor learnt (a lead's id) serves every destination of that vendor


class AccessToken(models.Model):
    """A vendor's OAuth access token, shared by every worker process: one token call per expiry, not per process.

    `key` is a hash of what the token is for (vendor, host, client id, business unit, secret), so destinations
    with the same credentials share it and a changed secret gets a new one. While one worker fetches a new
    token it holds the row's lease (`lease_until`, `lease`); the others wait for the row to change.
    """

    key = models.CharField(max_length=64, unique=True)
    destination = models.ForeignKey(
        "integrations.Destination", on_delete=models.CASCADE, related_name="access_tokens", null=True
    )
    value = EncryptedJSONField(help_text="The token and what came with it, stored encrypted.")
    expires_at = models.DateTimeField(null=True, blank=True, help_text="When to stop using it (refresh margin taken)")
    fetched_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    lease = models.CharField(max_length=32, blank=True)

    def __str__(self) -> str:
        return f"access token {self.key[:12]}…"


class VendorLock(models.Model):
    """A short lease that lets one worker at a time make a vendor call that must not overlap with itself
    (Marketo: two upserts of the same lead at once create a duplicate lead). Held for one call, then freed;
    a worker that died keeps it only until `lease_until`."""

    key = models.CharField(max_length=64, unique=True)
    lease = models.CharField(max_length=32, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"vendor lock {self.key[:12]}…"


def _free() -> Q:
    return Q(lease_until__isnull=True) | Q(lease_until__lt=timezone.now())


class DatabaseTokens:
    """Tokens in AccessToken rows, keyed by a hash of what they are for; the row's lease marks the fetcher."""

    def __init__(self, destination_id: int | None) -> None:
        self.destination_id = destination_id  # the row's owner: deleting the destination deletes its tokens

    def read(self, key: str) -> Token | None:
        row = AccessToken.objects.filter(key=key).first()
        if row is None or not isinstance(row.value, dict) or "access_token" not in row.value or not row.expires_at:
            return None
        return Token(row.value, row.expires_at)

    def lease(self, key: str, seconds: float) -> str | None:
        lease = uuid.uuid4().hex
        until = timezone.now() + timedelta(seconds=seconds)
        if not AccessToken.objects.filter(key=key).exists():
            try:
                with transaction.atomic():
                    AccessToken.objects.create(
                        key=key, destination_id=self.destination_id, value={}, lease=lease, lease_until=until
                    )
                return lease
            except IntegrityError:
                return None  # another worker created it first and fetches
        taken = AccessToken.objects.filter(_free(), key=key).update(lease=lease, lease_until=until)
        return lease if taken else None

    def save(self, key: str, lease: str | None, token: Token) -> None:
        AccessToken.objects.filter(self._mine(key, lease)).update(
            value=token.value, expires_at=token.use_until, fetched_at=timezone.now(), lease="", lease_until=None
        )

    def release(self, key: str, lease: str | None) -> None:
        AccessToken.objects.filter(self._mine(key, lease)).update(lease="", lease_until=None)

    @staticmethod
    def _mine(key: str, lease: str | None) -> Q:
        return Q(key=key) & (Q(lease=lease) if lease else Q())


class DatabaseState:
    """A vendor's state shared by every worker: see the module's docstring."""

    def __init__(self, destination_id: int | None = None) -> None:
        self.destination_id = destination_id
        self.tokens = DatabaseTokens(destination_id)
        self.memo = MEMO

    def function(self, slug: str, kind: str) -> FunctionCode | None:
        found = (
            apps.get_model("integrations", "Function").objects.filter(slug=slug, kind=kind).first()
            if isinstance(slug, str)
            else None
        )
        return found.as_code() if found is not None else None

    @contextmanager
    def lock(self, key: str, seconds: float) -> Iterator[None]:
        """Hold the VendorLock row `key` across processes; a holder that died frees it after `seconds`."""
        lease, give_up = uuid.uuid4().hex, time.monotonic() + 2 * seconds
        while True:
            until = timezone.now() + timedelta(seconds=seconds)
            if VendorLock.objects.filter(_free(), key=key).update(lease=lease, lease_until=until):
                break
            if not VendorLock.objects.filter(key=key).exists():
                try:
                    with transaction.atomic():
                        VendorLock.objects.create(key=key, lease=lease, lease_until=until)
                    break
                except IntegrityError:
                    pass  # another worker made the row first and holds it
            if time.monotonic() > give_up:
                raise LockBusy(key)
            time.sleep(LOCK_POLL)
        try:
            yield
        finally:
            VendorLock.objects.filter(key=key, lease=lease).update(lease="", lease_until=None)

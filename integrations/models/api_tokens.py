"""API tokens: a person's key to the management API, shown once, stored as a digest, revocable, optionally expiring."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone

PREFIX = "cdp_"


def digest_of(token: str) -> str:
    """SHA-256 is enough: a token is 32 random bytes, so there is nothing to guess that a slow hash would protect."""
    return hashlib.sha256(token.encode()).hexdigest()


class ApiToken(models.Model):
    """Acts as its user: the user's permissions (a Marketer's limits) apply to every call made with it."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=200, help_text='What the token is for, e.g. "CI: deploy workspace"')
    prefix = models.CharField(max_length=16, editable=False, help_text="The token's first characters, to recognise it")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Blank: never expires")
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def issue(cls, user: models.Model, name: str, expires_at: datetime | None = None) -> tuple[ApiToken, str]:
        """Create a token; the plain value is returned once and never stored."""
        row = cls(user=user, name=name, expires_at=expires_at)
        token = row.fill()
        row.save()
        return row, token

    def fill(self) -> str:
        """Give an unsaved row (the admin's add form) a new token; returns the plain value."""
        token = PREFIX + secrets.token_urlsafe(32)
        self.prefix, self.digest = token[: len(PREFIX) + 6], digest_of(token)
        return token

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return "expired"
        return "active"

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])

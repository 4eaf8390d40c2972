from __future__ import annotations

import secrets

from django.db import models

from integrations.crypto import EncryptedJSONField


def new_write_key() -> str:
    return "wk_" + secrets.token_urlsafe(24)


class Source(models.Model):
    class Kind(models.TextChoices):
        HTTP = "http", "HTTP Tracking API (Segment / RudderStack SDKs)"
        CUSTOMERIO = "customerio", "Customer.io webhooks"
        STRIPE = "stripe", "Stripe webhooks"
        ZENDESK = "zendesk", "Zendesk webhooks"
        GENERIC = "generic", "Any JSON webhook"

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.HTTP)
    write_key = models.CharField(max_length=100, unique=True, default=new_write_key)
    enabled = models.BooleanField(default=True)
    settings = EncryptedJSONField(help_text="Secret settings (e.g. a signing secret), stored encrypted.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

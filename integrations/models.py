from __future__ import annotations

import secrets
from datetime import timedelta

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


def vendor_choices() -> list[tuple[str, str]]:
    from integrations.vendors import VENDORS

    return [(key, vendor.label) for key, vendor in VENDORS.items()]


class Destination(models.Model):
    """Where events go: a vendor, its settings and secrets, which sources feed it and which events pass."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    vendor = models.CharField(max_length=40, choices=vendor_choices)
    sources = models.ManyToManyField(Source, related_name="destinations", blank=True)
    enabled = models.BooleanField(default=True, help_text="Off: events are no longer routed here.")
    paused = models.BooleanField(
        default=False, help_text="Paused: events are routed and kept, and sent once the destination is resumed."
    )
    config = models.JSONField(default=dict, blank=True)
    credentials = EncryptedJSONField(help_text="Vendor secrets, stored encrypted and never shown again.")
    filter = models.JSONField(
        default=dict, blank=True, help_text='{"types": [...], "events": [...], "condition": "JMESPath"}'
    )
    mapping = models.JSONField(default=dict, blank=True, help_text="JMESPath expressions over the event")
    consent_categories = models.JSONField(
        default=list, blank=True, help_text="Consent categories the user must have granted, e.g. [\"Advertising\"]"
    )
    rate_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most requests per rate period (blank: the vendor's default)"
    )
    rate_period = models.FloatField(null=True, blank=True, help_text="Seconds (blank: the vendor's default)")
    concurrency = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Most requests in flight at once (blank: the vendor's default)"
    )
    timeout = models.FloatField(default=10.0, help_text="Seconds to wait for the vendor's answer")
    retry_deadline = models.DurationField(
        default=timedelta(hours=4), help_text="Stop retrying an event this long after it was received"
    )
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def vendor_class(self):
        from integrations.vendors import VENDORS

        return VENDORS[self.vendor]

    def limits(self) -> tuple[int, float, int]:
        """Return (requests, per seconds, concurrency), this destination's or the vendor's defaults."""
        requests, period = self.vendor_class.default_rate_limit
        return (
            self.rate_limit or requests,
            self.rate_period or period,
            self.concurrency or self.vendor_class.default_concurrency,
        )

    def build_vendor(self):
        return self.vendor_class(self.config, self.credentials, self.mapping, timeout=self.timeout)

"""Destinations: a vendor, its settings and secrets, which sources feed it and which events pass."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models

from integrations import vendors
from integrations.crypto import CANNOT_DECRYPT, EncryptedJSONField, Undecryptable
from integrations.mapping import MappingError, compile_expression
from integrations.models.sources import Source
from integrations.models.vendor_state import DatabaseState
from integrations.spec import EVENT_TYPES
from integrations.vendors.contract import Vendor


def vendor_choices() -> list[tuple[str, str]]:
    return [(key, vendor.label) for key, vendor in vendors.VENDORS.items()]


FILTER_KEYS = ("types", "events", "condition")
MAX_RETRY_DEADLINE = timedelta(days=30)


def routing_problems(filter_spec: Any, consent_categories: Any) -> list[str]:
    """Check the shape of a destination's filter and consent categories; one message per bad field."""
    problems: list[str] = []
    if filter_spec is None:
        filter_spec = {}
    if not isinstance(filter_spec, dict):
        problems.append('filter: must be an object like {"types": [], "events": [], "condition": null}')
    else:
        problems += [
            f"filter.{key}: unknown key (use {', '.join(FILTER_KEYS)})" for key in filter_spec if key not in FILTER_KEYS
        ]
        types = filter_spec.get("types")
        if types is not None and not (isinstance(types, list) and all(isinstance(t, str) for t in types)):
            problems.append("filter.types: must be a list of event types")
        elif types:
            unknown = [t for t in types if t not in EVENT_TYPES]
            if unknown:
                problems.append(
                    f"filter.types: {', '.join(map(repr, unknown))} is not an event type (use {', '.join(EVENT_TYPES)})"
                )
        events = filter_spec.get("events")
        if events is not None and not (isinstance(events, list) and all(isinstance(e, str) for e in events)):
            problems.append("filter.events: must be a list of event names")
        condition = filter_spec.get("condition")
        if condition is not None and not isinstance(condition, str):
            problems.append("filter.condition: must be a JMESPath expression (a string) or null")
        elif condition:
            try:
                compile_expression(condition)
            except MappingError as exc:
                problems.append(f"filter.condition: {exc}")
    if consent_categories is not None and not (
        isinstance(consent_categories, list) and all(isinstance(c, str) and c for c in consent_categories)
    ):
        problems.append('consent_categories: must be a list of category names, e.g. ["Advertising"]')
    return problems


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
        default=list, blank=True, help_text='Consent categories the user must have granted, e.g. ["Advertising"]'
    )
    insert_function = models.ForeignKey(
        "integrations.Function",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="insert_destinations",
        limit_choices_to={"kind": "insert"},
        help_text="JavaScript run on each event before it is sent: returns the event changed, or drops it",
    )
    insert_settings = models.JSONField(default=dict, blank=True, help_text="The insert function's plain settings")
    insert_secrets = EncryptedJSONField(help_text="The insert function's sensitive settings, stored encrypted.")

    class RateMode(models.TextChoices):
        ADAPTIVE = "adaptive", "adaptive: start at the limit, slow down when the vendor struggles"
        FIXED = "fixed", "fixed: always the limit"

    rate_mode = models.CharField(
        max_length=10,
        choices=RateMode.choices,
        default=RateMode.ADAPTIVE,
        help_text="Adaptive halves the rate on 429, 5xx and timeouts and creeps back up to the limit once the "
        "vendor is quiet; fixed always sends at the limit (a vendor's Retry-After is honoured either way).",
    )
    rate_limit = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Most requests per rate period: the fixed limit, or the adaptive ceiling (blank: the vendor's "
        "default)",
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
    last_error_code = models.CharField(max_length=100, blank=True)
    last_error_hint = models.TextField(blank=True, help_text="What to change to fix the last error")
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [
            ("manage_credentials", "Can see and change credentials, write keys and signing secrets"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """Check settings the way the worker will read them: the vendor's rules, the filter, consent, limits.

        Each message starts with its field's path ("config.url: required") and is filed under that field.
        """
        problems: list[str] = []
        vendor = vendors.VENDORS.get(self.vendor)
        locked = isinstance(self.credentials, Undecryptable)
        if locked:
            problems.append(
                f"credentials: {CANNOT_DECRYPT} (the stored secrets were encrypted with a key that is not "
                "configured: add that key, or enter the credentials again)"
            )
        if vendor is not None:  # an unknown vendor is reported by the field's choices
            found = vendor.validate(self.config, {} if locked else self.credentials, self.mapping)
            problems += [p for p in found if not (locked and p.startswith("credentials"))]
        problems += routing_problems(self.filter, self.consent_categories)
        problems += self.insert_problems()
        if self.vendor == "function" and not locked and not any(p.startswith("config") for p in problems):
            function = DatabaseState().function((self.config or {}).get("function"), "destination")
            problems += vendor.settings_problems(function, self.config, self.credentials)
        problems += self.rate_problems()
        for name in ("timeout", "rate_period"):
            value = getattr(self, name)
            if isinstance(value, int | float) and value <= 0:
                problems.append(f"{name}: must be more than 0 seconds")
        if isinstance(self.retry_deadline, timedelta) and not timedelta(0) < self.retry_deadline <= MAX_RETRY_DEADLINE:
            problems.append(f"retry_deadline: must be more than 0 seconds and at most {MAX_RETRY_DEADLINE.days} days")
        if problems:
            fields = {f.name for f in self._meta.concrete_fields}
            errors: dict[str, list[str]] = {}
            for problem in problems:
                name = problem.split(":", 1)[0].split(".", 1)[0].split("[", 1)[0]
                errors.setdefault(name if name in fields else NON_FIELD_ERRORS, []).append(problem)
            raise ValidationError(errors)

    def rate_problems(self) -> list[str]:
        """A limit above the vendor's documented one (Marketo's 100 calls per 20 s) would only earn refusals."""
        ceiling = getattr(vendors.VENDORS.get(self.vendor), "rate_ceiling", None)
        if ceiling is None or not self.rate_limit or (self.rate_period is not None and self.rate_period <= 0):
            return []
        period = self.rate_period or self.vendor_class.default_rate_limit[1]
        if self.rate_limit / period <= ceiling[0] / ceiling[1]:
            return []
        return [
            f"rate_limit: {self.vendor_class.label} allows at most {ceiling[0]} requests per {ceiling[1]:g} s "
            f"(its documented limit); {self.rate_limit} per {period:g} s is more"
        ]

    def insert_problems(self) -> list[str]:
        """The insert function's kind and settings, checked against what its code declares."""
        from integrations.functions.declaration import values_problems

        function = self.insert_function
        if function is None:
            return ["insert_settings: no insert function is chosen"] if self.insert_settings else []
        if function.kind != "insert":
            return [f"insert_function: {function.slug} is a {function.kind} function, not an insert function"]
        if isinstance(self.insert_secrets, Undecryptable):
            return [f"insert_secrets: {CANNOT_DECRYPT}"]
        return values_problems(
            function.settings, self.insert_settings, self.insert_secrets, "insert_settings", "insert_secrets"
        )

    @property
    def vendor_class(self) -> type[Vendor]:
        return vendors.VENDORS[self.vendor]

    @property
    def misconfigured(self) -> bool:
        """The last error says the settings are wrong (bad credentials, a wrong key) and nothing was delivered
        since: every delivery fails until someone fixes them."""
        if self.last_error_code not in self.vendor_class.setup_errors:
            return False
        delivered, failed = self.last_delivered_at, self.last_error_at
        return failed is not None and (delivered is None or failed > delivered)

    def limits(self) -> tuple[int, float, int]:
        """Return (requests, per seconds, concurrency), this destination's or the vendor's defaults; never above
        the vendor's documented ceiling. In adaptive mode the rate is the most the engine goes up to."""
        requests, period = self.vendor_class.default_rate_limit
        requests, period = self.rate_limit or requests, self.rate_period or period
        ceiling = self.vendor_class.rate_ceiling
        if ceiling is not None and requests / period > ceiling[0] / ceiling[1]:
            requests, period = ceiling
        return requests, period, self.concurrency or self.vendor_class.default_concurrency

    @property
    def adaptive(self) -> bool:
        return self.rate_mode == self.RateMode.ADAPTIVE

    def build_vendor(self) -> Vendor:
        """The vendor with this destination's settings and the hub's shared state (tokens, locks); raises
        DeliveryError when the settings are invalid."""
        return self.vendor_class(
            self.config, self.credentials, self.mapping, timeout=self.timeout, state=DatabaseState(self.id)
        )

"""How long rows are kept: the settings' defaults (CDPHUB_RETENTION_*_DAYS), overridden per kind in the admin by
one RetentionPolicy row. The purge (deliveries/engine/purge.py) reads the days in force from here."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models

# Each kind of row the purge deletes (or, for exchange bodies, summarises), in words.
KINDS = {
    "events": "Events",
    "deliveries": "Deliveries (with their attempts)",
    "exchange_bodies": "Request and response bodies of attempts (a summary is kept)",
    "test_sends": "Test sends (Event Tester)",
    "rejected_events": "Rejected events",
    "minute_rollups": "Per-minute delivery counts",
    "hourly_rollups": "Per-hour delivery counts",
}


def days_field(kind: str) -> models.PositiveIntegerField:
    return models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1, "Keep rows at least 1 day (leave blank for the default).")],
        verbose_name=f"{KINDS[kind].split(' (')[0]} (days)",
    )


class RetentionPolicy(models.Model):
    """The days each kind of row is kept; a blank field keeps the settings' default. One row (pk 1)."""

    events_days = days_field("events")
    deliveries_days = days_field("deliveries")
    exchange_bodies_days = days_field("exchange_bodies")
    test_sends_days = days_field("test_sends")
    rejected_events_days = days_field("rejected_events")
    minute_rollups_days = days_field("minute_rollups")
    hourly_rollups_days = days_field("hourly_rollups")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = verbose_name_plural = "retention policy"

    def __str__(self) -> str:
        return "Retention policy"

    def save(self, *args, **kwargs) -> None:
        self.pk = 1  # the one row
        super().save(*args, **kwargs)

    @classmethod
    def load(cls) -> RetentionPolicy:
        return cls.objects.get_or_create(pk=1)[0]

    @staticmethod
    def defaults() -> dict[str, int]:
        """The days from the settings (the environment), per kind."""
        return {kind: int(settings.RETENTION_DAYS[kind]) for kind in KINDS}

    def days(self) -> dict[str, int]:
        """The days in force per kind: this row's where set, else the settings' default."""
        defaults = self.defaults()
        return {kind: getattr(self, f"{kind}_days") or defaults[kind] for kind in KINDS}

    @classmethod
    def in_force(cls) -> dict[str, int]:
        """The days in force, without creating the row (read by the purge every minute)."""
        policy = cls.objects.filter(pk=1).first()
        return policy.days() if policy else cls.defaults()

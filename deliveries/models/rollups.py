"""Counts the pages read instead of millions of rows: delivery outcomes per minute and per hour, what sources sent
per day."""

from __future__ import annotations

from django.db import models

from integrations.models import Destination, Source


class OutcomeCounts(models.Model):
    """What a rollup row counts: outcomes of one status in one latency bucket, and their latencies' sum."""

    status = models.CharField(max_length=16)
    latency_bucket = models.SmallIntegerField(default=-1, help_text="Index into LATENCY_BUCKETS; -1 for failures")
    count = models.PositiveIntegerField(default=0)
    latency_ms_sum = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


class DeliveryRollup(OutcomeCounts):
    """Delivered and failed outcomes of a destination per minute (by when they happened) and latency bucket:
    Event Delivery sums these instead of counting millions of delivery rows."""

    destination = models.ForeignKey(Destination, on_delete=models.CASCADE, related_name="rollups")
    minute = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["destination", "minute", "status", "latency_bucket"], name="delivery_rollup_key"
            )
        ]
        indexes = [
            # Covering: Event Delivery sums two weeks of a destination's minutes from the index alone.
            models.Index(
                fields=["destination", "minute", "latency_bucket", "status", "count", "latency_ms_sum"],
                name="delivery_rollup_covering",
            )
        ]

    def __str__(self) -> str:
        return f"{self.destination_id} {self.minute} {self.status}: {self.count}"


class DeliveryHourRollup(OutcomeCounts):
    """The minute rollups summed per hour (UTC): what Event Delivery and the dashboard read beyond a day, kept long
    after the minutes are purged. The engine adds to both in the same transaction (engine/rollups.py)."""

    destination = models.ForeignKey(Destination, on_delete=models.CASCADE, related_name="hour_rollups")
    hour = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["destination", "hour", "status", "latency_bucket"], name="delivery_hour_rollup_key"
            )
        ]
        indexes = [
            # Covering, as the minutes': two weeks of a destination's hours are summed from the index alone.
            models.Index(
                fields=["destination", "hour", "latency_bucket", "status", "count", "latency_ms_sum"],
                name="delivery_hour_rollup_covering",
            )
        ]

    def __str__(self) -> str:
        return f"{self.destination_id} {self.hour} {self.status}: {self.count}"


class SchemaRollup(models.Model):
    """What a source sent per day: one row per event name (property "") and per property and observed type."""

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="schema_rollups")
    day = models.DateField()
    type = models.CharField(max_length=16)
    name = models.CharField(
        max_length=255, blank=True, help_text="The track event's name, or the page's or screen's ('' for other types)"
    )
    property = models.CharField(max_length=255, blank=True, help_text="'' for the event itself")
    value_type = models.CharField(max_length=16, blank=True)
    count = models.PositiveIntegerField(default=0)
    last_seen = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source", "day", "type", "name", "property", "value_type"], name="schema_rollup_key"
            )
        ]
        indexes = [models.Index(fields=["source", "day"], name="schema_rollup_source_day")]

    def __str__(self) -> str:
        return f"{self.source_id} {self.day} {self.type} {self.name} {self.property}"


class RollupCursor(models.Model):
    """How far a background fold has read an append-only table (the schema fold: the last Event id)."""

    name = models.CharField(max_length=40, unique=True)
    position = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} at {self.position}"

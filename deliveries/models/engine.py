"""The delivery engine's shared state across workers: concurrency slots and rate-limit buckets."""

from __future__ import annotations

from django.db import models

from integrations.models import Destination


class Slot(models.Model):
    """A concurrency slot of a destination: a drain task holds one while it sends (shared by all workers)."""

    destination = models.ForeignKey(Destination, on_delete=models.CASCADE, related_name="slots")
    number = models.PositiveSmallIntegerField()
    token = models.CharField(max_length=32, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["destination", "number"], name="slot_unique_number")]

    def __str__(self) -> str:
        return f"slot {self.number} of destination {self.destination_id}"


class RateBucket(models.Model):
    """The token bucket of a destination's rate limit, shared by all workers."""

    destination = models.OneToOneField(Destination, on_delete=models.CASCADE, related_name="rate_bucket")
    tokens = models.FloatField(default=0)
    refilled_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"rate bucket of destination {self.destination_id}"

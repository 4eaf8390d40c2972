"""The delivery engine's shared state across workers: concurrency slots, rate-limit buckets (with the adaptive
rate and why it is there) and each destination's circuit breaker."""

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
    """The token bucket of a destination's rate limit, shared by all workers; in adaptive mode also the rate
    it runs at now (below the destination's limit after the vendor struggled), why, and since when."""

    destination = models.OneToOneField(Destination, on_delete=models.CASCADE, related_name="rate_bucket")
    tokens = models.FloatField(default=0)
    refilled_at = models.DateTimeField()
    rate = models.FloatField(null=True, blank=True, help_text="Requests per second now; blank: the full limit")
    rate_reason = models.CharField(max_length=300, blank=True)
    rate_changed_at = models.DateTimeField(null=True, blank=True)
    cut_at = models.DateTimeField(null=True, blank=True, help_text="The last cut: no second one right after it")
    slowed_at = models.DateTimeField(null=True, blank=True, help_text="The vendor's last 429, 5xx or timeout")

    def __str__(self) -> str:
        return f"rate bucket of destination {self.destination_id}"


class Circuit(models.Model):
    """A destination's circuit breaker, shared by all workers: open after many calls in a row failed (nothing
    is sent there but a probe now and then), closed again when a probe gets through."""

    destination = models.OneToOneField(Destination, on_delete=models.CASCADE, related_name="circuit")
    failures = models.PositiveIntegerField(default=0, help_text="Retryable failures in a row, across workers")
    failing_since = models.DateTimeField(null=True, blank=True, help_text="The first failure of that run")
    opened_at = models.DateTimeField(null=True, blank=True, help_text="Open since; blank: closed")
    reason = models.TextField(blank=True, help_text="Why it opened, or how it was closed")
    changed_at = models.DateTimeField(null=True, blank=True)
    next_probe_at = models.DateTimeField(null=True, blank=True)
    probe_interval = models.FloatField(default=0, help_text="Seconds between probes now (doubles up to a cap)")
    # [[opened, closed or null], …] ISO times of recent openings: the retry deadline does not count them.
    openings = models.JSONField(default=list, blank=True)

    class Meta:
        indexes = [models.Index(fields=["opened_at", "next_probe_at"], name="circuit_probe_due")]

    def __str__(self) -> str:
        return f"circuit of destination {self.destination_id} ({'open' if self.is_open else 'closed'})"

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None


class WorkerHeartbeat(models.Model):
    """A running `manage.py worker` and its delivery processes, seen at its last sweep: how many processes the
    whole hub has (engine/cluster.py), which one worker's settings cannot tell."""

    name = models.CharField(max_length=255, unique=True, help_text="host:pid")
    processes = models.PositiveSmallIntegerField()
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"worker {self.name} ({self.processes} processes)"

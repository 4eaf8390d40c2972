"""Replays: events sent again to chosen destinations."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from integrations.models import Destination


class Replay(models.Model):
    """Events sent again to chosen destinations, by selection or filter; it keeps its counts when done."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running", "Queuing deliveries"
        SENDING = "sending"
        DONE = "done"
        FAILED = "failed"

    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    criteria = models.JSONField(default=dict, help_text="Which events: selected ids, or a filter")
    description = models.TextField(blank=True, help_text="The criteria in words")
    destinations = models.ManyToManyField(Destination, related_name="replays")
    include_delivered = models.BooleanField(
        default=False, help_text="Also send events that these destinations have received already"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    total = models.PositiveIntegerField(default=0, help_text="(event, destination) pairs that match")
    processed = models.PositiveIntegerField(default=0, help_text="Pairs looked at so far")
    queued = models.PositiveIntegerField(default=0, help_text="Deliveries queued")
    skipped_delivered = models.PositiveIntegerField(default=0)
    skipped_filtered = models.PositiveIntegerField(default=0)
    delivered = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"replay {self.pk}: {self.description or 'events'}"

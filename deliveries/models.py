from __future__ import annotations

from django.db import models

from integrations.models import Source


class Event(models.Model):
    """One event as received: accepted (normalised, delivered onwards) or rejected (with the reason)."""

    class Type(models.TextChoices):
        IDENTIFY = "identify"
        TRACK = "track"
        PAGE = "page"
        SCREEN = "screen"
        GROUP = "group"
        ALIAS = "alias"
        INVALID = "invalid", "invalid (unreadable request)"

    class Status(models.TextChoices):
        ACCEPTED = "accepted"
        REJECTED = "rejected"

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="events")
    message_id = models.CharField(max_length=255)
    type = models.CharField(max_length=16, choices=Type.choices)
    event = models.CharField(max_length=255, blank=True, help_text="Track event name")
    user_id = models.CharField(max_length=255, blank=True)
    anonymous_id = models.CharField(max_length=255, blank=True)
    payload = models.JSONField(help_text="The normalised event as destinations get it")
    received_at = models.DateTimeField()
    timestamp = models.DateTimeField(help_text="Clock-skew-corrected event time")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACCEPTED)
    reject_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            models.Index(fields=["source", "received_at"], name="event_source_received"),
            models.Index(fields=["received_at"], name="event_received"),
            models.Index(fields=["type"], name="event_type"),
            models.Index(fields=["event"], name="event_name"),
            models.Index(fields=["user_id"], name="event_user"),
            models.Index(fields=["anonymous_id"], name="event_anonymous"),
        ]
        constraints = [
            # Dedupe: one accepted event per (source, messageId); rejected copies may repeat.
            models.UniqueConstraint(
                fields=["source", "message_id"],
                condition=models.Q(status="accepted"),
                name="event_unique_message_per_source",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event or ''} {self.message_id}".replace("  ", " ")

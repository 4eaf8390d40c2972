"""Alerts: the rules that watch each destination, the incidents they opened (the history), and the notifications
each incident sent, with their outcome.

The evaluator (deliveries/engine/alerts/) opens an Alert when a rule's condition holds and resolves it when it
clears. One open alert per rule is a database constraint, so two workers evaluating at once open it once. Each
opening and resolution writes its notifications in the same transaction, as rows to send (an outbox): a channel
that fails is retried on later sweeps and its error stays on the row.
"""

from __future__ import annotations

from django.db import models

from integrations.crypto import EncryptedJSONField
from integrations.models import Destination


class AlertRule(models.Model):
    """A condition watched on one destination, and where to say when it starts and stops holding."""

    class Kind(models.TextChoices):
        SUCCESS_RATE = "success_rate", "Success rate below a threshold"
        NO_DELIVERY = "no_delivery", "No delivery while events arrive"
        MISCONFIGURED = "misconfigured", "Destination misconfigured (credentials refused)"
        BACKLOG = "backlog", "Backlog older than a limit"

    class Channel(models.TextChoices):
        EMAIL = "email"
        WEBHOOK = "webhook"

    destination = models.ForeignKey(Destination, on_delete=models.CASCADE, related_name="alert_rules")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    enabled = models.BooleanField(default=True)
    threshold = models.FloatField(
        null=True, blank=True, help_text="Success rate: alert below this percentage (e.g. 90)"
    )
    window_minutes = models.PositiveIntegerField(
        default=15,
        help_text=(
            "Success rate: over this many minutes. No delivery: for this many minutes. "
            "Backlog: the oldest waiting delivery older than this."
        ),
    )
    min_outcomes = models.PositiveIntegerField(
        default=20, help_text="Success rate: judge only with at least this many delivered + failed in the window"
    )
    channels = models.JSONField(default=list, blank=True, help_text='Where to send: "email", "webhook"')
    email_recipients = models.TextField(blank=True, help_text="Comma-separated addresses; blank: CDPHUB_ALERT_EMAILS")
    webhook_url = models.URLField(max_length=500, blank=True, help_text="Blank: CDPHUB_ALERT_WEBHOOK_URL")
    webhook_secret = EncryptedJSONField(
        help_text="This rule's webhook signing secret, stored encrypted (blank: CDPHUB_ALERT_WEBHOOK_SECRET)"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["destination__name", "kind", "id"]
        indexes = [models.Index(fields=["enabled", "destination"], name="alert_rule_enabled")]

    def __str__(self) -> str:
        return f"{self.destination}: {self.condition}"

    @property
    def condition(self) -> str:
        """The rule in words: "success rate below 90% over 15 minutes (at least 20 outcomes)"."""
        if self.kind == self.Kind.SUCCESS_RATE:
            return (
                f"success rate below {self.threshold:g}% over {self.window_minutes} minutes "
                f"(at least {self.min_outcomes} outcomes)"
            )
        if self.kind == self.Kind.NO_DELIVERY:
            return f"no delivery for {self.window_minutes} minutes while events arrive"
        if self.kind == self.Kind.BACKLOG:
            return f"backlog older than {self.window_minutes} minutes"
        return "destination misconfigured (credentials refused)"


class Alert(models.Model):
    """One incident of a rule: when its condition started and stopped holding, what was measured, and the
    notifications it sent. A test alert (the admin's "Send test alert") opens and resolves at once."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    destination = models.ForeignKey(Destination, on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(max_length=20, choices=AlertRule.Kind.choices)
    opened_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    measured = models.JSONField(default=dict, blank=True, help_text="What the rule measured when it opened")
    message = models.TextField(help_text="What was wrong, in words")
    resolution = models.TextField(blank=True, help_text="Why it was resolved, in words")
    is_test = models.BooleanField(default=False)

    class Meta:
        ordering = ["-opened_at", "-id"]
        indexes = [
            models.Index(fields=["destination", "resolved_at"], name="alert_destination_open"),
            models.Index(fields=["resolved_at", "opened_at"], name="alert_open_opened"),
        ]
        constraints = [
            # Two evaluators racing open one incident: the second insert fails and it leaves the first alone.
            models.UniqueConstraint(
                fields=["rule"], condition=models.Q(resolved_at__isnull=True), name="alert_one_open_per_rule"
            )
        ]

    def __str__(self) -> str:
        return f"{self.destination}: {self.message[:80]}"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class AlertNotification(models.Model):
    """One message about an alert (opened, resolved or a test) on one channel: to send, sent, or given up on."""

    class Event(models.TextChoices):
        OPENED = "opened"
        RESOLVED = "resolved"
        TEST = "test"

    class Status(models.TextChoices):
        PENDING = "pending", "to send"
        SENDING = "sending"
        SENT = "sent"
        FAILED = "failed", "failed (gave up)"

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="notifications")
    event = models.CharField(max_length=10, choices=Event.choices)
    channel = models.CharField(max_length=10, choices=AlertRule.Channel.choices)
    target = models.TextField(help_text="The recipients, or the webhook's URL")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, help_text="Why the last try failed")
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["alert", "created_at", "id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="alert_notification_due")]

    def __str__(self) -> str:
        return f"{self.event} by {self.channel}: {self.status}"

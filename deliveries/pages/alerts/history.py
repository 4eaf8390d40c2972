"""The alert history in the admin: every alert a rule opened, open or resolved (and test alerts), filtered by
state, destination and kind, each with the notifications it sent and their outcome. Read only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from deliveries.models import Alert, AlertNotification
from deliveries.pages.base import ReadOnlyInline
from deliveries.pages.display import compact_moment, destination_link, duration, moment

STATE_CLASSES = {"open": "status-failed", "resolved": "status-delivered", "test": "status-filtered"}
SENT_CLASSES = {"sent": "status-delivered", "pending": "status-retrying", "sending": "status-pending"}


class AlertNotificationInline(ReadOnlyInline):
    """Each message the alert sent (or tries to send), with its outcome."""

    model = AlertNotification
    fields = ["event", "channel", "target", "status_", "attempts", "sent", "error"]
    readonly_fields = fields
    verbose_name_plural = "Notifications"

    @admin.display(description="Status")
    def status_(self, notification: AlertNotification) -> str:
        css = SENT_CLASSES.get(notification.status, "status-failed")
        text = notification.get_status_display().capitalize()
        if notification.status == AlertNotification.Status.PENDING and notification.attempts:
            text += f", next try {moment(notification.next_attempt_at)}"
        return format_html('<span class="status {}">{}</span>', css, text)

    @admin.display(description="Sent")
    def sent(self, notification: AlertNotification) -> str:
        return moment(notification.sent_at) if notification.sent_at else "-"


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("open", "Open"), ("resolved", "Resolved"), ("test", "Test alerts")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Alert]) -> QuerySet[Alert]:
        if self.value() == "open":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "resolved":
            return queryset.filter(resolved_at__isnull=False, is_test=False)
        if self.value() == "test":
            return queryset.filter(is_test=True)
        return queryset


def state_of(alert: Alert) -> str:
    return "test" if alert.is_test else "open" if alert.resolved_at is None else "resolved"


class AlertAdmin(admin.ModelAdmin):
    list_display = ["opened", "destination_", "state_", "message", "lasted", "notified"]
    list_filter = [StateFilter, "destination", "kind"]
    list_select_related = ["destination"]
    search_fields = ["message", "destination__name"]
    date_hierarchy = None
    inlines = [AlertNotificationInline]
    fields = ["destination_", "rule_", "state_", "opened", "message", "measured", "resolved", "resolution"]
    readonly_fields = fields

    class Media:
        css = {"all": ["deliveries/deliveries.css"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Alert]:
        return super().get_queryset(request).prefetch_related("notifications")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Alert | None = None) -> bool:
        return False

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        # The rule page's "History" link; a sidebar filter listing every rule would be long.
        return lookup == "rule__id__exact" or super().lookup_allowed(lookup, value, request)

    @admin.display(description="Opened", ordering="opened_at")
    def opened(self, alert: Alert) -> str:
        return compact_moment(alert.opened_at)

    @admin.display(description="Resolved", ordering="resolved_at")
    def resolved(self, alert: Alert) -> str:
        return moment(alert.resolved_at) if alert.resolved_at else "not yet"

    @admin.display(description="Destination", ordering="destination__name")
    def destination_(self, alert: Alert) -> str:
        return destination_link(alert.destination)

    @admin.display(description="Rule")
    def rule_(self, alert: Alert) -> str:
        url = reverse("admin:deliveries_alertrule_change", args=[alert.rule_id])
        return format_html('<a href="{}">{}</a>', url, alert.rule.condition)

    @admin.display(description="State")
    def state_(self, alert: Alert) -> str:
        state = state_of(alert)
        return format_html('<span class="status {}">{}</span>', STATE_CLASSES[state], state.capitalize())

    @admin.display(description="Lasted")
    def lasted(self, alert: Alert) -> str:
        if alert.is_test:
            return "-"
        if alert.resolved_at is None:
            return "open"
        return duration((alert.resolved_at - alert.opened_at).total_seconds() * 1000)

    @admin.display(description="Notified")
    def notified(self, alert: Alert) -> str:
        notifications = list(alert.notifications.all())
        if not notifications:
            return format_html('<span class="quiet">{}</span>', "nobody (no channel configured)")
        template = '<span class="status {}" title="{}">{} by {}: {}</span>'
        return format_html_join(mark_safe("<br>"), template, map(badge, notifications))


def badge(n: AlertNotification) -> tuple[str, str, str, str, str]:
    """A notification's outcome as a status badge's class, tooltip (the error) and words."""
    return (SENT_CLASSES.get(n.status, "status-failed"), n.error, n.event, n.channel, n.get_status_display().lower())

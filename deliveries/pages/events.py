"""The event log: every event as received, read-only, fast with millions of rows; its deliveries inline, and the
Debugger, Schema and Event Tester pages hung off its admin."""

from __future__ import annotations

from typing import Any

import orjson
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from deliveries.models import Delivery, Event
from deliveries.pages import schema
from deliveries.pages.base import ReadOnlyInline
from deliveries.pages.debugger import views as debugger
from deliveries.pages.display import (
    attempts_text,
    destination_link,
    error_summary,
    moment,
    short_id,
    status_badge,
)
from deliveries.pages.tester import views as tester


class DeliveryInline(ReadOnlyInline):
    """The event's deliveries, filtered ones with their reason."""

    model = Delivery
    fields = ["destination_", "status_", "attempts_", "error_", "delivered_at_", "details"]
    readonly_fields = fields
    extra = 0
    verbose_name_plural = "Deliveries"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Delivery]:
        return super().get_queryset(request).select_related("destination").order_by("destination__name", "id")

    @admin.display(description="Destination")
    def destination_(self, delivery: Delivery) -> str:
        return destination_link(delivery.destination)

    @admin.display(description="Status")
    def status_(self, delivery: Delivery) -> str:
        return status_badge(delivery)

    @admin.display(description="Attempts")
    def attempts_(self, delivery: Delivery) -> str:
        return attempts_text(delivery)

    @admin.display(description="Error or reason")
    def error_(self, delivery: Delivery) -> str:
        return error_summary(delivery, chars=200)

    @admin.display(description="Delivered at")
    def delivered_at_(self, delivery: Delivery) -> str:
        return moment(delivery.delivered_at) if delivery.delivered_at else "-"

    @admin.display(description="")
    def details(self, delivery: Delivery) -> str:
        url = reverse("admin:deliveries_delivery_change", args=[delivery.pk])
        return format_html('<a href="{}">{}</a>', url, "Attempts and requests")


class EventAdmin(admin.ModelAdmin):
    list_display = ["received", "source", "type", "event", "user", "anonymous", "status_", "message"]
    list_filter = ["source", "type", "status"]
    # Exact lookups, not "=field" (iexact), so each term can use its column's index.
    search_fields = ["message_id__exact", "user_id__exact", "anonymous_id__exact", "event__exact"]
    search_help_text = "An exact message id, user id, anonymous id or event name."
    list_select_related = ["source"]
    list_per_page = 50
    show_full_result_count = False  # no COUNT(*) over the whole table on every filtered page
    ordering = ["-received_at", "-id"]
    readonly_fields = ["received_at_", "timestamp_", "pretty_payload"]
    inlines = [DeliveryInline]

    class Media:
        css = {"all": ["integrations/exchanges.css", "deliveries/deliveries.css"]}

    def get_urls(self) -> list[Any]:
        return [*debugger.urls(self), *schema.urls(self), *tester.urls(self), *super().get_urls()]

    def get_fieldsets(self, request: HttpRequest, obj: Event | None = None) -> list[tuple[str | None, dict]]:
        fields = ["source", "type", "event", "status"]
        payload = "The normalised event as destinations get it."
        if obj is not None and obj.status == Event.Status.REJECTED:
            fields.append("reject_reason")
            payload = "What was sent (an excerpt when it was too large or not JSON)."
        return [
            (None, {"fields": fields}),
            ("Identity", {"fields": ["message_id", "user_id", "anonymous_id"]}),
            ("Time", {"fields": ["received_at_", "timestamp_"]}),
            ("Payload", {"fields": ["pretty_payload"], "description": payload}),
        ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Event | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Event | None = None) -> bool:
        return False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Event], search_term: str
    ) -> tuple[QuerySet[Event], bool]:
        """Search for the whole term: event names have spaces ("Order Completed"), identifiers have none."""
        term = search_term.strip()
        if term and not (len(term) > 1 and term[0] == term[-1] and term[0] in "\"'"):
            term = '"' + term.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return super().get_search_results(request, queryset, term)

    @admin.display(description="Received", ordering="received_at")
    def received(self, event: Event) -> str:
        return moment(event.received_at)

    @admin.display(description="User id", ordering="user_id")
    def user(self, event: Event) -> str:
        return short_id(event.user_id)

    @admin.display(description="Anonymous id", ordering="anonymous_id")
    def anonymous(self, event: Event) -> str:
        return short_id(event.anonymous_id)

    @admin.display(description="Message id", ordering="message_id")
    def message(self, event: Event) -> str:
        return short_id(event.message_id)

    @admin.display(description="Status", ordering="status")
    def status_(self, event: Event) -> str:
        if event.status == Event.Status.REJECTED:
            return format_html('<span class="rejected" title="{}">Rejected</span>', event.reject_reason)
        return event.get_status_display()

    @admin.display(description="Received at")
    def received_at_(self, event: Event) -> str:
        return moment(event.received_at, precise=True)

    @admin.display(description="Timestamp")
    def timestamp_(self, event: Event) -> str:
        return format_html(
            '{}<div class="help">Event time, corrected for the sender\'s clock skew</div>',
            moment(event.timestamp, precise=True),
        )

    @admin.display(description="Payload")
    def pretty_payload(self, event: Event) -> str:
        text = orjson.dumps(event.payload, option=orjson.OPT_INDENT_2).decode()
        return format_html('<pre class="payload">{}</pre>', text)

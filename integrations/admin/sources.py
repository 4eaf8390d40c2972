"""The source admin: activity at a glance, the snippets to start sending, a webhook source's secret and its last
request."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import admin
from django.db.models import Func, IntegerField, OuterRef, QuerySet, Subquery
from django.forms import ModelForm
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator
from django.utils.timesince import timesince

from integrations.admin.base import (
    ACTIVITY_WINDOW,
    ERROR_CHARS,
    ChangePageContext,
    CountedDeletes,
    ago,
    sees_secrets,
    stored_line,
)
from integrations.forms import SourceForm, credential_masks, function_kinds
from integrations.models import Source

# The event model by relation, not by import: integrations never imports deliveries.
EVENT_MODEL = Source._meta.get_field("events").related_model
WRITE_KEY_PLACEHOLDER = "YOUR_WRITE_KEY"


def public_base_url(request: HttpRequest) -> str:
    """Return the hub's base URL as senders reach it, without a trailing slash."""
    return (settings.PUBLIC_URL or request.build_absolute_uri("/")).rstrip("/")


def connection_context(request: HttpRequest, source: Source) -> dict[str, Any]:
    """Return what the snippets on the source page need: write key, endpoint, host and protocol for the SDKs.

    Without the credentials permission the snippets carry a placeholder, and the webhook URL (which holds the
    write key) is left out.
    """
    base = public_base_url(request)
    parts = urlsplit(base)
    shown = sees_secrets(request)
    webhook = source.is_webhook
    return {
        "write_key": source.write_key if shown else WRITE_KEY_PLACEHOLDER,
        "write_key_hidden": not shown,
        "base_url": base,
        "endpoint_url": f"{base}/v1/",
        "api_host": f"{parts.netloc}{parts.path}/v1",  # analytics.js wants the host without the scheme
        "api_protocol": parts.scheme or "https",
        "webhook_url": f"{base}/v1/webhooks/{source.write_key}" if webhook and shown else "",
        "webhook_hidden": webhook and not shown,
        "events_url": events_url(source),
    }


def events_url(source: Source) -> str:
    return reverse("admin:deliveries_event_changelist") + f"?source__id__exact={source.pk}"


@admin.register(Source)
class SourceAdmin(ChangePageContext, CountedDeletes, admin.ModelAdmin):
    form = SourceForm
    list_display = ["name", "kind", "enabled", "events_24h", "last_event_at", "last_request"]
    list_editable = ["enabled"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = [
        "events_24h",
        "last_event_at",
        "last_request",
        "settings_",
        "settings_hidden",
        "created_at",
        "updated_at",
    ]

    class Media:
        css = {"all": ["integrations/destination.css"]}
        js = ["integrations/destination.js"]  # shows the chosen kind's secret input and help only

    def get_queryset(self, request: HttpRequest) -> QuerySet[Source]:
        """Annotate event activity in the same query as the sources, whatever the number of rows."""
        # Correlated subqueries, not Count/Max over a join: each reads only its slice of the
        # (source, received_at) index, where the join aggregates every event ever received
        # (2 ms against 620 ms on SQLite with a million events).
        since = timezone.now() - ACTIVITY_WINDOW
        events = EVENT_MODEL._base_manager.filter(source=OuterRef("pk")).order_by()
        return (
            super()
            .get_queryset(request)
            .annotate(
                events_24h=Subquery(
                    events.filter(received_at__gte=since).annotate(n=Func("pk", function="COUNT")).values("n"),
                    output_field=IntegerField(),
                ),
                last_event_at=Subquery(events.order_by("-received_at").values("received_at")[:1]),
            )
        )

    def get_fieldsets(self, request: HttpRequest, obj: Source | None = None) -> list[tuple[str | None, dict]]:
        # A read-only page would print the decrypted secret: it shows its mask instead, and to someone without
        # the credentials permission not even that (the names inside a set of secret headers are shown).
        editable = obj is None or self.has_change_permission(request, obj)
        secret = ("settings" if editable else "settings_") if sees_secrets(request) else "settings_hidden"
        # A JavaScript source's function and its settings, one input each (the page shows them for that kind).
        function = ["function", "function_settings"] if editable else []
        webhook = (
            "Webhook",
            {
                "fields": ["config", *function, secret],
                "description": "For sources that receive a tool's webhooks (Customer.io, Stripe, Zendesk, any JSON): "
                "how to read them and the secret they are signed with.",
            },
        )
        if obj is None:
            first = (
                ["name", "slug", "kind", "write_key", "enabled"]
                if sees_secrets(request)
                else ["name", "slug", "kind", "enabled"]
            )
            return [(None, {"fields": first}), webhook]
        fieldsets: list[tuple[str | None, dict]] = [(None, {"fields": ["name", "slug", "kind", "enabled"]})]
        if obj.is_webhook:
            webhook[1]["fields"].insert(0, "last_request")
            fieldsets.append(webhook)
        fieldsets.append(("Activity", {"fields": ["events_24h", "last_event_at", "created_at", "updated_at"]}))
        return fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Source | None = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        if not sees_secrets(request):
            # Read-only takes the secrets out of the form itself: no input, and a crafted POST changes nothing.
            fields += ["settings", "write_key"]
        return fields

    def get_form(
        self, request: HttpRequest, obj: Source | None = None, change: bool = False, **kwargs: Any
    ) -> type[ModelForm]:
        kwargs.setdefault(
            "help_texts",
            {
                "write_key": "Generated for you. To move a Segment source here without touching your apps, "
                "paste its Segment write key instead. It cannot be changed later."
            },
        )
        return super().get_form(request, obj, change, **kwargs)

    def change_context(self, request: HttpRequest, source: Source) -> dict[str, Any]:
        return connection_context(request, source)

    @admin.display(description="Events (24 h)", ordering="events_24h")
    def events_24h(self, source: Source) -> str:
        return format_html(
            '<a href="{}" title="All events of {}">{}</a>', events_url(source), source.name, source.events_24h
        )

    @admin.display(description="Last webhook request", ordering="last_request_at")
    def last_request(self, source: Source) -> str:
        if not source.is_webhook:
            return "-"
        if source.last_request_at is None:
            return "none yet"
        ok = source.last_request_status == 200
        return format_html(
            '<span class="last-request{}" title="{}">HTTP {}: {}</span> <span class="when">{}</span>',
            "" if ok else " last-error",
            source.last_request_result,
            source.last_request_status,
            Truncator(source.last_request_result).chars(ERROR_CHARS),
            ago(source.last_request_at, ""),
        )

    @admin.display(description="Signing secret")
    def settings_(self, source: Source) -> str:
        masks = credential_masks(source.kind, source.settings, function_kinds())
        return format_html_join(", ", "{}: {}", masks) if masks else "-"

    @admin.display(description="Signing secret")
    def settings_hidden(self, source: Source) -> str:
        if source.kind not in function_kinds():
            return "-"
        return stored_line(source.settings, "it")

    @admin.display(description="Last event", ordering="last_event_at")
    def last_event_at(self, source: Source) -> str:
        if source.last_event_at is None:
            return "never"
        at = timezone.localtime(source.last_event_at)
        return format_html('<span title="{}">{} ago</span>', date_format(at, "Y-m-d H:i:s T"), timesince(at, depth=1))

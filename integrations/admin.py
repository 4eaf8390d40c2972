"""Admin for sources: activity at a glance, and what a developer needs to start sending events."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import admin
from django.db import models
from django.db.models import Func, IntegerField, OuterRef, QuerySet, Subquery
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.text import capfirst
from django.utils.timesince import timesince

from integrations.models import Source

admin.site.site_header = "cdphub"
admin.site.site_title = "cdphub"
admin.site.index_title = "Customer data hub"

ACTIVITY_WINDOW = timedelta(hours=24)
# The event model by relation, not by import: integrations never imports deliveries.
EVENT_MODEL = Source._meta.get_field("events").related_model
WEBHOOK_KINDS = {Source.Kind.CUSTOMERIO, Source.Kind.STRIPE, Source.Kind.ZENDESK, Source.Kind.GENERIC}


def public_base_url(request: HttpRequest) -> str:
    """Return the hub's base URL as senders reach it, without a trailing slash."""
    return (settings.PUBLIC_URL or request.build_absolute_uri("/")).rstrip("/")


def connection_context(request: HttpRequest, source: Source) -> dict[str, Any]:
    """Return what the snippets on the source page need: endpoint, host and protocol for the SDKs."""
    base = public_base_url(request)
    parts = urlsplit(base)
    return {
        "base_url": base,
        "endpoint_url": f"{base}/v1/",
        "api_host": f"{parts.netloc}{parts.path}/v1",  # analytics.js wants the host without the scheme
        "api_protocol": parts.scheme or "https",
        "webhook_url": f"{base}/v1/webhooks/{source.write_key}" if source.kind in WEBHOOK_KINDS else "",
        "events_url": events_url(source),
    }


def events_url(source: Source) -> str:
    return reverse("admin:deliveries_event_changelist") + f"?source__id__exact={source.pk}"


class CountedDeletes:
    """Count what goes with the deleted objects instead of listing it: a busy one has millions of rows."""

    model: type[models.Model]
    admin_site: admin.AdminSite

    def get_deleted_objects(
        self, objs: QuerySet[Any] | list[Any], request: HttpRequest
    ) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
        opts = self.model._meta
        chosen = list(objs)
        to_delete: list[Any] = [
            format_html(
                '{}: <a href="{}">{}</a>',
                capfirst(opts.verbose_name),
                reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]),
                obj,
            )
            for obj in chosen
        ]
        model_count = {str(opts.verbose_name_plural): len(chosen)}
        perms_needed: set[str] = set()
        for relation in opts.related_objects:
            if not relation.one_to_many or relation.on_delete is not models.CASCADE:
                continue
            if not self.admin_site.is_registered(relation.related_model):
                continue  # bookkeeping rows (a destination's slots) go too, unmentioned
            related = relation.related_model._meta
            count = relation.related_model._base_manager.filter(**{f"{relation.field.name}__in": chosen}).count()
            if not count:
                continue
            name = str(related.verbose_name_plural)
            model_count[name] = count
            to_delete.append(f"{count:,} {name}, with everything recorded for them")
            if not request.user.has_perm(f"{related.app_label}.delete_{related.model_name}"):
                perms_needed.add(str(related.verbose_name))
        return to_delete, model_count, perms_needed, []


@admin.register(Source)
class SourceAdmin(CountedDeletes, admin.ModelAdmin):
    list_display = ["name", "kind", "enabled", "events_24h", "last_event_at"]
    list_editable = ["enabled"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    exclude = ["settings"]  # secrets: never rendered, not even encrypted (per-kind secret fields come later)
    readonly_fields = ["events_24h", "last_event_at", "created_at", "updated_at"]

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
        if obj is None:
            return [(None, {"fields": ["name", "slug", "kind", "write_key", "enabled"]})]
        return [
            (None, {"fields": ["name", "slug", "kind", "enabled"]}),
            ("Activity", {"fields": ["events_24h", "last_event_at", "created_at", "updated_at"]}),
        ]

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

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Source | None = None,
    ) -> HttpResponse:
        if obj is not None:
            context = {**context, **connection_context(request, obj)}
        return super().render_change_form(request, context, add, change, form_url, obj)

    @admin.display(description="Events (24 h)", ordering="events_24h")
    def events_24h(self, source: Source) -> str:
        return format_html(
            '<a href="{}" title="All events of {}">{}</a>', events_url(source), source.name, source.events_24h
        )

    @admin.display(description="Last event", ordering="last_event_at")
    def last_event_at(self, source: Source) -> str:
        if source.last_event_at is None:
            return "never"
        at = timezone.localtime(source.last_event_at)
        return format_html('<span title="{}">{} ago</span>', date_format(at, "Y-m-d H:i:s T"), timesince(at, depth=1))

"""Admin for sources and destinations: activity at a glance, snippets to start sending, settings and secrets."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.humanize.templatetags.humanize import naturaltime
from django.db import models
from django.db.models import Func, IntegerField, OuterRef, QuerySet, Subquery
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator, capfirst
from django.utils.timesince import timesince

from integrations.crypto import CANNOT_DECRYPT, Undecryptable
from integrations.forms import DestinationForm, SourceForm, credential_masks, function_kinds
from integrations.models import Destination, Source
from integrations.signals import destinations_resumed

admin.site.site_header = "cdphub"
admin.site.site_title = "cdphub"
admin.site.index_title = "Customer data hub"

ACTIVITY_WINDOW = timedelta(hours=24)
# The event model by relation, not by import: integrations never imports deliveries.
EVENT_MODEL = Source._meta.get_field("events").related_model
WEBHOOK_KINDS = {Source.Kind.CUSTOMERIO, Source.Kind.STRIPE, Source.Kind.ZENDESK, Source.Kind.GENERIC}


MANAGE_CREDENTIALS = "integrations.manage_credentials"
WRITE_KEY_PLACEHOLDER = "YOUR_WRITE_KEY"


def sees_secrets(request: HttpRequest) -> bool:
    """Credentials, write keys and signing secrets are for administrators; a marketer never receives them."""
    return request.user.has_perm(MANAGE_CREDENTIALS)


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
    webhook = source.kind in WEBHOOK_KINDS
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
        webhook = (
            "Webhook",
            {
                "fields": ["config", secret],
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
        if obj.kind in WEBHOOK_KINDS:
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

    @admin.display(description="Last webhook request", ordering="last_request_at")
    def last_request(self, source: Source) -> str:
        if source.kind not in WEBHOOK_KINDS:
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


# Destinations ----------------------------------------------------------------------------------------

# The delivery model by relation, like the event model above.
DELIVERY_MODEL = Destination._meta.get_field("deliveries").related_model
DELIVERY_STATUS = DELIVERY_MODEL.Status
ERROR_CHARS = 80


def deliveries_url(destination: Destination, status: str = "") -> str:
    url = reverse("admin:deliveries_delivery_changelist") + f"?destination__id__exact={destination.pk}"
    return url + f"&status__exact={status}" if status else url


def count_of(queryset: QuerySet[Any]) -> Subquery:
    """COUNT(*) of a correlated subquery, without a GROUP BY."""
    return Subquery(
        queryset.annotate(n=Func("pk", function="COUNT")).values("n"),
        output_field=IntegerField(),
    )


def ago(value: datetime | None, empty: str = "never") -> str:
    if value is None:
        return empty
    at = timezone.localtime(value)
    return format_html('<span title="{}">{}</span>', date_format(at, "Y-m-d H:i:s T"), naturaltime(value))


def stored_line(stored: Any, them: str = "them") -> str:
    """Whether secrets are stored, for someone who may not see them: no value, no mask, no key names."""
    is_stored = isinstance(stored, Undecryptable) or (isinstance(stored, dict) and any(stored.values()))
    return format_html(
        '<span class="credential-hidden">{}</span>',
        f"stored — only an administrator can see or change {them}" if is_stored else "none stored",
    )


# What a marketer may change on a destination: which events pass and what is sent, nothing else.
MARKETER_FIELDS = ["mapping", "filter"]


def names(destinations: list[Destination]) -> str:
    return ", ".join(d.name for d in destinations)


@admin.register(Destination)
class DestinationAdmin(CountedDeletes, admin.ModelAdmin):
    form = DestinationForm
    list_display = [
        "name",
        "vendor_",
        "state",
        "last_error_",
        "last_delivered",
        "delivered_24h",
        "failed_24h",
        "sources_",
        "credentials_",
    ]
    list_filter = ["vendor", "enabled", "paused"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    actions = ["pause_delivery", "resume_delivery"]
    readonly_fields = [
        "state",
        "last_error_",
        "last_delivered",
        "delivered_24h",
        "failed_24h",
        "credentials_",
        "credentials_stored",
        "created_at",
        "updated_at",
    ]

    class Media:
        css = {"all": ["integrations/destination.css"]}
        js = ["integrations/destination.js"]

    def get_list_display(self, request: HttpRequest) -> list[str]:
        display = list(super().get_list_display(request))
        return display if sees_secrets(request) else [c for c in display if c != "credentials_"]

    def limited(self, request: HttpRequest, obj: Destination | None) -> bool:
        """A marketer's change page: mapping and filter editable, everything else shown read-only."""
        return obj is not None and not sees_secrets(request) and self.has_change_permission(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Destination | None = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        if sees_secrets(request):
            return fields
        # Read-only takes the credentials out of the form itself: no input that could echo them, and a crafted
        # POST cannot set them. The page shows credentials_stored instead.
        fields.append("credentials")
        if self.limited(request, obj):
            editable = set(MARKETER_FIELDS)
            fields += [f for f in self.form._meta.fields if f not in editable and f not in fields]
        return fields

    def get_prepopulated_fields(self, request: HttpRequest, obj: Destination | None = None) -> dict[str, Any]:
        return {} if self.limited(request, obj) else super().get_prepopulated_fields(request, obj)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Destination]:
        """Annotate delivery activity in the same query as the destinations (sources come in one more)."""
        # Correlated counts read only this destination's slice of the (destination, created_at) and
        # (destination, status, next_attempt_at) indexes; see SourceAdmin.get_queryset.
        since = timezone.now() - ACTIVITY_WINDOW
        deliveries = DELIVERY_MODEL._base_manager.filter(destination=OuterRef("pk")).order_by()
        recent = deliveries.filter(created_at__gte=since)
        return (
            super()
            .get_queryset(request)
            .annotate(
                delivered_24h=count_of(recent.filter(status=DELIVERY_STATUS.DELIVERED)),
                failed_24h=count_of(recent.filter(status=DELIVERY_STATUS.FAILED)),
                queued=count_of(deliveries.filter(status__in=DELIVERY_MODEL.WAITING)),
            )
            .prefetch_related("sources")
        )

    def get_fieldsets(self, request: HttpRequest, obj: Destination | None = None) -> list[tuple[str | None, dict]]:
        editable = obj is None or self.has_change_permission(request, obj)
        # A read-only page would print the decrypted credentials: it shows their masks instead, and to someone
        # without the credentials permission only whether some are stored.
        shown = sees_secrets(request)
        credentials = ("credentials" if editable else "credentials_") if shown else "credentials_stored"
        first: dict[str, Any] = {"fields": ["name", "slug", "vendor", "sources", "enabled", "paused"]}
        if self.limited(request, obj):
            first["description"] = (
                "Set up by an administrator: you can change the mapping and the filter below; ask an administrator "
                "for anything else."
            )
        fieldsets: list[tuple[str | None, dict]] = [
            (None, first),
            (
                "Settings",
                {
                    "fields": ["config", credentials, "mapping"],
                    "description": "What the vendor needs to receive events. Settings are checked when you save, "
                    "the way the delivery worker reads them.",
                },
            ),
            ("Which events", {"fields": ["filter", "consent_categories"]}),
            (
                "Limits and retries",
                {
                    "fields": [("rate_limit", "rate_period"), "concurrency", "timeout", "retry_deadline"],
                    "classes": ["collapse"],
                    "description": "Blank limits use the vendor's defaults.",
                },
            ),
        ]
        if obj is not None:
            status = ["state", "last_delivered", "last_error_", ("delivered_24h", "failed_24h")]
            fieldsets.insert(0, ("Status", {"fields": status + (["credentials_"] if editable and shown else [])}))
            fieldsets.append(("History", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}))
        return fieldsets

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "sources":
            kwargs["widget"] = forms.CheckboxSelectMultiple
            kwargs["help_text"] = "Events of these sources are sent here."
            return db_field.formfield(**kwargs)  # ticks, without the related-object "+" beside them
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Destination, form: ModelForm, change: bool) -> None:
        if self.limited(request, obj):
            # Write the marketer's fields only: the row's credentials and settings stay as stored, even if an
            # administrator changed them while this page was open.
            obj.save(update_fields=[*MARKETER_FIELDS, "updated_at"])
            return
        super().save_model(request, obj, form, change)
        if change and obj.enabled and not obj.paused and {"enabled", "paused"} & set(form.changed_data):
            destinations_resumed.send(sender=Destination, destination_ids=[obj.pk])

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Destination | None = None,
    ) -> HttpResponse:
        if obj is not None:
            context = {**context, "deliveries_url": deliveries_url(obj)}
        return super().render_change_form(request, context, add, change, form_url, obj)

    # Columns

    @admin.display(description="Vendor", ordering="vendor")
    def vendor_(self, destination: Destination) -> str:
        return destination.get_vendor_display()

    @admin.display(description="State")
    def state(self, destination: Destination) -> str:
        if not destination.enabled:
            state, title = "disabled", "Events are not routed here."
        elif destination.paused:
            state, title = "paused", "Events are routed and kept; they are sent once you resume delivery."
        elif destination.misconfigured:
            state = "misconfigured"
            title = "Every delivery fails until the settings are fixed. " + destination.last_error_hint
        else:
            state, title = "enabled", "Events are delivered as they arrive."
        badge = format_html('<span class="state state-{}" title="{}">{}</span>', state, title, state.capitalize())
        queued = getattr(destination, "queued", 0)
        if queued and destination.enabled:
            url = deliveries_url(destination)
            return format_html('{} <a class="queued" href="{}">{} waiting</a>', badge, url, f"{queued:,}")
        return badge

    @admin.display(description="Last error", ordering="last_error_at")
    def last_error_(self, destination: Destination) -> str:
        if not destination.last_error:
            return "-"
        delivered, failed = destination.last_delivered_at, destination.last_error_at
        recovered = bool(delivered and failed and delivered > failed)
        hint = destination.last_error_hint
        return format_html(
            '<span class="last-error{}" title="{}">{}</span> <span class="when">{}</span>{}',
            " recovered" if recovered else "",
            destination.last_error + (" (delivered successfully since)" if recovered else ""),
            Truncator(destination.last_error).chars(ERROR_CHARS),
            ago(destination.last_error_at, ""),
            format_html('<div class="hint"><b>How to fix:</b> {}</div>', hint) if hint and not recovered else "",
        )

    @admin.display(description="Last delivered", ordering="last_delivered_at")
    def last_delivered(self, destination: Destination) -> str:
        return ago(destination.last_delivered_at)

    @admin.display(description="Delivered (24 h)", ordering="delivered_24h")
    def delivered_24h(self, destination: Destination) -> str:
        return self._count_link(destination, DELIVERY_STATUS.DELIVERED, destination.delivered_24h)

    @admin.display(description="Failed (24 h)", ordering="failed_24h")
    def failed_24h(self, destination: Destination) -> str:
        return self._count_link(destination, DELIVERY_STATUS.FAILED, destination.failed_24h)

    def _count_link(self, destination: Destination, status: str, count: int) -> str:
        return format_html(
            '<a class="count count-{}{}" href="{}" title="Of the events routed here in the last 24 hours">{}</a>',
            status,
            " zero" if not count else "",
            deliveries_url(destination, status),
            f"{count:,}",
        )

    @admin.display(description="Sources")
    def sources_(self, destination: Destination) -> str:
        return ", ".join(s.name for s in destination.sources.all()) or "none"

    @admin.display(description="Credentials")
    def credentials_(self, destination: Destination) -> str:
        masks = credential_masks(destination.vendor, destination.credentials)
        if not masks:
            return "none needed"
        return format_html_join(
            "",
            '<div class="credential-state{}">{}: {}</div>',
            ((" is-set" if value not in ("not set", CANNOT_DECRYPT) else "", key, value) for key, value in masks),
        )

    @admin.display(description="Credentials")
    def credentials_stored(self, destination: Destination) -> str:
        if not credential_masks(destination.vendor, {}):
            return "none needed"
        return stored_line(destination.credentials)

    # Actions

    @admin.action(description="Pause delivery", permissions=["change"])
    def pause_delivery(self, request: HttpRequest, queryset: QuerySet[Destination]) -> None:
        changed = self._switch_paused(queryset, paused=True)
        if not changed:
            self.message_user(request, "The selected destinations were already paused.", messages.WARNING)
            return
        self.message_user(request, f"Paused {names(changed)}. New events are kept and wait until you resume delivery.")

    @admin.action(description="Resume delivery", permissions=["change"])
    def resume_delivery(self, request: HttpRequest, queryset: QuerySet[Destination]) -> None:
        changed = self._switch_paused(queryset, paused=False)
        if not changed:
            self.message_user(request, "The selected destinations were not paused.", messages.WARNING)
            return
        enabled = [d for d in changed if d.enabled]
        disabled = [d for d in changed if not d.enabled]
        if enabled:
            destinations_resumed.send(sender=Destination, destination_ids=[d.pk for d in enabled])
            self.message_user(request, f"Resumed {names(enabled)}. Waiting events are being sent now.")
        if disabled:
            one = len(disabled) == 1
            self.message_user(
                request,
                f"{names(disabled)} {'is' if one else 'are'} no longer paused but {'is' if one else 'are'} disabled: "
                f"enable {'it' if one else 'them'} to send events there.",
                messages.WARNING,
            )

    def _switch_paused(self, queryset: QuerySet[Destination], paused: bool) -> list[Destination]:
        """Pause or resume the selected destinations that are not so already; return those."""
        # Fresh rows: the changelist's queryset carries the activity counts, not needed here.
        chosen = Destination.objects.filter(pk__in=list(queryset.values_list("pk", flat=True)), paused=not paused)
        changed = list(chosen.only("pk", "name", "enabled"))
        Destination.objects.filter(pk__in=[d.pk for d in changed]).update(paused=paused, updated_at=timezone.now())
        return changed

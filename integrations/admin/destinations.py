"""The destination admin: state and activity per destination, settings checked the worker's way, secrets
written but never shown again, and the Marketer's limited page (mapping and filter only)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import F, OuterRef, Q, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from integrations.admin.base import (
    ACTIVITY_WINDOW,
    ERROR_CHARS,
    ChangePageContext,
    CountedDeletes,
    ago,
    count_of,
    sees_secrets,
    stored_line,
)
from integrations.crypto import CANNOT_DECRYPT
from integrations.forms import DestinationForm, credential_masks
from integrations.forms.destination_functions import FIELDS as FUNCTION_INPUTS
from integrations.models import Destination
from integrations.signals import destinations_resumed

# The delivery model by relation, not by import: integrations never imports deliveries.
DELIVERY_MODEL = Destination._meta.get_field("deliveries").related_model
DELIVERY_STATUS = DELIVERY_MODEL.Status


def deliveries_url(destination: Destination, status: str = "") -> str:
    url = reverse("admin:deliveries_delivery_changelist") + f"?destination__id__exact={destination.pk}"
    return url + f"&status__exact={status}" if status else url


# What a marketer may change on a destination: which events pass and what is sent, nothing else.
MARKETER_FIELDS = ["mapping", "filter"]


def names(destinations: list[Destination]) -> str:
    return ", ".join(d.name for d in destinations)


@admin.register(Destination)
class DestinationAdmin(ChangePageContext, CountedDeletes, admin.ModelAdmin):
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
        "insert_settings",
        "insert_secrets_",
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
            fields += FUNCTION_INPUTS  # declared inputs, not model fields: read-only takes them out of the form
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
                # The engine's circuit breaker, read by its relation (deliveries.Circuit): open since, and why.
                circuit_opened_at=F("circuit__opened_at"),
                circuit_reason=F("circuit__reason"),
            )
            .prefetch_related("sources")
        )

    def get_fieldsets(self, request: HttpRequest, obj: Destination | None = None) -> list[tuple[str | None, dict]]:
        editable = obj is None or self.has_change_permission(request, obj)
        # A read-only page would print the decrypted credentials: it shows their masks instead, and to someone
        # without the credentials permission only whether some are stored.
        shown = sees_secrets(request)
        credentials = ("credentials" if editable else "credentials_") if shown else "credentials_stored"
        # A function's settings are typed one input each; a read-only page shows what is stored instead.
        inputs = editable and not self.limited(request, obj)
        functions = ["function", "function_settings"] if inputs else []
        insert = ["insert_function", *(["insert_values"] if inputs else ["insert_settings", "insert_secrets_"])]
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
                    "fields": ["config", *functions, credentials, "mapping"],
                    "description": "What the vendor needs to receive events. Settings are checked when you save, "
                    "the way the delivery worker reads them.",
                },
            ),
            ("Which events", {"fields": ["filter", "consent_categories"]}),
            (
                "Insert function",
                {
                    "fields": insert,
                    "classes": [] if obj is not None and obj.insert_function_id else ["collapse"],
                    "description": "JavaScript run on each event before it is sent here: it returns the event changed, "
                    "or drops it. Write one under Functions (kind: insert function).",
                },
            ),
            (
                "Limits and retries",
                {
                    "fields": ["rate_mode", ("rate_limit", "rate_period"), "concurrency", "timeout", "retry_deadline"],
                    "classes": ["collapse"],
                    "description": "Blank limits use the vendor's defaults. Adaptive: the rate limit is the most "
                    "sent; Event Delivery shows the rate now and why.",
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

    def change_context(self, request: HttpRequest, destination: Destination) -> dict[str, Any]:
        return {"deliveries_url": deliveries_url(destination)}

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
        elif getattr(destination, "circuit_opened_at", None):
            state = "circuit open"
            title = (
                f"Paused automatically since {timezone.localtime(destination.circuit_opened_at):%Y-%m-%d %H:%M:%S}: "
                f"{destination.circuit_reason} Probed now and then; Resume delivery sends the backlog now."
            )
        elif destination.misconfigured:
            state = "misconfigured"
            title = "Every delivery fails until the settings are fixed. " + destination.last_error_hint
        else:
            state, title = "enabled", "Events are delivered as they arrive."
        css = state.replace(" ", "-")
        badge = format_html('<span class="state state-{}" title="{}">{}</span>', css, title, state.capitalize())
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
        if destination.vendor != "function" and not credential_masks(destination.vendor, {}):
            return "none needed"
        return stored_line(destination.credentials)

    @admin.display(description="Insert function secrets")
    def insert_secrets_(self, destination: Destination) -> str:
        function = destination.insert_function
        if function is None or not function.declared(sensitive=True):
            return "none needed"
        return stored_line(destination.insert_secrets)

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
        """Pause or resume the selected destinations that are not so already; return those. Resuming also takes
        those whose circuit the engine opened: the signal closes it."""
        # Fresh rows: the changelist's queryset carries the activity counts, not needed here.
        held = Q(paused=True) | Q(circuit__opened_at__isnull=False) if not paused else Q(paused=False)
        chosen = Destination.objects.filter(held, pk__in=list(queryset.values_list("pk", flat=True)))
        changed = list(chosen.only("pk", "name", "enabled"))
        Destination.objects.filter(pk__in=[d.pk for d in changed]).update(paused=paused, updated_at=timezone.now())
        return changed

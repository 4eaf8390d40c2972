"""Admin for events and deliveries: read-only logs that stay fast with millions of rows, and Retry now."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from deliveries import debugger, event_delivery, schema, tester
from deliveries.display import (
    attempts_text,
    compact_moment,
    destination_link,
    duration,
    error_summary,
    moment,
    render_exchanges,
    short_id,
    status_badge,
    until,
)
from deliveries.engine import kick, retry_now
from deliveries.models import Attempt, Delivery, Event, Replay
from deliveries.replay import ReplayAdmin
from deliveries.tracking import RequestError
from deliveries.webhooks import map_webhook, parse_webhook_json
from integrations import admin as integrations_admin
from integrations.models import Destination, Source
from integrations.signals import destinations_resumed
from integrations.webhooks import FUNCTIONS, Incoming, WebhookError

RETRY_CHUNK = 1000  # delivery ids per UPDATE: "select all" may pick many thousands


class ReadOnlyInline(admin.TabularInline):
    """A record of what happened: shown, never added to, edited or deleted from the page."""

    extra = 0

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


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


@admin.register(Event)
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
        css = {"all": ["deliveries/deliveries.css"]}

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


# Deliveries ------------------------------------------------------------------------------------------


def retry(delivery_ids: Iterable[int]) -> int:
    """Send failed, retrying and pending deliveries now (the engine kicks their destinations); return how many."""
    ids = list(delivery_ids)
    count = 0
    with transaction.atomic():  # the engine's kicks run on commit, once every row is due
        for start in range(0, len(ids), RETRY_CHUNK):
            count += retry_now(ids[start : start + RETRY_CHUNK])
    return count


@receiver(destinations_resumed)
def kick_resumed(sender: Any, destination_ids: list[int], **kwargs: Any) -> None:
    """Send what waited for resumed destinations now, not at the sweeper's next pass."""
    transaction.on_commit(lambda: [kick(destination_id, fill=True) for destination_id in destination_ids])


class AttemptInline(ReadOnlyInline):
    """Every try of the delivery, newest first, with each HTTP exchange as recorded."""

    model = Attempt
    fields = ["number", "started", "outcome_", "status_code", "error_", "duration_", "exchanges_"]
    readonly_fields = fields
    extra = 0
    verbose_name_plural = "Attempts (newest first)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Attempt]:
        return super().get_queryset(request).select_related("delivery").order_by("-number")

    @admin.display(description="Started")
    def started(self, attempt: Attempt) -> str:
        return moment(attempt.started_at, precise=True)

    @admin.display(description="Outcome")
    def outcome_(self, attempt: Attempt) -> str:
        return format_html(
            '<span class="status outcome-{}">{}</span>', attempt.outcome, attempt.get_outcome_display().capitalize()
        )

    @admin.display(description="Error")
    def error_(self, attempt: Attempt) -> str:
        return error_summary(attempt, chars=200)

    @admin.display(description="Duration")
    def duration_(self, attempt: Attempt) -> str:
        return duration(attempt.duration_ms)

    @admin.display(description="HTTP exchanges")
    def exchanges_(self, attempt: Attempt) -> str:
        # The newest attempt's last exchange is open: it is the one that decided where the delivery stands.
        newest = attempt.number == attempt.delivery.attempts + attempt.delivery.throttled
        return render_exchanges(attempt.exchanges or [], open_last=newest)


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "created",
        "event_",
        "destination_",
        "status_",
        "attempts_",
        "next_attempt",
        "error_",
        "delivered",
        "latency",
    ]
    list_filter = ["status", "destination", ("destination__vendor", admin.ChoicesFieldListFilter)]
    search_fields = ["event__message_id"]  # the box; get_search_results does the searching
    search_help_text = "An exact message id, user id or anonymous id of the event."
    list_select_related = ["event", "destination"]
    list_per_page = 50
    show_full_result_count = False
    ordering = ["-id"]  # creation order, on the primary key: no index on created_at alone
    actions = ["retry_deliveries", "pause_destinations", "resume_destinations"]
    inlines = [AttemptInline]

    class Media:
        css = {"all": ["deliveries/deliveries.css"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Delivery]:
        return super().get_queryset(request).defer("event__payload")

    def get_fieldsets(self, request: HttpRequest, obj: Delivery | None = None) -> list[tuple[str | None, dict]]:
        test = ["is_test"] if obj is not None and obj.is_test else []
        fieldsets: list[tuple[str | None, dict]] = [
            (None, {"fields": ["event_", "destination_", "status_", *test]}),
            ("Progress", {"fields": ["attempts_", "next_attempt", "created_at_", "delivered_at_", "latency"]}),
        ]
        if obj is not None and (obj.error_code or obj.error_message):
            title = "Why it was filtered" if obj.status == Delivery.Status.FILTERED else "Last error"
            fields = ["error_code", "error_message"] + (["hint"] if obj.hint else [])
            fieldsets.append((title, {"fields": fields}))
        return fieldsets

    def get_urls(self) -> list[Any]:
        retry_url = path(
            "<path:object_id>/retry/", self.admin_site.admin_view(self.retry_view), name="deliveries_delivery_retry"
        )
        return [retry_url, *event_delivery.urls(self), *super().get_urls()]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Delivery | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Delivery | None = None) -> bool:
        return False

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("deliveries.change_delivery")

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        # A replay's progress page links to its deliveries; a sidebar filter listing every replay would not scale.
        return lookup == "replay__id__exact" or super().lookup_allowed(lookup, value, request)

    def has_pause_permission(self, request: HttpRequest) -> bool:
        return self.admin_site.get_model_admin(Destination).has_change_permission(request)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Delivery], search_term: str
    ) -> tuple[QuerySet[Delivery], bool]:
        """Find the events first, each id on its own index, then their deliveries."""
        term = search_term.strip().strip("\"'")
        if not term:
            return queryset, False
        events = Event.objects.filter(Q(message_id=term) | Q(user_id=term) | Q(anonymous_id=term)).values("pk")
        return queryset.filter(event__in=events), False

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Delivery | None = None,
    ) -> HttpResponse:
        if obj is not None:
            # "track Signed Up → Welcome webhook" says more than the model's "12 → 3 (failed)".
            context = {**context, "subtitle": f"{obj.event.type} {obj.event.event}".strip() + f" → {obj.destination}"}
        if obj is not None and obj.status in Delivery.RETRYABLE and self.has_retry_permission(request):
            context = {**context, "retry_url": reverse("admin:deliveries_delivery_retry", args=[obj.pk])}
        return super().render_change_form(request, context, add, change, form_url, obj)

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The delivery page's Retry now button."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_retry_permission(request):
            raise PermissionDenied
        delivery = get_object_or_404(Delivery.objects.select_related("destination"), pk=object_id)
        if retry([delivery.pk]):
            self.message_user(request, "Re-queued: the delivery is being sent now.")
            self._warn_paused(request, [delivery.destination])
        else:
            self.message_user(
                request,
                f"Nothing to retry: the delivery is {delivery.get_status_display().lower()}.",
                messages.WARNING,
            )
        return HttpResponseRedirect(reverse("admin:deliveries_delivery_change", args=[delivery.pk]))

    def _warn_paused(self, request: HttpRequest, destinations: Iterable[Destination]) -> None:
        held = sorted({d.name for d in destinations if d.paused or not d.enabled})
        if held:
            self.message_user(
                request,
                f"Paused or disabled: {', '.join(held)}. Deliveries there wait until the destination is resumed "
                "and enabled.",
                messages.WARNING,
            )

    # Actions

    @admin.action(description="Retry now", permissions=["retry"])
    def retry_deliveries(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        by_status = dict(queryset.order_by().values_list("status").annotate(n=Count("pk")))
        destinations = list(Destination.objects.filter(pk__in=queryset.values("destination_id")))
        count = retry(queryset.filter(status__in=Delivery.RETRYABLE).values_list("pk", flat=True))
        left = sum(by_status.values()) - count
        if count:
            self.message_user(request, f"Re-queued {count} {plural(count)}: they are being sent now.")
            self._warn_paused(request, destinations)
        if left:
            alone = ", ".join(
                f"{n} {Delivery.Status(status).label.lower()}"
                for status, n in sorted(by_status.items())
                if status not in Delivery.RETRYABLE
            )
            self.message_user(
                request,
                f"Left {left} {plural(left)} alone ({alone}): delivered and filtered deliveries are not sent again, "
                "and in-flight ones are being sent.",
                messages.WARNING,
            )

    @admin.action(description="Pause their destinations", permissions=["pause"])
    def pause_destinations(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        destinations = Destination.objects.filter(pk__in=queryset.values("destination_id"))
        self.admin_site.get_model_admin(Destination).pause_delivery(request, destinations)

    @admin.action(description="Resume their destinations", permissions=["pause"])
    def resume_destinations(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        destinations = Destination.objects.filter(pk__in=queryset.values("destination_id"))
        self.admin_site.get_model_admin(Destination).resume_delivery(request, destinations)

    # Columns and fields

    @admin.display(description="Created", ordering="id")
    def created(self, delivery: Delivery) -> str:
        return compact_moment(delivery.created_at)

    @admin.display(description="Event")
    def event_(self, delivery: Delivery) -> str:
        event = delivery.event
        url = reverse("admin:deliveries_event_change", args=[event.pk])
        return format_html(
            '<a href="{}" title="Message id {}"><span class="quiet">{}</span> {}</a>',
            url,
            event.message_id,
            event.type,
            event.event,
        )

    @admin.display(description="Destination", ordering="destination__name")
    def destination_(self, delivery: Delivery) -> str:
        return destination_link(delivery.destination)

    @admin.display(description="Status", ordering="status")
    def status_(self, delivery: Delivery) -> str:
        return status_badge(delivery)

    @admin.display(description="Attempts", ordering="attempts")
    def attempts_(self, delivery: Delivery) -> str:
        return attempts_text(delivery)

    @admin.display(description="Next attempt", ordering="next_attempt_at")
    def next_attempt(self, delivery: Delivery) -> str:
        if delivery.status not in (Delivery.Status.PENDING, Delivery.Status.RETRYING) or not delivery.next_attempt_at:
            return "-"
        return until(delivery.next_attempt_at)

    @admin.display(description="Error")
    def error_(self, delivery: Delivery) -> str:
        return error_summary(delivery)

    @admin.display(description="Created")
    def created_at_(self, delivery: Delivery) -> str:
        return moment(delivery.created_at, precise=True)

    @admin.display(description="Delivered")
    def delivered_at_(self, delivery: Delivery) -> str:
        return moment(delivery.delivered_at, precise=True) if delivery.delivered_at else "-"

    @admin.display(description="Delivered", ordering="delivered_at")
    def delivered(self, delivery: Delivery) -> str:
        return compact_moment(delivery.delivered_at) if delivery.delivered_at else "-"

    @admin.display(description="Latency", ordering="latency_ms")
    def latency(self, delivery: Delivery) -> str:
        return duration(delivery.latency_ms)


def plural(count: int) -> str:
    return "delivery" if count == 1 else "deliveries"


# Sources: try a webhook payload ----------------------------------------------------------------------
#
# The source page itself is integrations' SourceAdmin; the dry run needs the Tracking API's normalisation,
# which lives here (integrations never imports deliveries), so this app extends that admin with the page.


class SourceAdmin(integrations_admin.SourceAdmin):
    def get_urls(self) -> list[Any]:
        try_url = path(
            "<path:object_id>/try/", self.admin_site.admin_view(self.try_view), name="integrations_source_try"
        )
        return [try_url, *super().get_urls()]

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Source | None = None,
    ) -> HttpResponse:
        if obj is not None and obj.kind in FUNCTIONS:
            context = {**context, "try_url": reverse("admin:integrations_source_try", args=[obj.pk])}
        return super().render_change_form(request, context, add, change, form_url, obj)

    def try_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Show the events a pasted payload would make, without storing or sending anything."""
        source = get_object_or_404(Source, pk=object_id)
        if not self.has_view_permission(request, source):
            raise PermissionDenied
        if source.kind not in FUNCTIONS:
            messages.info(request, "Only webhook sources have a source function to try.")
            return HttpResponseRedirect(reverse("admin:integrations_source_change", args=[source.pk]))
        # The first visit starts from the last body the tool sent (the webhook capture of Segment's functions).
        payload = request.POST.get("payload", "") if request.method == "POST" else source.last_request_body
        outcome = dry_run(source, payload.encode()) if payload.strip() else None
        context = {
            **self.admin_site.each_context(request),
            "title": f"Try a payload: {source.name}",
            "opts": self.opts,
            "original": source,
            "payload": payload,
            "from_last_request": request.method != "POST" and bool(payload),
            "outcome": outcome,
        }
        return TemplateResponse(request, "admin/integrations/source/try.html", context)


def dry_run(source: Source, body: bytes) -> dict[str, Any]:
    """What the webhook endpoint would do with this body, short of checking the signature and storing."""
    now = timezone.now()
    try:
        function = FUNCTIONS[source.kind](source.config, source.settings)
        payloads, rejections = map_webhook(function, Incoming(body, {}, parse_webhook_json(body), now))
    except (RequestError, WebhookError) as exc:
        return {"error": f"{exc.code}: {exc.message}", "status": exc.status}
    except Exception as exc:  # a bug in a source function: show it here rather than a server error page
        return {"error": f"internal_error: the source function failed ({type(exc).__name__}).", "status": 500}
    for payload in payloads:
        payload.pop("_timestamp", None)
    return {
        "events": [orjson.dumps(p, option=orjson.OPT_INDENT_2).decode() for p in payloads],
        "rejections": [f"event {r.index}: {r.code}: {r.reason}" for r in rejections],
    }


admin.site.unregister(Source)
admin.site.register(Source, SourceAdmin)
admin.site.register(Replay, ReplayAdmin)

"""The delivery log: every delivery, read-only, with its attempts and their HTTP exchanges inline; Retry now (a
button and an action), pausing and resuming destinations, and the Event Delivery pages hung off its admin."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from deliveries.engine.sweep import retry_now
from deliveries.models import Attempt, Delivery, Event
from deliveries.pages.base import ReadOnlyInline
from deliveries.pages.display import (
    attempts_text,
    compact_moment,
    destination_link,
    duration,
    error_summary,
    moment,
    status_badge,
    until,
)
from deliveries.pages.event_delivery import views as event_delivery
from integrations.admin.base import ChangePageContext
from integrations.admin.exchanges import render_exchanges, render_logs
from integrations.models import Destination


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
        # A function's console output goes under its fetch calls (nothing for a vendor, which logs nothing).
        return render_exchanges(attempt.exchanges or [], open_last=newest) + render_logs(attempt.logs)


class DeliveryAdmin(ChangePageContext, admin.ModelAdmin):
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
        css = {"all": ["integrations/exchanges.css", "deliveries/deliveries.css"]}

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

    def change_context(self, request: HttpRequest, delivery: Delivery) -> dict[str, Any]:
        # "track Signed Up → Welcome webhook" says more than the model's "12 → 3 (failed)".
        context = {"subtitle": f"{delivery.event.type} {delivery.event.event}".strip() + f" → {delivery.destination}"}
        if delivery.status in Delivery.RETRYABLE and self.has_retry_permission(request):
            context["retry_url"] = reverse("admin:deliveries_delivery_retry", args=[delivery.pk])
        return context

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The delivery page's Retry now button."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_retry_permission(request):
            raise PermissionDenied
        delivery = get_object_or_404(Delivery.objects.select_related("destination"), pk=object_id)
        if retry_now([delivery.pk]):
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
        count = retry_now(queryset.filter(status__in=Delivery.RETRYABLE).values_list("pk", flat=True))
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
        if delivery.status not in Delivery.DUE or not delivery.next_attempt_at:
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

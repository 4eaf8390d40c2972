"""Event Delivery: how each destination is doing over 10 minutes … 2 weeks: delivered, failed, retrying, pending,
filtered, success rate, p50/p95 latency, a trends chart, and the issues grouped by error with samples to read
(what was received, the request sent, the response) and a button to retry a group.

Delivered, failed and latency come from the rollups (numbers.py); retrying and pending are current counts on the
(destination, status, next_attempt_at) index; filtered and the issues read the (destination, status, created_at)
index over the window.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib import messages
from django.db.models import Count, Max, Min, OuterRef, Q, Subquery
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.http import urlencode

from deliveries.engine.sweep import retry_now
from deliveries.models import Attempt, Delivery
from deliveries.pages.base import check_permission, optional_url, page_context, window_of
from deliveries.pages.event_delivery import health
from deliveries.pages.event_delivery.numbers import (
    DEFAULT_WINDOW,
    INDEX_WINDOWS,
    WINDOWS,
    Window,
    chart_data,
    current_counts,
    rollup_buckets,
    summarise,
    window_start,
)
from integrations.admin.exchanges import pretty_body, render_exchanges, render_logs
from integrations.models import Destination

PERMISSION = "deliveries.view_delivery"
RETRY_PERMISSION = "deliveries.change_delivery"
ISSUE_GROUPS = 20
SAMPLES = 20
# Newest failed (and retrying) deliveries the issues read: grouping errors needs the rows, one by one. At 10M
# deliveries 10,000 of each took 50-200 ms (bench/rollups.py), 1,000 take a few.
ISSUE_SCAN = 1_000
FILTERED_COUNT = 100_000  # counted up to this, then "100000+": a busy destination filters more in two weeks
ISSUE_STATUSES = (Delivery.Status.FAILED, Delivery.Status.RETRYING)


def urls(model_admin: Any) -> list[URLPattern]:
    """The page's URL patterns, added to DeliveryAdmin.get_urls (each wrapped in admin_view)."""
    wrap = model_admin.admin_site.admin_view
    return [
        path(
            "event-delivery/",
            wrap(lambda r: index_view(model_admin, r)),
            name="deliveries_delivery_event_delivery_index",
        ),
        path(
            "event-delivery/<int:destination_id>/",
            wrap(lambda r, destination_id: destination_view(model_admin, r, destination_id)),
            name="deliveries_delivery_event_delivery",
        ),
        path(
            "event-delivery/<int:destination_id>/samples/",
            wrap(lambda r, destination_id: samples_view(r, destination_id)),
            name="deliveries_delivery_event_delivery_samples",
        ),
        path(  # not ".../retry/": DeliveryAdmin's "<path:object_id>/retry/" comes first and would take it
            "event-delivery/<int:destination_id>/retry-these/",
            wrap(lambda r, destination_id: retry_view(r, destination_id)),
            name="deliveries_delivery_event_delivery_retry",
        ),
        *health.urls(model_admin),
    ]


def state_of(destination: Destination) -> tuple[str, str]:
    """The destination's state as the destination list shows it, and what it means."""
    if not destination.enabled:
        return "disabled", "Delivery is off: events are not routed here."
    if destination.paused:
        return "paused", "Events are routed and kept; they are sent once you resume delivery."
    if destination.misconfigured:
        return "misconfigured", "Every delivery fails until the settings are fixed."
    return "enabled", ""


def windows_nav(current: Window, allowed: tuple[str, ...] = tuple(WINDOWS)) -> list[dict[str, Any]]:
    return [{"key": k, "label": WINDOWS[k].label, "current": k == current.key} for k in allowed]


# The pages -----------------------------------------------------------------------------------------


def index_view(model_admin: Any, request: HttpRequest) -> HttpResponse:
    """Every destination with its window's numbers, each linking to its own page."""
    check_permission(request, PERMISSION)
    window = window_of(request, WINDOWS, DEFAULT_WINDOW, INDEX_WINDOWS)
    now = timezone.now()
    destinations = list(
        Destination.objects.only(
            "id",
            "name",
            "enabled",
            "paused",
            "last_error_code",
            "last_error_at",
            "last_delivered_at",
            *health.LIMIT_FIELDS,
        ).order_by("name")
    )
    ids = [d.pk for d in destinations]
    buckets = rollup_buckets(ids, window, now, chart=False)
    current = current_counts(ids)
    rates = health.health_of(destinations, now)
    rows = []
    for destination in destinations:
        state, _ = state_of(destination)
        rows.append(
            {
                "destination": destination,
                "state": state,
                "summary": summarise(buckets[destination.pk]),
                "backlog": sum(current[destination.pk].values()),
                "health": rates[destination.pk],
                "url": reverse("admin:deliveries_delivery_event_delivery", args=[destination.pk])
                + f"?window={window.key}",
            }
        )
    context = page_context(
        model_admin, request, "Event Delivery", window=window, windows=windows_nav(window, INDEX_WINDOWS), rows=rows
    )
    return TemplateResponse(request, "admin/deliveries/event_delivery/index.html", context)


def issues_of(destination: Destination, since: datetime) -> tuple[list[dict[str, Any]], bool]:
    """Failed and retrying deliveries of the window grouped by error, the 20 largest groups first, and whether
    only the newest ISSUE_SCAN of each status were read (a destination failing everything for two weeks)."""
    # Test sends (Event Tester) are the tester's to show; like the rollups, the issues leave them out.
    window = Delivery.objects.filter(destination=destination, created_at__gte=since, is_test=False)
    newest = [window.filter(status=s).order_by("-created_at").values("id")[:ISSUE_SCAN] for s in ISSUE_STATUSES]
    capped = any(
        window.filter(status=s).order_by("-created_at")[ISSUE_SCAN : ISSUE_SCAN + 1].exists() for s in ISSUE_STATUSES
    )
    # Capped, the ids alone pick the rows (by primary key); the window's other rows are not read.
    scanned = Delivery.objects.filter(Q(id__in=newest[0]) | Q(id__in=newest[1]), is_test=False)
    rows = (
        (scanned if capped else window.filter(status__in=ISSUE_STATUSES))
        .values("error_code", "error_message")
        .annotate(
            n=Count("id"),
            failed=Count("id", filter=Q(status=Delivery.Status.FAILED)),
            first=Min("updated_at"),
            last=Max("updated_at"),
            hint=Max("hint"),
        )
        .order_by("-n", "error_code")[:ISSUE_GROUPS]
    )
    return [{**row, "retrying": row["n"] - row["failed"]} for row in rows], capped


def destination_view(model_admin: Any, request: HttpRequest, destination_id: int) -> HttpResponse:
    check_permission(request, PERMISSION)
    destination = get_object_or_404(Destination.objects.defer("credentials", "config", "mapping"), pk=destination_id)
    window = window_of(request, WINDOWS, DEFAULT_WINDOW)
    now = timezone.now()
    since = window_start(window, now)  # the tiles' start: the issues and filtered count over the same window
    buckets = rollup_buckets([destination.pk], window, now)[destination.pk]
    summary = summarise(buckets)
    current = current_counts([destination.pk])[destination.pk]
    filtered = Delivery.objects.filter(destination=destination, status=Delivery.Status.FILTERED, created_at__gte=since)[
        : FILTERED_COUNT + 1
    ].count()
    state, state_text = state_of(destination)
    base = reverse("admin:deliveries_delivery_event_delivery", args=[destination.pk])
    issues, issues_capped = issues_of(destination, since)
    for issue in issues:
        query = urlencode({"window": window.key, "code": issue["error_code"], "message": issue["error_message"]})
        issue["samples_url"] = reverse("admin:deliveries_delivery_event_delivery_samples", args=[destination.pk])
        issue["samples_url"] += "?" + query
    can_retry = request.user.has_perm(RETRY_PERMISSION)
    deliveries_url = (
        reverse("admin:deliveries_delivery_changelist") + "?" + urlencode({"destination__id__exact": destination.pk})
    )
    context = {
        **page_context(model_admin, request, f"Event Delivery: {destination.name}"),
        "destination": destination,
        "state": state,
        "state_text": state_text,
        "window": window,
        "windows": windows_nav(window),
        "base_url": base,
        "since": since,
        "summary": summary,
        "retrying": current.get(Delivery.Status.RETRYING, 0),
        "pending": current.get(Delivery.Status.PENDING, 0) + current.get(Delivery.Status.IN_FLIGHT, 0),
        "in_flight": current.get(Delivery.Status.IN_FLIGHT, 0),
        "filtered": min(filtered, FILTERED_COUNT),
        "filtered_more": filtered > FILTERED_COUNT,
        "chart": chart_data(buckets, window),
        "issues": issues,
        "issues_capped": issues_capped,
        "issue_scan": ISSUE_SCAN,
        "can_retry": can_retry,
        "retry_url": reverse("admin:deliveries_delivery_event_delivery_retry", args=[destination.pk]),
        "replay_url": optional_url(
            "admin:deliveries_replay_add",
            query={"destination": destination.pk, "delivery_status": "failed", "since": since.isoformat()},
        )
        if request.user.has_perm("deliveries.add_replay")
        else "",
        "destination_url": reverse("admin:integrations_destination_change", args=[destination.pk]),
        "deliveries_url": deliveries_url,
        "failed_url": deliveries_url + "&status__exact=failed",
        "retrying_url": deliveries_url + "&status__exact=retrying",
        "pending_url": deliveries_url + "&status__exact=pending",
        "filtered_url": deliveries_url + "&status__exact=filtered",
        **health.panel_context(destination, request),
    }
    return TemplateResponse(request, "admin/deliveries/event_delivery/destination.html", context)


def group_of(request: HttpRequest, destination: Destination, window: Window) -> Any:
    """The failed and retrying deliveries of one issue group (error code and message) in the window."""
    data = request.POST if request.method == "POST" else request.GET
    if "code" not in data or "message" not in data:
        raise Http404("Which issue? The link lost its error code and message.")
    since = window_start(window, timezone.now())
    return Delivery.objects.filter(
        destination=destination,
        status__in=ISSUE_STATUSES,
        created_at__gte=since,
        is_test=False,
        error_code=data["code"],
        error_message=data["message"],
    )


def samples_view(request: HttpRequest, destination_id: int) -> HttpResponse:
    """Up to 20 newest deliveries of an issue group as an HTML fragment: received event, request and response."""
    check_permission(request, PERMISSION)
    destination = get_object_or_404(Destination.objects.only("id", "name"), pk=destination_id)
    window = window_of(request, WINDOWS, DEFAULT_WINDOW)
    last_attempt = Attempt.objects.filter(delivery=OuterRef("pk")).order_by("-number").values("id")[:1]
    deliveries = list(
        group_of(request, destination, window)
        .select_related("event")
        .annotate(last_attempt_id=Subquery(last_attempt))
        .order_by("-created_at", "-id")[:SAMPLES]
    )
    attempts = Attempt.objects.in_bulk([d.last_attempt_id for d in deliveries if d.last_attempt_id])
    show_events = request.user.has_perm("deliveries.view_event")
    samples = []
    for delivery in deliveries:
        attempt = attempts.get(delivery.last_attempt_id)
        samples.append(
            {
                "delivery": delivery,
                "event": delivery.event,
                "received": pretty_body(delivery.event.payload) if show_events else "",
                "attempt": attempt,
                "exchanges": render_exchanges(attempt.exchanges or [], open_last=True) if attempt else "",
                "logs": render_logs(attempt.logs) if attempt else "",
                "delivery_url": reverse("admin:deliveries_delivery_change", args=[delivery.pk]),
                "debugger_url": optional_url("admin:deliveries_event_debugger_detail", args=[delivery.event_id])
                if show_events
                else "",
            }
        )
    context = {"samples": samples, "show_events": show_events, "destination": destination}
    return TemplateResponse(request, "admin/deliveries/event_delivery/samples.html", context)


def retry_view(request: HttpRequest, destination_id: int) -> HttpResponse:
    """Retry these: send every failed and retrying delivery of one issue group in the window again, now."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    check_permission(request, PERMISSION)
    check_permission(request, RETRY_PERMISSION)
    destination = get_object_or_404(Destination.objects.only("id", "name"), pk=destination_id)
    window = window_of(request, WINDOWS, DEFAULT_WINDOW)
    count = retry_now(group_of(request, destination, window).values_list("id", flat=True))
    if count:
        messages.success(
            request, f"{count:,} deliver{'y' if count == 1 else 'ies'} to {destination.name} will be sent again now."
        )
    else:
        messages.info(request, "Nothing to retry: these deliveries were already sent or retried.")
    url = reverse("admin:deliveries_delivery_event_delivery", args=[destination.pk]) + f"?window={window.key}"
    return HttpResponseRedirect(url)

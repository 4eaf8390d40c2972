"""Event Delivery: how each destination is doing over 10 minutes … 2 weeks: delivered, failed, retrying, pending,
filtered, success rate, p50/p95 latency, a trends chart, and the issues grouped by error with samples to read
(what was received, the request sent, the response) and a button to retry a group.

Delivered, failed and latency come from the per-minute rollups (deliveries/rollups.py), summed per chart bucket
in the database; retrying and pending are current counts on the (destination, status, next_attempt_at) index;
filtered and the issues read the (destination, status, created_at) index over the window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.db.models import Case, Count, Expression, IntegerField, Max, Min, OuterRef, Q, Subquery, Sum, Value, When
from django.db.models.expressions import RawSQL
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils import timezone
from django.utils.http import urlencode

from deliveries.display import duration, pretty_body, render_exchanges
from deliveries.engine import retry_now
from deliveries.models import Attempt, Delivery, DeliveryRollup
from deliveries.rollups import FAILED_BUCKET, LATENCY_BUCKETS, minute_of
from integrations.models import Destination

PERMISSION = "deliveries.view_delivery"
RETRY_PERMISSION = "deliveries.change_delivery"
ISSUE_GROUPS = 20
SAMPLES = 20
ISSUE_SCAN = 10_000  # newest failed (and retrying) deliveries the issues read: grouping errors needs the rows
RETRY_CHUNK = 1000
ISSUE_STATUSES = (Delivery.Status.FAILED, Delivery.Status.RETRYING)


@dataclass(frozen=True)
class Window:
    key: str
    label: str
    span: timedelta
    step: timedelta
    step_label: str


WINDOWS = {
    w.key: w
    for w in (
        Window("10m", "10 minutes", timedelta(minutes=10), timedelta(minutes=1), "minute"),
        Window("1h", "1 hour", timedelta(hours=1), timedelta(minutes=5), "5 minutes"),
        Window("24h", "24 hours", timedelta(hours=24), timedelta(hours=1), "hour"),
        Window("7d", "7 days", timedelta(days=7), timedelta(hours=6), "6 hours"),
        Window("14d", "14 days", timedelta(days=14), timedelta(hours=12), "12 hours"),
    )
}
DEFAULT_WINDOW = "24h"


# The index sums every destination's minutes: beyond a day that is millions of rollup rows, so longer windows
# are on each destination's page only.
INDEX_WINDOWS = ("10m", "1h", "24h")


def window_of(request: HttpRequest, allowed: tuple[str, ...] = tuple(WINDOWS)) -> Window:
    data = request.POST if request.method == "POST" else request.GET
    key = data.get("window", "")
    return WINDOWS[key] if key in allowed else WINDOWS[DEFAULT_WINDOW]


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
    ]


def check_permission(request: HttpRequest) -> None:
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied


def optional_url(name: str, args: list[Any] | None = None, query: dict[str, Any] | None = None) -> str:
    """A URL of another page, or "" while that page is not installed (its link is then left out)."""
    try:
        url = reverse(name, args=args or [])
    except NoReverseMatch:
        return ""
    return f"{url}?{urlencode(query)}" if query else url


# Numbers -------------------------------------------------------------------------------------------


def percentile(histogram: dict[int, int], sums: dict[int, int], q: float) -> float | None:
    """The q-th percentile (0..1) of a latency histogram, interpolated linearly inside its bucket.

    The last, open, bucket (above the last bound) has no upper bound: its mean stands in for one.
    """
    total = sum(histogram.values())
    if not total:
        return None
    rank = q * total
    seen = 0
    for bucket in sorted(histogram):
        count = histogram[bucket]
        if not count:
            continue
        if seen + count >= rank:
            lower = LATENCY_BUCKETS[bucket - 1] if bucket > 0 else 0
            if bucket < len(LATENCY_BUCKETS):
                upper = LATENCY_BUCKETS[bucket]
            else:
                upper = max(lower, 2 * sums.get(bucket, 0) / count - lower)
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
    return float(LATENCY_BUCKETS[-1])


@dataclass
class Bucket:
    start: datetime
    delivered: int = 0
    failed: int = 0
    histogram: dict[int, int] = field(default_factory=dict)
    sums: dict[int, int] = field(default_factory=dict)

    def add(self, latency_bucket: int, count: int, latency_sum: int) -> None:
        if latency_bucket != FAILED_BUCKET:
            self.delivered += count
            self.histogram[latency_bucket] = self.histogram.get(latency_bucket, 0) + count
            self.sums[latency_bucket] = self.sums.get(latency_bucket, 0) + latency_sum
        else:
            self.failed += count


def bucket_starts(window: Window, now: datetime) -> list[datetime]:
    """The chart's bucket starts, on the local clock (on the hour, at 00:00/06:00 …), from the window's start."""
    local = timezone.localtime(now)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    steps_today = (local - midnight) // window.step
    last = midnight + steps_today * window.step
    first_needed = minute_of(now - window.span)
    starts = [last]
    while starts[-1] > first_needed:
        starts.append(starts[-1] - window.step)
    return list(reversed(starts))


def slot_expression(starts: list[datetime], step: timedelta) -> Expression:
    """Which chart bucket a rollup row's minute falls in, as arithmetic on the column where the database allows:
    a CASE over the bucket starts costs twice as much per row over 14 days of minutes."""
    origin, seconds = starts[0], int(step.total_seconds())
    column = f"{connection.ops.quote_name(DeliveryRollup._meta.db_table)}.{connection.ops.quote_name('minute')}"
    if connection.vendor == "sqlite":
        # julianday() is a float: a second's margin keeps a bucket's first minute inside that bucket.
        sql = f"CAST(((julianday({column}) - julianday(%s)) * 86400 + 1) / %s AS INTEGER)"
        return RawSQL(sql, (connection.ops.adapt_datetimefield_value(origin), seconds), output_field=IntegerField())
    if connection.vendor == "postgresql":
        sql = f"CAST(FLOOR(EXTRACT(EPOCH FROM ({column} - %s)) / %s) AS INTEGER)"
        return RawSQL(sql, (origin, seconds), output_field=IntegerField())
    whens = [When(minute__lt=start, then=Value(i - 1)) for i, start in enumerate(starts[1:], 1)]
    return Case(*whens, default=Value(len(starts) - 1), output_field=IntegerField())


def rollup_buckets(
    destination_ids: list[int], window: Window, now: datetime, chart: bool = True
) -> dict[int, list[Bucket]]:
    """Delivered and failed per destination and chart bucket (or one bucket for the window), with their latency
    histograms: one grouped query over the rollups' (destination, minute, …) key, a few hundred rows back."""
    starts = bucket_starts(window, now) if chart else [minute_of(now - window.span)]
    since = minute_of(now - window.span)
    rows = DeliveryRollup.objects.filter(destination_id__in=destination_ids, minute__gte=since)
    if chart:
        rows = rows.annotate(slot=slot_expression(starts, window.step))
    else:
        rows = rows.annotate(slot=Value(0, output_field=IntegerField()))
    # Not grouped by status: the latency bucket says it (FAILED_BUCKET for failures), and a text column in the
    # GROUP BY more than doubles the cost of 14 days of minutes.
    rows = (
        rows.values("destination_id", "slot", "latency_bucket")
        .annotate(n=Sum("count"), total=Sum("latency_ms_sum"))
        .order_by()
    )
    out = {d: [Bucket(start) for start in starts] for d in destination_ids}
    last = len(starts) - 1
    for row in rows:
        slot = min(max(row["slot"], 0), last)  # a DST change can shift the last minutes by an hour
        out[row["destination_id"]][slot].add(row["latency_bucket"], row["n"], row["total"])
    return out


@dataclass
class Summary:
    delivered: int = 0
    failed: int = 0
    p50: float | None = None
    p95: float | None = None
    mean: float | None = None

    @property
    def p50_text(self) -> str:
        return duration(self.p50) if self.p50 is not None else "-"

    @property
    def p95_text(self) -> str:
        return duration(self.p95) if self.p95 is not None else "-"

    @property
    def success_rate(self) -> float | None:
        done = self.delivered + self.failed
        return 100.0 * self.delivered / done if done else None


def summarise(buckets: list[Bucket]) -> Summary:
    histogram: dict[int, int] = {}
    sums: dict[int, int] = {}
    summary = Summary()
    for bucket in buckets:
        summary.delivered += bucket.delivered
        summary.failed += bucket.failed
        for key, count in bucket.histogram.items():
            histogram[key] = histogram.get(key, 0) + count
            sums[key] = sums.get(key, 0) + bucket.sums.get(key, 0)
    summary.p50 = percentile(histogram, sums, 0.5)
    summary.p95 = percentile(histogram, sums, 0.95)
    summary.mean = sum(sums.values()) / summary.delivered if summary.delivered else None
    return summary


def current_counts(destination_ids: list[int]) -> dict[int, dict[str, int]]:
    """Pending, in flight and retrying now, per destination (the (destination, status, next_attempt_at) index)."""
    counts: dict[int, dict[str, int]] = {d: {} for d in destination_ids}
    rows = (
        Delivery.objects.filter(destination_id__in=destination_ids, status__in=Delivery.WAITING)
        .values("destination_id", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in rows:
        counts[row["destination_id"]][row["status"]] = row["n"]
    return counts


def chart_data(buckets: list[Bucket], window: Window) -> dict[str, Any]:
    fmt = "%H:%M" if window.span <= timedelta(hours=24) else "%b %d %H:%M"
    p95 = [percentile(b.histogram, b.sums, 0.95) for b in buckets]
    return {
        "labels": [timezone.localtime(b.start).strftime(fmt) for b in buckets],
        "delivered": [b.delivered for b in buckets],
        "failed": [b.failed for b in buckets],
        "p95": [round(v) if v is not None else None for v in p95],
        "step": window.step_label,
    }


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
    check_permission(request)
    window = window_of(request, INDEX_WINDOWS)
    now = timezone.now()
    destinations = list(
        Destination.objects.only(
            "id", "name", "vendor", "enabled", "paused", "last_error_code", "last_error_at", "last_delivered_at"
        ).order_by("name")
    )
    ids = [d.pk for d in destinations]
    buckets = rollup_buckets(ids, window, now, chart=False)
    current = current_counts(ids)
    rows = []
    for destination in destinations:
        state, _ = state_of(destination)
        rows.append(
            {
                "destination": destination,
                "state": state,
                "summary": summarise(buckets[destination.pk]),
                "backlog": sum(current[destination.pk].values()),
                "url": reverse("admin:deliveries_delivery_event_delivery", args=[destination.pk])
                + f"?window={window.key}",
            }
        )
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Event Delivery",
        "opts": model_admin.opts,
        "window": window,
        "windows": windows_nav(window, INDEX_WINDOWS),
        "rows": rows,
    }
    return TemplateResponse(request, "admin/deliveries/event_delivery_index.html", context)


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
    check_permission(request)
    destination = get_object_or_404(Destination.objects.defer("credentials", "config", "mapping"), pk=destination_id)
    window = window_of(request)
    now = timezone.now()
    since = now - window.span
    buckets = rollup_buckets([destination.pk], window, now)[destination.pk]
    summary = summarise(buckets)
    current = current_counts([destination.pk])[destination.pk]
    filtered = Delivery.objects.filter(
        destination=destination, status=Delivery.Status.FILTERED, created_at__gte=since
    ).count()
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
        **model_admin.admin_site.each_context(request),
        "title": f"Event Delivery: {destination.name}",
        "opts": model_admin.opts,
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
        "filtered": filtered,
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
    }
    return TemplateResponse(request, "admin/deliveries/event_delivery.html", context)


def group_of(request: HttpRequest, destination: Destination, window: Window) -> Any:
    """The failed and retrying deliveries of one issue group (error code and message) in the window."""
    data = request.POST if request.method == "POST" else request.GET
    if "code" not in data or "message" not in data:
        raise Http404("Which issue? The link lost its error code and message.")
    since = timezone.now() - window.span
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
    check_permission(request)
    destination = get_object_or_404(Destination.objects.only("id", "name"), pk=destination_id)
    window = window_of(request)
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
                "delivery_url": reverse("admin:deliveries_delivery_change", args=[delivery.pk]),
                "debugger_url": optional_url("admin:deliveries_event_debugger_detail", args=[delivery.event_id])
                if show_events
                else "",
            }
        )
    context = {"samples": samples, "show_events": show_events, "destination": destination}
    return TemplateResponse(request, "admin/deliveries/event_delivery_samples.html", context)


def retry_view(request: HttpRequest, destination_id: int) -> HttpResponse:
    """Retry these: send every failed and retrying delivery of one issue group in the window again, now."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    check_permission(request)
    if not request.user.has_perm(RETRY_PERMISSION):
        raise PermissionDenied
    destination = get_object_or_404(Destination.objects.only("id", "name"), pk=destination_id)
    window = window_of(request)
    ids = list(group_of(request, destination, window).values_list("id", flat=True))
    count = 0
    with transaction.atomic():  # the engine kicks the destination once, on commit
        for start in range(0, len(ids), RETRY_CHUNK):
            count += retry_now(ids[start : start + RETRY_CHUNK])
    if count:
        messages.success(
            request, f"{count:,} deliver{'y' if count == 1 else 'ies'} to {destination.name} will be sent again now."
        )
    else:
        messages.info(request, "Nothing to retry: these deliveries were already sent or retried.")
    url = reverse("admin:deliveries_delivery_event_delivery", args=[destination.pk]) + f"?window={window.key}"
    return HttpResponseRedirect(url)

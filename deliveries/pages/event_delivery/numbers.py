"""Event Delivery's numbers: delivered, failed and latency summed from the rollups (engine/rollups.py) per chart
bucket in the database, their percentiles, and what waits now per destination.

Windows up to a day sum minutes and start on the minute; longer ones sum hours and start on the (UTC) hour: a few
hundred rows for two weeks where minutes would be tens of thousands, and still there when the minutes have been
purged after a few days. So "7 days" may reach up to 59 minutes further back than 7 days to the minute, and the minutes
from that same start give the same figures. Where the local offset is not whole hours (India, Nepal …) a chart
bucket's edge cuts an hour, which counts in the bucket its first minute is in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, models
from django.db.models import Case, Count, Expression, IntegerField, Q, Sum, Value, When
from django.db.models.expressions import RawSQL
from django.utils import timezone

from deliveries.engine.rollups import FAILED_BUCKET, LATENCY_BUCKETS, hour_of, minute_of
from deliveries.models import Delivery, DeliveryHourRollup, DeliveryRollup
from deliveries.pages.display import duration


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


# The index sums every destination's rollups: beyond a day those are hours, a few thousand rows for all of them.
INDEX_WINDOWS = tuple(WINDOWS)
MINUTES_UP_TO = timedelta(hours=24)  # longer windows read the hourly rollups


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
    first_needed = window_start(window, now)
    starts = [last]
    while starts[-1] > first_needed:
        starts.append(starts[-1] - window.step)
    return list(reversed(starts))


def slot_expression(
    starts: list[datetime], step: timedelta, model: type[models.Model] = DeliveryRollup, column: str = "minute"
) -> Expression:
    """Which chart bucket a rollup row's minute (or hour) falls in, as arithmetic on the column where the database
    allows: a CASE over the bucket starts costs twice as much per row over 14 days of minutes."""
    origin, seconds = starts[0], int(step.total_seconds())
    quoted = f"{connection.ops.quote_name(model._meta.db_table)}.{connection.ops.quote_name(column)}"
    if connection.vendor == "sqlite":
        # julianday() is a float: a second's margin keeps a bucket's first minute inside that bucket.
        sql = f"CAST(((julianday({quoted}) - julianday(%s)) * 86400 + 1) / %s AS INTEGER)"
        return RawSQL(sql, (connection.ops.adapt_datetimefield_value(origin), seconds), output_field=IntegerField())
    if connection.vendor == "postgresql":
        sql = f"CAST(FLOOR(EXTRACT(EPOCH FROM ({quoted} - %s)) / %s) AS INTEGER)"
        return RawSQL(sql, (origin, seconds), output_field=IntegerField())
    whens = [When(Q(**{f"{column}__lt": start}), then=Value(i - 1)) for i, start in enumerate(starts[1:], 1)]
    return Case(*whens, default=Value(len(starts) - 1), output_field=IntegerField())


def window_start(window: Window, now: datetime) -> datetime:
    """Where a window starts: on the minute up to a day, on the hour beyond (see the module's note)."""
    if window.span <= MINUTES_UP_TO:
        return minute_of(now - window.span)
    return hour_of(now - window.span)


def rollup_buckets(
    destination_ids: list[int], window: Window, now: datetime, chart: bool = True, hours: bool | None = None
) -> dict[int, list[Bucket]]:
    """Delivered and failed per destination and chart bucket (or one bucket for the window), with their latency
    histograms: one grouped query over the rollups' (destination, minute or hour, …) key, a few hundred rows back.
    Hours beyond a day unless `hours` says otherwise (the same figures, from many more rows)."""
    since = window_start(window, now)
    starts = bucket_starts(window, now) if chart else [since]
    if hours is None:
        hours = window.span > MINUTES_UP_TO
    model, column = (DeliveryHourRollup, "hour") if hours else (DeliveryRollup, "minute")
    rows = model.objects.filter(destination_id__in=destination_ids, **{f"{column}__gte": since})
    if chart:
        rows = rows.annotate(slot=slot_expression(starts, window.step, model, column))
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

"""Per-minute counts of delivered and failed outcomes, with a latency histogram: what Event Delivery and the
dashboard sum instead of counting millions of delivery rows.

The engine adds to them in the transaction that records the outcomes (see engine/record.py), so they never
disagree with the deliveries; `rebuild` recomputes them from the delivery rows (after a bulk load).
An outcome counts in the minute it happened: delivered at `delivered_at`, failed when it gave up. A failed
delivery that a retry or replay later delivers counts once as failed and once as delivered.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from django.db import connection, transaction
from django.db.models import Case, Count, IntegerField, Q, Sum, Value, When
from django.db.models.functions import Coalesce, TruncMinute

from deliveries.models import Delivery, DeliveryRollup

# Upper bounds (ms) of the latency buckets, from receivedAt to delivered (queueing and retries included).
LATENCY_BUCKETS: tuple[int, ...] = (
    25, 50, 100, 200, 350, 500, 750, 1_000, 1_500, 2_500, 5_000, 10_000, 30_000, 60_000,
    300_000, 900_000, 3_600_000, 14_400_000, 86_400_000,
)  # fmt: skip
FAILED_BUCKET = -1
OUTCOMES = Delivery.FINISHED


def latency_bucket(latency_ms: int | None) -> int:
    if latency_ms is None:
        return FAILED_BUCKET
    return bisect.bisect_left(LATENCY_BUCKETS, latency_ms)  # len(LATENCY_BUCKETS) = above the last bound


def bucket_bound(bucket: int) -> int:
    """The upper bound of a bucket in ms (the last, open, bucket reports its lower bound)."""
    return LATENCY_BUCKETS[min(bucket, len(LATENCY_BUCKETS) - 1)]


def minute_of(when: datetime) -> datetime:
    return when.replace(second=0, microsecond=0)


def add(outcomes: Iterable[tuple[int, datetime, str, int | None]]) -> None:
    """Count outcomes (destination id, when, status, latency ms or None), in the caller's transaction."""
    counts: Counter[tuple[int, datetime, str, int]] = Counter()
    sums: Counter[tuple[int, datetime, str, int]] = Counter()
    for destination_id, when, status, latency_ms in outcomes:
        bucket = latency_bucket(latency_ms) if status == Delivery.Status.DELIVERED else FAILED_BUCKET
        key = (destination_id, minute_of(when), status, bucket)
        counts[key] += 1
        sums[key] += latency_ms or 0
    if not counts:
        return
    table = connection.ops.quote_name(DeliveryRollup._meta.db_table)
    columns = ("destination_id", "minute", "status", "latency_bucket", "count", "latency_ms_sum")
    quoted = ", ".join(connection.ops.quote_name(c) for c in columns)
    key = ", ".join(connection.ops.quote_name(c) for c in columns[:4])
    count, total = (connection.ops.quote_name(c) for c in columns[4:])
    # An upsert that adds: two workers recording the same minute both count (SQLite >= 3.24, PostgreSQL).
    sql = (
        f"INSERT INTO {table} ({quoted}) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT ({key}) DO UPDATE SET "
        f"{count} = {table}.{count} + excluded.{count}, {total} = {table}.{total} + excluded.{total}"
    )
    adapt = connection.ops.adapt_datetimefield_value
    rows = [(d, adapt(m), s, b, n, sums[(d, m, s, b)]) for (d, m, s, b), n in sorted(counts.items())]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def _bucket_expression() -> Case:
    whens = [When(latency_ms__lte=bound, then=Value(i)) for i, bound in enumerate(LATENCY_BUCKETS)]
    return Case(*whens, default=Value(len(LATENCY_BUCKETS)), output_field=IntegerField())


def rebuild(destination_ids: Iterable[int] | None = None) -> int:
    """Recompute the rollups from the delivery rows (all destinations, or these); returns rows written."""
    deliveries = Delivery.objects.filter(is_test=False, status__in=OUTCOMES)
    rollups = DeliveryRollup.objects.all()
    if destination_ids is not None:
        ids = list(destination_ids)
        deliveries, rollups = deliveries.filter(destination_id__in=ids), rollups.filter(destination_id__in=ids)
    delivered = (
        deliveries.filter(status=Delivery.Status.DELIVERED, delivered_at__isnull=False)
        .annotate(minute_=TruncMinute("delivered_at"), bucket=_bucket_expression())
        .values("destination_id", "minute_", "bucket")
        .annotate(n=Count("id"), total=Coalesce(Sum("latency_ms"), 0))
        .order_by()
    )
    failed = (
        deliveries.filter(Q(status=Delivery.Status.FAILED))
        .annotate(minute_=TruncMinute("updated_at"), bucket=Value(FAILED_BUCKET, output_field=IntegerField()))
        .values("destination_id", "minute_", "bucket")
        .annotate(n=Count("id"), total=Value(0, output_field=IntegerField()))
        .order_by()
    )
    written = 0
    with transaction.atomic():
        rollups.delete()
        for status, query in ((Delivery.Status.DELIVERED, delivered), (Delivery.Status.FAILED, failed)):
            batch = [
                DeliveryRollup(
                    destination_id=row["destination_id"],
                    minute=row["minute_"],
                    status=status,
                    latency_bucket=row["bucket"],
                    count=row["n"],
                    latency_ms_sum=row["total"],
                )
                for row in query.iterator(chunk_size=5000)
            ]
            DeliveryRollup.objects.bulk_create(batch, batch_size=2000)
            written += len(batch)
    return written

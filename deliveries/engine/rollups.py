"""Per-minute and per-hour counts of delivered and failed outcomes, with a latency histogram: what Event Delivery
and the dashboard sum instead of counting millions of delivery rows (minutes up to a day, hours beyond: the
minutes are purged after a few days, the hours kept for a year).

The engine adds to both in the transaction that records the outcomes (see engine/record.py), so they never
disagree with the deliveries or with each other; `rebuild` recomputes them from the delivery rows (after a bulk
load).
An outcome counts in the minute it happened: delivered at `delivered_at`, failed when it gave up. A failed
delivery that a retry or replay later delivers counts once as failed and once as delivered.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, models, transaction
from django.db.models import Min

from deliveries.models import Delivery, DeliveryHourRollup, DeliveryRollup

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


def hour_of(when: datetime) -> datetime:
    """The UTC hour a moment falls in (a local hour is not an UTC one where the offset is not whole hours)."""
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.replace(minute=0, second=0, microsecond=0)


Key = tuple[int, datetime, str, int]


def add(outcomes: Iterable[tuple[int, datetime, str, int | None]]) -> None:
    """Count outcomes (destination id, when, status, latency ms or None) in their minute and their hour, in the
    caller's transaction: one upsert per table, so the two never disagree."""
    minutes: Counter[Key] = Counter()
    hours: Counter[Key] = Counter()
    sums: Counter[Key] = Counter()
    hour_sums: Counter[Key] = Counter()
    for destination_id, when, status, latency_ms in outcomes:
        bucket = latency_bucket(latency_ms) if status == Delivery.Status.DELIVERED else FAILED_BUCKET
        minute = (destination_id, minute_of(when), status, bucket)
        hour = (destination_id, hour_of(when), status, bucket)
        minutes[minute] += 1
        hours[hour] += 1
        sums[minute] += latency_ms or 0
        hour_sums[hour] += latency_ms or 0
    if not minutes:
        return
    _upsert(DeliveryRollup, "minute", minutes, sums)
    _upsert(DeliveryHourRollup, "hour", hours, hour_sums)


def _upsert(model: type[models.Model], period: str, counts: Counter[Key], sums: Counter[Key]) -> None:
    table = connection.ops.quote_name(model._meta.db_table)
    columns = ("destination_id", period, "status", "latency_bucket", "count", "latency_ms_sum")
    quoted = ", ".join(connection.ops.quote_name(c) for c in columns)
    key = ", ".join(connection.ops.quote_name(c) for c in columns[:4])
    count, total = (connection.ops.quote_name(c) for c in columns[4:])
    # An upsert that adds: two workers recording the same minute both count (SQLite >= 3.24, PostgreSQL).
    sql = (
        f"INSERT INTO {table} ({quoted}) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT ({key}) DO UPDATE SET "
        f"{count} = {table}.{count} + excluded.{count}, {total} = {table}.{total} + excluded.{total}"
    )
    adapt = connection.ops.adapt_datetimefield_value
    # Sorted: concurrent transactions take the rows' locks in one order (PostgreSQL would deadlock otherwise).
    rows = [(d, adapt(m), s, b, n, sums[(d, m, s, b)]) for (d, m, s, b), n in sorted(counts.items())]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


# Rebuilding, in the database: INSERT … SELECT grouped by minute, then the hours from the minutes -------------

_STRFTIME = {"minute": "%Y-%m-%d %H:%M:00", "hour": "%Y-%m-%d %H:00:00"}


def _truncated(column: str, unit: str) -> tuple[str, list[Any]]:
    """SQL for a datetime column cut to its minute or hour (UTC), and its parameters."""
    if connection.vendor == "sqlite":  # Django keeps 'YYYY-MM-DD HH:MM:SS[.ffffff]' text in UTC
        return f"strftime(%s, {column})", [_STRFTIME[unit]]
    if connection.vendor == "postgresql":  # Django sets the connection's time zone to UTC
        return f"date_trunc('{unit}', {column})", []
    raise NotImplementedError(f"rollups.rebuild() has no {unit} expression for {connection.vendor}")


def _bucket_sql() -> str:
    whens = " ".join(f"WHEN latency_ms <= {bound} THEN {i}" for i, bound in enumerate(LATENCY_BUCKETS))
    return f"CASE {whens} ELSE {len(LATENCY_BUCKETS)} END"


def _among(ids: list[int] | None) -> tuple[str, list[Any]]:
    """A WHERE clause's "and of these destinations" (nothing for all of them), and its parameters."""
    if ids is None:
        return "", []
    return f" AND destination_id IN ({', '.join(['%s'] * len(ids)) or 'NULL'})", list(ids)


def _insert_minutes(ids: list[int] | None) -> int:
    """The minute rollups of the delivery rows (delivered in the minute of delivered_at, failed in the minute they
    gave up), grouped in the database: no row of millions passes through Python."""
    table = DeliveryRollup._meta.db_table
    deliveries = Delivery._meta.db_table
    among, among_params = _among(ids)
    delivered_minute, delivered_params = _truncated("delivered_at", "minute")
    failed_minute, failed_params = _truncated("updated_at", "minute")
    columns = "destination_id, minute, status, latency_bucket, count, latency_ms_sum"
    written = 0
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({columns}) "
            f"SELECT destination_id, {delivered_minute}, %s, {_bucket_sql()}, COUNT(*), COALESCE(SUM(latency_ms), 0) "
            f"FROM {deliveries} WHERE status = %s AND delivered_at IS NOT NULL AND is_test = %s{among} "
            f"GROUP BY 1, 2, 4",
            [*delivered_params, Delivery.Status.DELIVERED, Delivery.Status.DELIVERED, False, *among_params],
        )
        written += cursor.rowcount
        cursor.execute(
            f"INSERT INTO {table} ({columns}) "
            f"SELECT destination_id, {failed_minute}, %s, %s, COUNT(*), 0 "
            f"FROM {deliveries} WHERE status = %s AND is_test = %s{among} GROUP BY 1, 2",
            [*failed_params, Delivery.Status.FAILED, FAILED_BUCKET, Delivery.Status.FAILED, False, *among_params],
        )
        written += cursor.rowcount
    return written


def _insert_hours(ids: list[int] | None, since: datetime) -> int:
    """The hour rollups summed from the minute rollups from `since` (a whole hour) on."""
    among, among_params = _among(ids)
    hour, hour_params = _truncated("minute", "hour")
    columns = "destination_id, hour, status, latency_bucket, count, latency_ms_sum"
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {DeliveryHourRollup._meta.db_table} ({columns}) "
            f"SELECT destination_id, {hour}, status, latency_bucket, SUM(count), SUM(latency_ms_sum) "
            f"FROM {DeliveryRollup._meta.db_table} WHERE minute >= %s{among} GROUP BY 1, 2, 3, 4",
            [*hour_params, connection.ops.adapt_datetimefield_value(since), *among_params],
        )
        return cursor.rowcount


def rebuild(destination_ids: Iterable[int] | None = None) -> int:
    """Recompute the rollups from the delivery rows (all destinations, or these); returns rows written (minutes and
    hours).

    The minutes are recomputed whole. The hours are recomputed from the oldest delivery kept on: the hours before
    it counted deliveries the retention purge has since deleted, so they stay as they are, and so does the hour the
    purge cut through (when older hours show that one was cut).
    """
    ids = None if destination_ids is None else list(destination_ids)
    minutes = DeliveryRollup.objects.all()
    hours = DeliveryHourRollup.objects.all()
    if ids is not None:
        minutes, hours = minutes.filter(destination_id__in=ids), hours.filter(destination_id__in=ids)
    with transaction.atomic():
        minutes.delete()
        written = _insert_minutes(ids)
        oldest = minutes.aggregate(oldest=Min("minute"))["oldest"]
        if oldest is None:
            return written
        since = hour_of(oldest)
        if hours.filter(hour__lt=since).exists():
            since += timedelta(hours=1)
        hours.filter(hour__gte=since).delete()
        written += _insert_hours(ids, since)
    return written

"""The purge: rows past their retention (deliveries/models/retention.py) are deleted in small chunks by primary-key
range, and attempts' exchanges past theirs are cut down to a summary, so that no transaction holds the database's
write lock (SQLite has one for the whole file) longer than RETENTION_CHUNK_MS and ingest goes on meanwhile.

What goes is a list of table specs (TABLES), one entry per kind of row. Each is walked from a cursor
(RollupCursor "purge:<name>") up to the id of the newest row older than its cut-off, found by bisecting the
primary key (ids grow with time). A chunk is `id BETWEEN a AND b`; its size adapts to how long the last chunk held
the lock. A delivery still waiting (pending, retrying, in flight) is never deleted, nor is an event that still has
a delivery; a delivery's attempts go first, in the same transaction, by delivery-id range (no cascade collected in
memory). When a walk reaches its boundary the next one starts at the table's first id again, so rows kept because
they waited are looked at again once they have finished.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone

from deliveries.engine.purge_summary import summarise_chunk
from deliveries.models import Attempt, Delivery, DeliveryRollup, Event, RetentionPolicy, RollupCursor

MIN_CHUNK, MAX_CHUNK, FIRST_CHUNK = 10, 200_000, 500  # ids per chunk
_chunks: dict[str, int] = {}  # each table's chunk size, as this process last tuned it
_next_purge = 0.0  # time.monotonic() when the sweeper purges next in this process


def _waiting() -> str:
    return ", ".join(f"'{status}'" for status in Delivery.WAITING)


def sql_name(model: type[models.Model], column: str = "") -> str:
    table = connection.ops.quote_name(model._meta.db_table)
    return f"{table}.{connection.ops.quote_name(column)}" if column else table


def _schema_folded() -> int | None:
    """Accepted events after the Schema page's fold cursor are not counted yet: they stay until they are."""
    return RollupCursor.objects.filter(name="schema").values_list("position", flat=True).first() or 0


@dataclass(frozen=True)
class Table:
    """One kind of row the purge removes: which rows (`where`), by which column's age (`time`, and `also_older`),
    never those `kept` matches, and the rows of `children` (model, foreign key column) that go first."""

    name: str
    label: str
    kind: str  # the RetentionPolicy kind whose days apply
    model: type[models.Model]
    time: str
    where: Callable[[], str] = lambda: ""
    kept: Callable[[], str] = lambda: ""
    also_older: tuple[str, ...] = ()  # columns that must be older than the cut-off too (a replayed delivery stays)
    children: tuple[tuple[type[models.Model], str], ...] = ()
    ordered: bool = True  # ids grow with `time`: the boundary is bisected (else the whole table is walked)
    summarise: bool = False  # cut the attempts' exchanges to a summary instead of deleting (one walk, never again)
    cap: Callable[[], int | None] | None = None  # no id above this goes (None: no cap)

    @property
    def cursor(self) -> str:
        return f"purge:{self.name}"

    def condition(self, cutoff: datetime) -> tuple[str, list[Any]]:
        """The rows of this spec older than the cut-off (SQL on the table's qualified columns, and its params)."""
        value = connection.ops.adapt_datetimefield_value(cutoff)
        parts = [f"{sql_name(self.model, column)} < %s" for column in (self.time, *self.also_older)]
        params = [value] * len(parts)
        if self.where():
            parts.append(self.where())
        return " AND ".join(parts), params

    def doomed(self, cutoff: datetime) -> tuple[str, list[Any]]:
        """The rows of this spec the purge deletes: older than the cut-off and not kept."""
        sql, params = self.condition(cutoff)
        return (f"{sql} AND NOT ({self.kept()})" if self.kept() else sql), params


def _has_delivery() -> str:
    return (
        f"EXISTS (SELECT 1 FROM {sql_name(Delivery)} WHERE {sql_name(Delivery, 'event_id')} = {sql_name(Event, 'id')})"
    )


def _status(model: type[models.Model], value: str) -> Callable[[], str]:
    return lambda: f"{sql_name(model, 'status')} = '{value}'"


# In this order: deliveries before the events they belong to.
TABLES: list[Table] = [
    Table(
        "deliveries",
        "Deliveries",
        "deliveries",
        Delivery,
        "created_at",
        where=lambda: f"NOT {sql_name(Delivery, 'is_test')}",
        kept=lambda: f"{sql_name(Delivery, 'status')} IN ({_waiting()})",
        also_older=("updated_at",),
        children=((Attempt, "delivery_id"),),
    ),
    Table(
        "test_deliveries",
        "Test sends (deliveries)",
        "test_sends",
        Delivery,
        "created_at",
        where=lambda: sql_name(Delivery, "is_test"),
        kept=lambda: f"{sql_name(Delivery, 'status')} IN ({_waiting()})",
        also_older=("updated_at",),
        children=((Attempt, "delivery_id"),),
    ),
    Table(
        "events",
        "Events",
        "events",
        Event,
        "received_at",
        where=_status(Event, Event.Status.ACCEPTED),
        kept=_has_delivery,
        cap=_schema_folded,
    ),
    Table(
        "test_events", "Test sends (events)", "test_sends", Event, "received_at", _status(Event, "test"), _has_delivery
    ),
    Table(
        "rejected_events",
        "Rejected events",
        "rejected_events",
        Event,
        "received_at",
        _status(Event, Event.Status.REJECTED),
        _has_delivery,
    ),
    Table("exchange_bodies", "Attempts' exchanges", "exchange_bodies", Attempt, "started_at", summarise=True),
    Table("minute_rollups", "Per-minute delivery counts", "minute_rollups", DeliveryRollup, "minute", ordered=False),
]


@dataclass
class Done:
    """What a purge did to one table."""

    table: Table
    cutoff: datetime
    days: int
    rows: int = 0  # deleted (or summarised)
    children: int = 0  # rows of its children deleted with them (attempts)
    chunks: int = 0
    finished: bool = False  # the walk reached the boundary: nothing more is due now


@dataclass
class Purge:
    """What one call did: per table, the longest transaction and how long it all took."""

    done: list[Done] = field(default_factory=list)
    longest_ms: float = 0.0
    over_bound: int = 0  # chunks that held the lock longer than RETENTION_CHUNK_MS
    seconds: float = 0.0

    @property
    def finished(self) -> bool:
        return all(d.finished for d in self.done)

    @property
    def chunks(self) -> int:
        return sum(d.chunks for d in self.done)

    @property
    def rows(self) -> int:
        return sum(d.rows + d.children for d in self.done if not d.table.summarise)


def cutoffs(now: datetime | None = None, tables: list[Table] | None = None) -> dict[str, tuple[datetime, int]]:
    """Each table's cut-off (rows older than this are due) and the days kept."""
    now = now or timezone.now()
    days = RetentionPolicy.in_force()
    return {t.name: (now - timedelta(days=days[t.kind]), days[t.kind]) for t in tables or TABLES}


def purge(
    seconds: float | None = None,
    now: datetime | None = None,
    tables: list[Table] | None = None,
    from_start: bool = False,
) -> Purge:
    """Delete (or summarise) what is due, a chunk per transaction; with `seconds`, no chunk starts after that long
    (the sweeper's time box); without, until every table is done. `from_start`: walk each table from its first id."""
    started = time.monotonic()
    deadline = started + seconds if seconds is not None else None
    report = Purge()
    tables = tables or TABLES
    limits = cutoffs(now, tables)
    for table in tables:
        done = Done(table, *limits[table.name])
        report.done.append(done)
        if deadline is None or time.monotonic() < deadline or not report.chunks:  # each call does some work
            _walk(table, done, report, deadline, from_start)
    report.seconds = time.monotonic() - started
    return report


def purge_if_due() -> int:
    """The sweeper's purge: time-boxed, at most every RETENTION_PURGE_EVERY_SECONDS; returns the rows deleted."""
    global _next_purge
    if time.monotonic() < _next_purge:
        return 0
    _next_purge = time.monotonic() + settings.RETENTION_PURGE_EVERY_SECONDS
    return purge(seconds=settings.RETENTION_PURGE_BUDGET_SECONDS).rows


def boundary(table: Table, cutoff: datetime) -> int | None:
    """The id of the newest row older than the cut-off (ids grow with time: bisected on the primary key), or None."""
    rows = table.model.objects.order_by("id").values_list("id", table.time)
    first, last = rows.first(), rows.last()
    if first is None or (table.ordered and first[1] >= cutoff):
        return None
    if not table.ordered or last[1] < cutoff:
        return last[0]
    low, high = first[0], last[0]  # low: an old row; every row from high up: new
    while high - low > 1:
        middle = (low + high) // 2
        row_id, when = rows.filter(id__gte=middle).first()
        if when < cutoff:
            low = row_id
        else:
            high = middle
    return low


def _walk(table: Table, done: Done, report: Purge, deadline: float | None, from_start: bool) -> None:
    top = boundary(table, done.cutoff)
    cap = table.cap() if table.cap else None
    if top is not None and cap is not None:
        top = min(top, cap)
    saved = RollupCursor.objects.filter(name=table.cursor).values_list("position", flat=True).first() or 0
    if from_start and not table.summarise:  # summarised attempts stay summarised: that walk never starts over
        saved = 0
    first = table.model.objects.order_by("id").values_list("id", flat=True).first()
    position = max(saved, (first or 1) - 1)
    bound = settings.RETENTION_CHUNK_MS / 1000
    while top is not None and position < top:
        if deadline is not None and time.monotonic() >= deadline and report.chunks:
            return
        size = _chunks.get(table.name, FIRST_CHUNK)
        end = min(position + size, top)
        took = _chunk(table, done, position + 1, end)
        done.chunks += 1
        report.longest_ms = max(report.longest_ms, took * 1000)
        report.over_bound += took > bound
        # Aim at half the bound: a chunk of the same size can meet more rows, or a busier disk.
        factor = min(2.0, max(0.5, (bound / 2) / max(took, 1e-4)))
        _chunks[table.name] = min(MAX_CHUNK, max(MIN_CHUNK, int(size * factor)))
        position = end
    done.finished = True
    if (saved or done.chunks) and not table.summarise:
        with transaction.atomic():
            _save_cursor(table.cursor, 0)  # the next walk starts over at the first id


def _chunk(table: Table, done: Done, low: int, high: int) -> float:
    """One transaction: the chunk's rows (and their children) deleted, the cursor moved; returns how long the
    write lock was held."""
    if table.summarise:
        rows, took = summarise_chunk(low, high, done.cutoff, done.days, lambda end: _save_cursor(table.cursor, end))
        done.rows += rows
        return took
    doomed, params = table.doomed(done.cutoff)
    ids = f"{sql_name(table.model, 'id')} BETWEEN %s AND %s"
    with transaction.atomic():
        began = time.perf_counter()  # BEGIN IMMEDIATE has returned: the write lock is ours from here
        with connection.cursor() as cursor:
            for child, column in table.children:
                key = sql_name(child, column)
                cursor.execute(
                    f"DELETE FROM {sql_name(child)} WHERE {key} BETWEEN %s AND %s AND {key} IN "
                    f"(SELECT {sql_name(table.model, 'id')} FROM {sql_name(table.model)} WHERE {ids} AND {doomed})",
                    [low, high, low, high, *params],
                )
                done.children += max(cursor.rowcount, 0)
            cursor.execute(f"DELETE FROM {sql_name(table.model)} WHERE {ids} AND {doomed}", [low, high, *params])
            done.rows += max(cursor.rowcount, 0)
        _save_cursor(table.cursor, high)
    return time.perf_counter() - began


def _save_cursor(name: str, position: int) -> None:
    if not RollupCursor.objects.filter(name=name).update(position=position):
        RollupCursor.objects.create(name=name, position=position)

"""The purge: rows past their retention (deliveries/models/retention.py) are deleted in small chunks by primary-key
range, and attempts' exchanges past theirs are cut down to a summary, so that no transaction holds the database's
write lock (SQLite has one for the whole file) longer than RETENTION_CHUNK_MS and ingest goes on meanwhile.

What goes is a list of table specs (TABLES in purge_tables.py), one entry per kind of row. Each is walked from a cursor
(RollupCursor "purge:<name>") up to the id of the newest row older than its cut-off, found by bisecting the
primary key (ids grow with time). A chunk is `id BETWEEN a AND b`; its size adapts to how long the last chunk held
the lock. A delivery still waiting (pending, retrying, in flight) is never deleted, nor is an event that still has
a delivery; a delivery's attempts go first, in the same transaction, by delivery-id range (no cascade collected in
memory). When a walk reaches its boundary the next one starts at the table's first id again, so rows kept because
they waited are looked at again once they have finished.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from deliveries.engine.purge_summary import summarise_chunk
from deliveries.engine.purge_tables import TABLES, Table, sql_name
from deliveries.models import RetentionPolicy, RollupCursor

MIN_CHUNK, MAX_CHUNK, FIRST_CHUNK = 10, 200_000, 100  # ids per chunk; a process starts small (its cache is cold)
_chunks: dict[str, int] = {}  # each table's chunk size, as this process last tuned it
_next_purge = 0.0  # time.monotonic() when the sweeper purges next in this process
CATCH_UP_SHARE = 0.25  # while more is due, the sweeper purges at most this share of the time
log = logging.getLogger("cdphub.engine")


@dataclass
class Done:
    """What a purge did to one table."""

    table: Table
    cutoff: datetime
    days: int
    rows: int = 0  # deleted (or summarised)
    children: int = 0  # rows of its children deleted with them (attempts)
    chunks: int = 0
    waited: float = 0.0  # seconds spent waiting for the write lock
    finished: bool = False  # the walk reached the boundary: nothing more is due now


@dataclass
class Purge:
    """What one call did: per table, the longest transaction and how long it all took."""

    done: list[Done] = field(default_factory=list)
    longest_ms: float = 0.0
    chunk_ms: list[float] = field(default_factory=list)  # how long each chunk held the write lock
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
    with _checkpoints_by_hand():
        for table in tables:
            done = Done(table, *limits[table.name])
            report.done.append(done)
            if deadline is None or time.monotonic() < deadline or not report.chunks:  # each call does some work
                _walk(table, done, report, deadline, from_start)
    report.seconds = time.monotonic() - started
    return report


def purge_if_due() -> Purge | None:
    """The sweeper's purge: a time-boxed call every RETENTION_PURGE_EVERY_SECONDS; while more is due, again once
    the worker has spent CATCH_UP_SHARE of its time on it (a backlog goes, ingest hardly notices)."""
    global _next_purge
    if time.monotonic() < _next_purge:
        return None
    budget = settings.RETENTION_PURGE_BUDGET_SECONDS
    report = purge(seconds=budget)
    busy = report.seconds - sum(d.waited for d in report.done)  # waiting for the write lock is not work
    pause = settings.RETENTION_PURGE_EVERY_SECONDS if report.finished else busy / CATCH_UP_SHARE
    _next_purge = time.monotonic() + pause
    if report.rows:
        log.info(
            "purge: %s rows deleted (%s) in %.2f s, longest chunk %.0f ms%s",
            f"{report.rows:,}",
            ", ".join(f"{d.table.name} {d.rows + d.children:,}" for d in report.done if d.rows),
            report.seconds,
            report.longest_ms,
            "" if report.finished else "; more is due",
        )
    return report


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
        _checkpoint()
        done.chunks += 1
        report.chunk_ms.append(took * 1000)
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
    statements = deletes(table, done.cutoff, low, high)
    asked = time.perf_counter()
    with transaction.atomic():
        began = time.perf_counter()  # BEGIN IMMEDIATE has returned: the write lock is ours from here
        done.waited += began - asked  # behind ingest's transactions: no work, and no one else's time
        with connection.cursor() as cursor:
            for number, (sql, params) in enumerate(statements, 1):
                cursor.execute(sql, params)
                if number < len(statements):
                    done.children += max(cursor.rowcount, 0)
                else:
                    done.rows += max(cursor.rowcount, 0)
        _save_cursor(table.cursor, high)
    return time.perf_counter() - began


def deletes(table: Table, cutoff: datetime, low: int, high: int) -> list[tuple[str, list[Any]]]:
    """A chunk's DELETE statements: its children's (by the foreign key's range), then its own rows'."""
    doomed, params = table.doomed(cutoff)
    ids = f"{sql_name(table.model, 'id')} BETWEEN %s AND %s"
    statements = []
    for child, column in table.children:
        key = sql_name(child, column)
        parents = f"SELECT {sql_name(table.model, 'id')} FROM {sql_name(table.model)} WHERE {ids} AND {doomed}"
        sql = f"DELETE FROM {sql_name(child)} WHERE {key} BETWEEN %s AND %s AND {key} IN ({parents})"
        statements.append((sql, [low, high, low, high, *params]))
    statements.append((f"DELETE FROM {sql_name(table.model)} WHERE {ids} AND {doomed}", [low, high, *params]))
    return statements


@contextmanager
def _checkpoints_by_hand() -> Iterator[None]:
    """On SQLite, a commit that fills the write-ahead log past 1,000 pages copies it into the database file before
    it returns (after the write lock is released). The purge checkpoints after each chunk instead, so that a chunk's
    time is the lock's, and the copy is its own work rather than the next ingest request's."""
    if connection.vendor != "sqlite":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_autocheckpoint")
        pages = cursor.fetchone()[0]
        cursor.execute("PRAGMA wal_autocheckpoint = 0")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA wal_autocheckpoint = {int(pages)}")


def _checkpoint() -> None:
    if connection.vendor == "sqlite" and not connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")  # never waits for writers, never blocks them


def _save_cursor(name: str, position: int) -> None:
    if not RollupCursor.objects.filter(name=name).update(position=position):
        RollupCursor.objects.create(name=name, position=position)

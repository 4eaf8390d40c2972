"""The purge's table specs: each kind of row it removes, which rows, by which column's age, what stays whatever its
age, and what goes first. One entry per table: a new table to purge is one more entry in TABLES."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, models

from deliveries.models import Attempt, Delivery, DeliveryHourRollup, DeliveryRollup, Event, RollupCursor


def _waiting() -> str:
    return ", ".join(f"'{status}'" for status in Delivery.WAITING)


def sql_name(model: type[models.Model], column: str = "") -> str:
    table = connection.ops.quote_name(model._meta.db_table)
    return f"{table}.{connection.ops.quote_name(column)}" if column else table


def row_test(model: type[models.Model], column: str) -> str:
    """A column tested row by row within a chunk. On SQLite a unary + keeps the planner off the column's indexes, so
    the chunk's primary-key range drives the query: on (status, received_at) every chunk would read every old row."""
    return ("+" if connection.vendor == "sqlite" else "") + sql_name(model, column)


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
        parts = [f"{row_test(self.model, column)} < %s" for column in (self.time, *self.also_older)]
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
    return lambda: f"{row_test(model, 'status')} = '{value}'"


# In this order: deliveries before the events they belong to.
TABLES: list[Table] = [
    Table(
        "deliveries",
        "Deliveries",
        "deliveries",
        Delivery,
        "created_at",
        where=lambda: f"NOT {row_test(Delivery, 'is_test')}",
        kept=lambda: f"{row_test(Delivery, 'status')} IN ({_waiting()})",
        also_older=("updated_at",),
        children=((Attempt, "delivery_id"),),
    ),
    Table(
        "test_deliveries",
        "Test sends (deliveries)",
        "test_sends",
        Delivery,
        "created_at",
        where=lambda: row_test(Delivery, "is_test"),
        kept=lambda: f"{row_test(Delivery, 'status')} IN ({_waiting()})",
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
    Table("hourly_rollups", "Per-hour delivery counts", "hourly_rollups", DeliveryHourRollup, "hour", ordered=False),
]

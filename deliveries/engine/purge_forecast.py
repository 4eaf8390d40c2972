"""What a purge would remove now, without removing anything (`manage.py purge --dry-run`): per table the rows due,
the oldest and newest of them, the cut-off, and the rows that stay although old (deliveries still waiting, events
whose deliveries stay). Counting old rows reads them all: for the command, never for a page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, models
from django.db.models import BooleanField, Count, Max, Min
from django.db.models.expressions import RawSQL

from deliveries.engine.purge import cutoffs
from deliveries.engine.purge_tables import TABLES, Table, sql_name
from deliveries.models import Delivery, Event, RollupCursor


@dataclass
class Forecast:
    table: Table
    cutoff: datetime
    days: int
    rows: int  # would go (or, for exchanges, be summarised)
    children: int  # their attempts, going with them
    oldest: datetime | None
    newest: datetime | None
    kept: int  # old, but staying: deliveries still waiting, events whose deliveries stay
    unfolded: int = 0  # old accepted events the Schema page has not counted yet: they go once it has


def forecast(now: datetime | None = None, tables: list[Table] | None = None) -> list[Forecast]:
    tables = tables or TABLES
    limits = cutoffs(now, tables)
    # An event stays while any delivery of it stays: one no delivery spec would delete.
    doomed = [t.doomed(limits[t.name][0]) for t in tables if t.model is Delivery]
    delivery_goes = " OR ".join(f"({sql})" for sql, _ in doomed) or "FALSE"
    delivery_params = [p for _, params in doomed for p in params]
    of_event = f"{sql_name(Delivery, 'event_id')} = {sql_name(Event, 'id')}"
    stays = f"EXISTS (SELECT 1 FROM {sql_name(Delivery)} WHERE {of_event} AND NOT ({delivery_goes}))"
    return [_table(t, *limits[t.name], stays if t.model is Event else "", delivery_params) for t in tables]


def _table(table: Table, cutoff: datetime, days: int, event_stays: str, event_params: list[Any]) -> Forecast:
    sql, params = table.condition(cutoff)
    old = table.model.objects.filter(RawSQL(sql, params, output_field=BooleanField()))
    if table.summarise:  # the attempts behind the walk's cursor are summarised already
        done = RollupCursor.objects.filter(name=table.cursor).values_list("position", flat=True).first() or 0
        old = old.filter(id__gt=done)
    if event_stays:
        kept_sql, kept_params = event_stays, event_params
    else:
        kept_sql, kept_params = table.kept(), []
    kept = old.filter(RawSQL(kept_sql, kept_params, output_field=BooleanField())) if kept_sql else old.none()
    going = old.exclude(RawSQL(kept_sql, kept_params, output_field=BooleanField())) if kept_sql else old
    unfolded = 0
    cap = table.cap() if table.cap else None
    if cap is not None:
        unfolded = going.filter(id__gt=cap).count()
        going = going.filter(id__lte=cap)
    found = going.aggregate(n=Count("id"), oldest=Min(table.time), newest=Max(table.time))
    children = sum(_children(table, cutoff, child, column) for child, column in table.children)
    return Forecast(table, cutoff, days, found["n"], children, found["oldest"], found["newest"], kept.count(), unfolded)


def _children(table: Table, cutoff: datetime, child: type[models.Model], column: str) -> int:
    """The child rows (attempts) of the rows that would go; in SQL: the ORM would rename the table in a subquery."""
    doomed, params = table.doomed(cutoff)
    parent = f"SELECT {sql_name(table.model, 'id')} FROM {sql_name(table.model)} WHERE {doomed}"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {sql_name(child)} WHERE {sql_name(child, column)} IN ({parent})", params)
        return cursor.fetchone()[0]

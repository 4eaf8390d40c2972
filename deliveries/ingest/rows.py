"""The rows a request writes: which Event columns come from a payload, its outbox rows, and the INSERTs for them.

SQLite has one writer at a time, so everything a request writes is built before its transaction takes the
write lock, and the transaction holds only INSERT statements. They are plain multi-row INSERTs built from
the models' fields rather than bulk_create, which spent ~100 us per event preparing values field by field
(three times the time of the insert itself); payloads are serialised with orjson on SQLite, where the JSON
column is text. Fields an INSERT does not list get their model default, so a new field with a default
needs no change here. When outbox rows need their events' ids, the events' INSERT returns them
(INSERT ... RETURNING, SQLite >= 3.35); without destinations it returns nothing, which keeps the write lock
shorter: Python's sqlite3 hands the GIL to other threads and waits to get it back for every returned row.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

import orjson
from django.db import models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from deliveries.engine.routing import Decision, decide
from deliveries.ingest.normalisation import Rejection, email_of
from deliveries.models import Delivery, Event
from integrations.models import Destination, Source
from integrations.spec import EVENT_TYPES

MAX_ROWS_PER_INSERT = 500
REJECTED_PAYLOAD_EXCERPT = 2048


class _Insert:
    """INSERT statements for one model: values per row for `varying` fields, its default for every other."""

    def __init__(self, model: type[models.Model], varying: tuple[str, ...]) -> None:
        fields = [f for f in model._meta.concrete_fields if not f.primary_key]
        by_name = {f.attname: f for f in fields}
        self.table = model._meta.db_table
        self.varying = [by_name[name] for name in varying]
        self.constant = [f for f in fields if f.attname not in varying]
        self._sql: dict[str, tuple[str, str]] = {}  # database vendor -> "INSERT ... VALUES ", "(%s, ...)"

    def constants(self, conn: BaseDatabaseWrapper, now: datetime, **values: Any) -> tuple[Any, ...]:
        """The values of the fields not listed: their defaults (`now` for auto_now ones), or `values` by attname."""
        return tuple(
            f.get_db_prep_save(
                values[f.attname]
                if f.attname in values
                else now
                if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
                else f.get_default(),
                conn,
            )
            for f in self.constant
        )

    def sql(self, conn: BaseDatabaseWrapper, count: int, returning: str) -> str:
        if conn.vendor not in self._sql:
            quote = conn.ops.quote_name
            columns = ", ".join(quote(f.column) for f in self.varying + self.constant)
            row = "(" + ", ".join(["%s"] * (len(self.varying) + len(self.constant))) + ")"
            self._sql[conn.vendor] = (f"INSERT INTO {quote(self.table)} ({columns}) VALUES ", row)
        start, row = self._sql[conn.vendor]
        return start + ", ".join([row] * count) + (f" RETURNING {returning}" if returning else "")

    def run(self, rows: list[tuple[Any, ...]], constants: tuple[Any, ...], returning: str = "") -> list[tuple]:
        """Insert `rows` (values of the varying fields, ready for the database); the RETURNING rows."""
        conn = transaction.get_connection()
        width = len(self.varying) + len(self.constant)
        per_statement = max(1, min(max_params(conn) // width, MAX_ROWS_PER_INSERT))
        returned: list[tuple] = []
        with conn.cursor() as cursor:
            for start in range(0, len(rows), per_statement):
                chunk = rows[start : start + per_statement]
                cursor.execute(
                    self.sql(conn, len(chunk), returning), [value for row in chunk for value in (*row, *constants)]
                )
                if returning:
                    returned += cursor.fetchall()
        return returned


EVENT_FIELDS = (
    "source_id",
    "message_id",
    "type",
    "event",
    "user_id",
    "anonymous_id",
    "email",
    "payload",
    "received_at",
    "timestamp",
    "status",
    "reject_reason",
)
DELIVERY_FIELDS = (
    "event_id",
    "destination_id",
    "status",
    "next_attempt_at",
    "error_code",
    "error_message",
    "created_at",
)
EVENTS = _Insert(Event, EVENT_FIELDS)
DELIVERIES = _Insert(Delivery, DELIVERY_FIELDS)


def max_params(conn: BaseDatabaseWrapper) -> int:
    if conn.vendor == "sqlite":
        conn.ensure_connection()
        return conn.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    return conn.features.max_query_params or 65535  # PostgreSQL's wire protocol counts parameters in 16 bits


def _json_for_db(value: Any, conn: BaseDatabaseWrapper) -> Any:
    if conn.vendor == "sqlite":
        try:
            return orjson.dumps(value).decode()
        except (orjson.JSONEncodeError, TypeError):
            pass  # e.g. an integer past 64 bits from a payload not parsed by orjson: Django's encoder copes
    return _PAYLOAD_FIELD.get_db_prep_save(value, conn)


_PAYLOAD_FIELD = Event._meta.get_field("payload")


# What a payload becomes -----------------------------------------------------------------------------------


def event_rows(
    source_id: int,
    payloads: list[dict[str, Any]],
    destinations: list[Destination],
    received_at: datetime,
    conn: BaseDatabaseWrapper,
    status: str = Event.Status.ACCEPTED,
) -> tuple[dict[str, tuple[Any, ...]], dict[str, list[tuple[Any, ...]]], int]:
    """Each normalised payload's Event row (EVENT_FIELDS, by messageId, in the order received) and its outbox
    rows for these destinations (without the event id), and how many repeated a messageId of the list."""
    ops = conn.ops
    when = ops.adapt_datetimefield_value(received_at)
    times: dict[datetime, Any] = {received_at: when}  # values for the database, each distinct time once
    events: dict[str, tuple[Any, ...]] = {}
    routes: dict[str, list[tuple[Any, ...]]] = {}
    repeated = 0
    for payload in payloads:
        message_id = payload["messageId"]
        timestamp = payload.pop("_timestamp")
        if message_id in events:
            repeated += 1
            continue
        name = payload.get("event")
        stamp = times.get(timestamp)
        if stamp is None:
            stamp = times[timestamp] = ops.adapt_datetimefield_value(timestamp)
        events[message_id] = (
            source_id,
            message_id,
            payload["type"],
            name[:255] if isinstance(name, str) else "",
            payload.get("userId") or "",
            payload.get("anonymousId") or "",
            email_of(payload),
            _json_for_db(payload, conn),
            when,
            stamp,
            status,
            "",
        )
        routes[message_id] = [
            outbox_values(destination, decide(destination, payload), when) for destination in destinations
        ]
    return events, routes, repeated


def outbox_values(destination: Destination, decision: Decision, when: Any) -> tuple[Any, ...]:
    """One Delivery row for an event (DELIVERY_FIELDS without the event id): due at `when`, or filtered with why."""
    status = Delivery.Status.PENDING if decision.send else Delivery.Status.FILTERED
    return (destination.pk, status, when if decision.send else None, decision.code, decision.reason, when)


def rejected_rows(
    source: Source, rejections: list[Rejection], received_at: datetime, conn: BaseDatabaseWrapper
) -> list[tuple[Any, ...]]:
    """The Event rows of refused items: what was sent (an excerpt) and the reason."""
    if not rejections:
        return []
    when = conn.ops.adapt_datetimefield_value(received_at)
    rows = []
    for rejection in rejections:
        raw, values = _rejected_values(source, rejection)
        reason = f"{rejection.code}: {rejection.reason}".replace("\x00", "\ufffd")  # a function's error may hold NUL
        rows.append((*values, _json_for_db(raw, conn), when, when, Event.Status.REJECTED, reason))
    return rows


def _rejected_values(source: Source, rejection: Rejection) -> tuple[dict[str, Any], tuple[Any, ...]]:
    """The stored excerpt of a refused item, and its Event column values before the payload and times."""
    item = rejection.item
    raw = {k: v for k, v in item.items() if k != "writeKey"} if isinstance(item, dict) else None
    if raw is not None and len(orjson.dumps(raw)) > REJECTED_PAYLOAD_EXCERPT * 4:
        raw = None
    if raw is None:
        text = item if isinstance(item, str) else orjson.dumps(item).decode(errors="replace") if item else ""
        raw = {"raw": text[:REJECTED_PAYLOAD_EXCERPT], "truncated": len(text) > REJECTED_PAYLOAD_EXCERPT}
    kind = item.get("type") if isinstance(item, dict) else None
    name = item.get("event") if isinstance(item, dict) else None
    user = item.get("userId") if isinstance(item, dict) else None
    anon = item.get("anonymousId") if isinstance(item, dict) else None
    return raw, (
        source.pk,
        rejection.message_id,
        kind if kind in EVENT_TYPES else Event.Type.INVALID,
        name[:255] if isinstance(name, str) else "",
        user[:255] if isinstance(user, str) else "",
        anon[:255] if isinstance(anon, str) else "",
        email_of(item) if isinstance(item, dict) else "",
    )

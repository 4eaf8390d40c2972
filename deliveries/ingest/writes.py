"""Writing a request's rows: its INSERTs in one transaction, a messageId stored meanwhile found and skipped, and
several requests of a process written together; and the few rows other pages write the same way."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from deliveries.engine.routing import Decision
from deliveries.ingest.lookups import forget
from deliveries.ingest.rows import DELIVERIES, EVENTS, event_rows, max_params, outbox_values
from deliveries.models import Event
from integrations.models import Destination, Source


@dataclass
class Write:
    """What one request writes, built before any lock: events (by messageId), their outbox rows, rejections."""

    source: Source
    received_at: datetime
    events: dict[str, tuple[Any, ...]]  # messageId -> column values, in the order received
    routes: dict[str, list[tuple[Any, ...]]]  # messageId -> its outbox rows, without the event id
    rejected_rows: list[tuple[Any, ...]]
    fresh: list[str]  # the messageIds to insert (not stored yet, as far as is known)
    outbox: list[tuple[Any, ...]] = field(default_factory=list)  # the outbox rows written
    done: bool = False
    error: BaseException | None = None

    def rows(self) -> int:
        return sum(1 + len(self.routes[m]) for m in self.fresh) + len(self.rejected_rows)


def _event_ids(conn: BaseDatabaseWrapper, rows: list[tuple[Any, ...]], constants: tuple[Any, ...]) -> dict[str, int]:
    """Insert event rows, returning each one's id by messageId."""
    quote = conn.ops.quote_name
    returning = f"{quote(Event._meta.pk.column)}, {quote('message_id')}"
    return {m: pk for pk, m in EVENTS.run(rows, constants, returning)}


def insert_rows(conn: BaseDatabaseWrapper, write: Write) -> None:
    """The INSERT statements of one request, inside the caller's transaction."""
    write.outbox = []
    if write.fresh:
        rows = [write.events[m] for m in write.fresh]
        constants = EVENTS.constants(conn, write.received_at)
        if any(write.routes[m] for m in write.fresh):
            ids = _event_ids(conn, rows, constants)
            write.outbox = [(ids[m], *values) for m in write.fresh for values in write.routes[m]]
            DELIVERIES.run(write.outbox, DELIVERIES.constants(conn, write.received_at))
        else:
            EVENTS.run(rows, constants)
    if write.rejected_rows:
        EVENTS.run(write.rejected_rows, EVENTS.constants(conn, write.received_at))


def insert_event(source: Source, payload: dict[str, Any], received_at: datetime, status: str) -> int:
    """Insert one normalised event with no outbox rows, in the caller's transaction (the Event Tester's test
    event: no dedupe, no write turn); its id."""
    conn = transaction.get_connection()
    events, _, _ = event_rows(source.pk, [payload], [], received_at, conn, status)
    return _event_ids(conn, list(events.values()), EVENTS.constants(conn, received_at))[payload["messageId"]]


def insert_deliveries(
    event_ids: list[int], destination: Destination, decision: Decision, now: datetime, **fields: Any
) -> None:
    """Outbox rows of these events to one destination, as ingest writes them, in the caller's transaction (a
    replay's new deliveries); `fields` gives other columns by attname (the replay, its retry start)."""
    conn = transaction.get_connection()
    values = outbox_values(destination, decision, conn.ops.adapt_datetimefield_value(now))
    DELIVERIES.run([(event_id, *values) for event_id in event_ids], DELIVERIES.constants(conn, now, **fields))


def write_alone(conn: BaseDatabaseWrapper, write: Write, check_first: bool = False) -> None:
    """One request in its own transaction; a messageId stored meanwhile fails the insert, and the second pass
    asks which are stored, inside the transaction, and skips them."""
    for attempt in (0, 1):
        try:
            with transaction.atomic():
                if attempt or check_first:
                    stored = stored_message_ids(write.source, write.fresh)
                    write.fresh = [m for m in write.fresh if m not in stored]
                insert_rows(conn, write)
            return
        except IntegrityError:
            if attempt:
                forget()  # e.g. a source or destination deleted by another process: read them afresh
                raise


def write_together(conn: BaseDatabaseWrapper, group: list[Write]) -> None:
    """Several requests of this process in one transaction (one commit, one turn at the lock); if any insert
    fails on a messageId, each request again in its own transaction, asking first."""
    seen: set[tuple[int, str]] = set()
    for write in group:  # a messageId two requests of the group both bring is the later one's duplicate
        keys = [(write.source.pk, m) for m in write.fresh]
        write.fresh = [m for m, key in zip(write.fresh, keys, strict=True) if key not in seen]
        seen.update(keys)
    try:
        try:
            with transaction.atomic():
                for write in group:
                    insert_rows(conn, write)
        except IntegrityError:
            for write in group:
                try:
                    write_alone(conn, write, check_first=True)
                except Exception as exc:
                    write.error = exc
    except Exception as exc:
        for write in group:
            write.error = exc
    finally:
        for write in group:
            write.done = True


def stored_message_ids(source: Source, message_ids: list[str]) -> set[str]:
    """Which of these messageIds the source has accepted already: a probe of the unique (source, message_id)
    index per id (no ORDER BY: Event's default ordering made SQLite walk every row of the source instead)."""
    conn = transaction.get_connection()
    quote = conn.ops.quote_name
    per_statement = max(1, max_params(conn) - 2)
    stored: set[str] = set()
    with conn.cursor() as cursor:
        for start in range(0, len(message_ids), per_statement):
            chunk = message_ids[start : start + per_statement]
            cursor.execute(
                f"SELECT {quote('message_id')} FROM {quote(Event._meta.db_table)} WHERE {quote('source_id')} = %s "
                f"AND {quote('status')} = %s AND {quote('message_id')} IN ({', '.join(['%s'] * len(chunk))})",
                [source.pk, Event.Status.ACCEPTED, *chunk],
            )
            stored.update(row[0] for row in cursor.fetchall())
    return stored

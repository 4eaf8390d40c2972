"""The schema fold: what each source sends per day (event names, properties and traits with their observed types),
counted into SchemaRollup from the accepted events behind a cursor (RollupCursor "schema"), a chunk at a time,
by the worker's sweeper every few seconds. The Schema page reads the rollup only.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import islice
from typing import Any

import orjson
from django.db import connection, transaction
from django.db.models import F, Min, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from deliveries.models import Event, RollupCursor, SchemaRollup

CURSOR = "schema"
# A PostgreSQL transaction can commit after a later id: events are folded once they are this old, by when any
# transaction that stored them has committed, so the cursor never passes an id that was still invisible.
SETTLE = timedelta(seconds=10)
MAX_KEYS = 300  # properties or traits counted per event (Segment's own schema stops at 300 properties)
MAX_KEY_LENGTH = 255  # SchemaRollup.property and .name
LAG_BOUND = 10_000  # uncounted events counted at most (the number is "more than" beyond)

# Where each type keeps its keys; alias has none (only its event row is counted).
KEYS_OF = {"track": "properties", "page": "properties", "screen": "properties", "identify": "traits", "group": "traits"}
VALUE_TYPES = {
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    dict: "object",
    list: "array",
    type(None): "null",
}

Key = tuple[int, date, str, str, str, str]  # source, day, type, name, property, value type


def cursor_position() -> int:
    return RollupCursor.objects.get_or_create(name=CURSOR)[0].position


def fold(limit: int = 5000, seconds: float | None = None) -> int:
    """Add the accepted events behind the cursor to SchemaRollup, `limit` per transaction; returns how many.

    With `seconds`, no chunk starts after that long (the sweeper's time box); without, it folds until caught up.
    """
    started = time.monotonic()
    position = cursor_position()
    cutoff = timezone.now() - SETTLE
    # The fold stops before the first event younger than SETTLE, found on the (received_at) index among a few
    # seconds of rows: "id + 0" keeps SQLite from answering MIN(id) by walking the whole primary key instead.
    recent = Event.objects.filter(received_at__gte=cutoff).aggregate(first=Min(F("id") + 0))["first"]
    top = recent - 1 if recent is not None else Event.objects.order_by("-id").values_list("id", flat=True).first()
    folded = 0
    while top is not None and position < top:
        rows = list(
            Event.objects.filter(id__gt=position, id__lte=top)
            .order_by("id")
            # The payload as text, parsed by orjson: several times faster than the JSONField's json.loads.
            .values_list("id", "source_id", "type", "event", "received_at", Cast("payload", TextField()), "status")[
                :limit
            ]
        )
        if not rows:
            break
        end = rows[-1][0]
        counts, lasts, accepted = tally(rows)
        with transaction.atomic():
            # Conditional: a second sweeper folding the same chunk at once finds the cursor moved and adds nothing.
            if not RollupCursor.objects.filter(name=CURSOR, position=position).update(position=end):
                break
            upsert(counts, lasts)
        folded += accepted
        position = end
        if len(rows) < limit or (seconds is not None and time.monotonic() - started >= seconds):
            break
    return folded


def tally(rows: list[tuple[Any, ...]]) -> tuple[Counter[Key], dict[Key, datetime], int]:
    """Count the accepted events of a chunk per rollup key (rejected and test events are skipped)."""
    counts: Counter[Key] = Counter()
    lasts: dict[Key, datetime] = {}
    peak: datetime | None = None
    days: dict[datetime, date] = {}  # a batch shares one received_at: each converted once
    zone = timezone.get_current_timezone()
    accepted = 0
    types = VALUE_TYPES
    accepted_status = str(Event.Status.ACCEPTED)
    for _, source_id, kind, event, at, text, status in rows:
        if status != accepted_status:
            continue
        accepted += 1
        day = days.get(at)
        if day is None:
            day = days[at] = at.astimezone(zone).date()
        try:
            payload = orjson.loads(text)
        except orjson.JSONDecodeError:
            payload = None
        name = event
        if kind in ("page", "screen"):
            name = payload.get("name") if isinstance(payload, dict) else ""
            name = name[:MAX_KEY_LENGTH] if isinstance(name, str) else ""
        keys = [(source_id, day, kind, name, "", "")]
        field = KEYS_OF.get(kind)
        values = payload.get(field) if field and isinstance(payload, dict) else None
        if isinstance(values, dict):
            keys += [
                (source_id, day, kind, name, prop[:MAX_KEY_LENGTH], types.get(type(value), "string"))
                for prop, value in islice(values.items(), MAX_KEYS)
            ]
        counts.update(keys)  # Counter.update counts in C
        if peak is None or at >= peak:  # the usual case, rows in id order: the newest so far is the latest for all
            peak = at
            lasts.update(dict.fromkeys(keys, at))
        else:
            for key in keys:
                if at > lasts.get(key, at - timedelta(microseconds=1)):
                    lasts[key] = at
    return counts, lasts, accepted


def upsert(counts: Counter[Key], lasts: dict[Key, datetime]) -> None:
    """Add counts to the rollup rows (creating them), keeping the latest last_seen, in the caller's transaction."""
    if not counts:
        return
    quote = connection.ops.quote_name
    table = quote(SchemaRollup._meta.db_table)
    columns = ("source_id", "day", "type", "name", "property", "value_type", "count", "last_seen")
    names = [quote(c) for c in columns]
    count, last = names[-2:]
    latest = "GREATEST" if connection.vendor == "postgresql" else "max"  # SQLite's max() of two values
    update = (
        f"ON CONFLICT ({', '.join(names[:6])}) DO UPDATE SET {count} = {table}.{count} + excluded.{count}, "
        f"{last} = {latest}({table}.{last}, excluded.{last})"
    )
    keys = sorted(counts)  # one order for every writer: no deadlock between two on PostgreSQL
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One statement over a JSON array of rows: executemany costs a round of the pipeline per row, and
            # Django's client-side binding quotes list parameters slowly; orjson writes the rows in C.
            shape = "s bigint, d date, t text, n text, p text, v text, c bigint, l timestamptz"
            sql = f"INSERT INTO {table} ({', '.join(names)}) SELECT * FROM json_to_recordset(%s) AS r({shape}) {update}"
            rows = orjson.dumps(
                [
                    {"s": s, "d": d, "t": t, "n": n, "p": p, "v": v, "c": counts[key], "l": lasts[key]}
                    for key in keys
                    for s, d, t, n, p, v in (key,)
                ]
            )
            cursor.execute(sql, [rows.decode()])
            return
        placeholders = ", ".join(["%s"] * len(names))
        sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({placeholders}) {update}"
        day_value = connection.ops.adapt_datefield_value
        moment_value = connection.ops.adapt_datetimefield_value
        rows = [
            (s, day_value(d), t, n, p, v, counts[key], moment_value(lasts[key]))
            for key in keys
            for s, d, t, n, p, v in (key,)
        ]
        cursor.executemany(sql, rows)


@dataclass(frozen=True)
class Lag:
    events: int  # events after the cursor (at most LAG_BOUND)
    oldest: datetime | None  # when the oldest of them was received

    @property
    def more(self) -> bool:
        return self.events >= LAG_BOUND


def lag() -> Lag:
    """How far behind the fold is: the events after the cursor, counted on the primary key up to a bound."""
    behind = Event.objects.filter(id__gt=cursor_position()).order_by("id")
    oldest = behind.values_list("received_at", flat=True).first()
    return Lag(behind[:LAG_BOUND].count() if oldest else 0, oldest)

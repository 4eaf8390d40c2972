"""Schema: what each source sends, per day: the volume chart, track event names, page and screen names, identify
and group traits, and per event its properties with their presence, observed types and a flag when a type changed.

The page reads SchemaRollup only (indexed by (source, day), summed in SQL); `fold` fills it from the accepted
events behind a cursor (RollupCursor "schema"), a chunk at a time, called by the worker's sweeper every few seconds.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import islice
from typing import Any

import orjson
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.db.models import F, Max, Min, Sum, TextField
from django.db.models.functions import Cast
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils import timezone
from django.utils.http import urlencode

from deliveries.models import Event, RollupCursor, SchemaRollup
from integrations.models import Source

PERMISSION = "deliveries.view_event"
CURSOR = "schema"
# A PostgreSQL transaction can commit after a later id: events are folded once they are this old, by when any
# transaction that stored them has committed, so the cursor never passes an id that was still invisible.
SETTLE = timedelta(seconds=10)
MAX_KEYS = 300  # properties or traits counted per event (Segment's own schema stops at 300 properties)
MAX_KEY_LENGTH = 255  # SchemaRollup.property and .name
NAMES_SHOWN = 500  # event names per table, most frequent first
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


# The fold -------------------------------------------------------------------------------------------

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


# The page -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    key: str
    label: str
    days: int  # calendar days counted, today included
    note: str


WINDOWS = {
    w.key: w
    for w in (
        Window("24h", "24 hours", 2, "today and yesterday (counted per day)"),
        Window("7d", "7 days", 7, "today and the 6 days before"),
        Window("30d", "30 days", 30, "today and the 29 days before"),
    )
}
DEFAULT_WINDOW = "7d"
TYPES = ("track", "identify", "page", "screen", "group", "alias")


def urls(model_admin: Any) -> list[URLPattern]:
    """The page's URL patterns, added to EventAdmin.get_urls (each wrapped in admin_view)."""
    wrap = model_admin.admin_site.admin_view
    return [
        path("schema/", wrap(lambda r: schema_view(model_admin, r)), name="deliveries_event_schema"),
        path(
            "schema/properties/",
            wrap(lambda r: properties_view(model_admin, r)),
            name="deliveries_event_schema_properties",
        ),
    ]


def check_permission(request: HttpRequest) -> None:
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied


def optional_url(name: str, query: dict[str, Any]) -> str:
    """A URL of another page with its query, or "" while that page is not installed."""
    try:
        return f"{reverse(name)}?{urlencode(query)}"
    except NoReverseMatch:
        return ""


@dataclass(frozen=True)
class Choice:
    sources: list[Source]
    source: Source | None
    window: Window
    since: date


def choice_of(request: HttpRequest) -> Choice:
    sources = list(Source.objects.only("id", "name").order_by("name", "id"))  # no settings, no write key
    wanted = request.GET.get("source", "")
    source = next((s for s in sources if str(s.pk) == wanted), sources[0] if sources else None)
    window = WINDOWS.get(request.GET.get("window", ""), WINDOWS[DEFAULT_WINDOW])
    return Choice(sources, source, window, timezone.localdate() - timedelta(days=window.days - 1))


def rollups(choice: Choice) -> Any:
    assert choice.source is not None
    return SchemaRollup.objects.filter(source=choice.source, day__gte=choice.since)


def chart_of(choice: Choice) -> dict[str, Any]:
    """Events per day and type over the window, every day present (a day without events is a zero)."""
    rows = rollups(choice).filter(property="").values("day", "type").annotate(n=Sum("count")).order_by()
    days = [choice.since + timedelta(days=i) for i in range(choice.window.days)]
    index = {day: i for i, day in enumerate(days)}
    series: dict[str, list[int]] = {}
    for row in rows:
        series.setdefault(row["type"], [0] * len(days))[index[row["day"]]] += row["n"]
    ordered = sorted(series, key=lambda t: TYPES.index(t) if t in TYPES else len(TYPES))
    return {
        "labels": [f"{day:%b} {day.day}" for day in days],
        "series": [{"type": t, "counts": series[t]} for t in ordered],
    }


def names_of(choice: Choice, kind: str) -> list[dict[str, Any]]:
    """One type's names (track events, page or screen names), most frequent first, with count and last seen."""
    rows = (
        rollups(choice)
        .filter(property="", type=kind)
        .values("name")
        .annotate(n=Sum("count"), last=Max("last_seen"))
        .order_by("-n", "name")
    )
    return list(rows[: NAMES_SHOWN + 1])


def properties_of(choice: Choice, kind: str, name: str, events: int) -> list[dict[str, Any]]:
    """The properties (or traits) of one event name: presence, observed types (newest last seen first), changes."""
    rows = (
        rollups(choice)
        .filter(type=kind, name=name)
        .exclude(property="")
        .values("property", "value_type")
        .annotate(n=Sum("count"), last=Max("last_seen"))
        .order_by()
    )
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        prop = found.setdefault(row["property"], {"property": row["property"], "count": 0, "types": []})
        prop["count"] += row["n"]
        prop["types"].append({"type": row["value_type"], "count": row["n"], "last": row["last"]})
    props = []
    for prop in found.values():
        prop["types"].sort(key=lambda t: t["last"], reverse=True)
        prop["last"] = prop["types"][0]["last"]
        prop["presence"] = min(100.0, 100.0 * prop["count"] / events) if events else 0.0
        if len(prop["types"]) > 1:
            # Oldest to newest by when each type was last seen: "number → string" means strings arrive now.
            prop["change"] = " → ".join(t["type"] for t in reversed(prop["types"]))
        props.append(prop)
    props.sort(key=lambda p: (-p["count"], p["property"]))
    return props


def event_count(choice: Choice, kind: str, name: str) -> int:
    total = rollups(choice).filter(type=kind, name=name, property="").aggregate(n=Sum("count"))["n"]
    return total or 0


def debugger_url(choice: Choice, kind: str, name: str) -> str:
    query: dict[str, Any] = {"source": choice.source.pk if choice.source else "", "type": kind}
    if kind == "track":
        query["event"] = name  # the Debugger filters on the track name; page and screen names live in the payload
    return optional_url("admin:deliveries_event_debugger", query)


def schema_view(model_admin: Any, request: HttpRequest) -> HttpResponse:
    check_permission(request)
    choice = choice_of(request)
    context: dict[str, Any] = {
        **model_admin.admin_site.each_context(request),
        "title": "Schema",
        "opts": model_admin.opts,
        "choice": choice,
        "windows": WINDOWS.values(),
        "lag": lag(),
        "settle_seconds": int(SETTLE.total_seconds()),
    }
    if choice.source is not None:
        chart = chart_of(choice)
        totals = {series["type"]: sum(series["counts"]) for series in chart["series"]}
        base = {"source": choice.source.pk, "window": choice.window.key}
        tables = []
        for kind, title in (("track", "Track events"), ("page", "Pages"), ("screen", "Screens")):
            rows = names_of(choice, kind) if totals.get(kind) else []
            for row in rows:
                row["debugger_url"] = debugger_url(choice, kind, row["name"])
                query = urlencode({**base, "type": kind, "name": row["name"]})
                row["properties_url"] = f"{reverse('admin:deliveries_event_schema_properties')}?{query}"
                row["page_url"] = f"?{query}#selected"
            more = len(rows) > NAMES_SHOWN
            tables.append({"type": kind, "title": title, "rows": rows[:NAMES_SHOWN], "more": more})
        traits = []
        for kind, title in (("identify", "Identify traits"), ("group", "Group traits")):
            events = totals.get(kind, 0)
            props = properties_of(choice, kind, "", events) if events else []
            traits.append({"type": kind, "title": title, "events": events, "props": props})
        selected = None
        kind, name = request.GET.get("type", ""), request.GET.get("name")
        if kind in ("track", "page", "screen") and name is not None:
            events = event_count(choice, kind, name)
            props = properties_of(choice, kind, name, events)
            selected = {"type": kind, "name": name, "events": events, "props": props}
        context.update(
            {
                "chart": chart,
                "totals": totals,
                "total": sum(totals.values()),
                "tables": tables,
                "traits": traits,
                "selected": selected,
                "names_shown": NAMES_SHOWN,
            }
        )
    return TemplateResponse(request, "admin/deliveries/schema.html", context)


def properties_view(model_admin: Any, request: HttpRequest) -> HttpResponse:
    """One event name's properties as an HTML fragment, for the row the marketer opened."""
    check_permission(request)
    choice = choice_of(request)
    kind, name = request.GET.get("type", "track"), request.GET.get("name", "")
    events = event_count(choice, kind, name) if choice.source else 0
    props = properties_of(choice, kind, name, events) if choice.source else []
    context = {"selected": {"type": kind, "name": name, "events": events, "props": props}, "choice": choice}
    return TemplateResponse(request, "admin/deliveries/schema_properties.html", context)

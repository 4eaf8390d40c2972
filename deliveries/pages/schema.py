"""Schema: what each source sends, per day: the volume chart, track event names, page and screen names, identify
and group traits, and per event its properties with their presence, observed types and a flag when a type changed.

The page reads SchemaRollup only (indexed by (source, day), summed in SQL); the engine's schema fold fills it from
the accepted events, a chunk at a time, in the worker's sweeper.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from django.db.models import Max, Sum
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.http import urlencode

from deliveries.engine.schema_fold import SETTLE, lag
from deliveries.models import SchemaRollup
from deliveries.pages.base import check_permission, optional_url, page_context, window_of
from integrations.models import Source
from integrations.spec import EVENT_TYPES

PERMISSION = "deliveries.view_event"
NAMES_SHOWN = 500  # event names per table, most frequent first


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
TYPES = tuple(sorted(EVENT_TYPES, key=lambda t: t != "track"))  # the chart's order: track first


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
    window = window_of(request, WINDOWS, DEFAULT_WINDOW)
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
    return optional_url("admin:deliveries_event_debugger", query=query)


def schema_view(model_admin: Any, request: HttpRequest) -> HttpResponse:
    check_permission(request, PERMISSION)
    choice = choice_of(request)
    context = page_context(
        model_admin,
        request,
        "Schema",
        choice=choice,
        windows=WINDOWS.values(),
        lag=lag(),
        settle_seconds=int(SETTLE.total_seconds()),
    )
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
    return TemplateResponse(request, "admin/deliveries/schema/page.html", context)


def properties_view(model_admin: Any, request: HttpRequest) -> HttpResponse:
    """One event name's properties as an HTML fragment, for the row the marketer opened."""
    check_permission(request, PERMISSION)
    choice = choice_of(request)
    kind, name = request.GET.get("type", "track"), request.GET.get("name", "")
    events = event_count(choice, kind, name) if choice.source else 0
    props = properties_of(choice, kind, name, events) if choice.source else []
    context = {"selected": {"type": kind, "name": name, "events": events, "props": props}, "choice": choice}
    return TemplateResponse(request, "admin/deliveries/schema/properties.html", context)

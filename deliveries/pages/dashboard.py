"""The admin index's dashboard: events today, the delivery success rate, what is waiting, the destinations that
need someone (misconfigured, failing, backed up, paused or off), each linking to its Event Delivery page, and the
database's size with the oldest event kept and the retention in force.

Deliveries are counted today (since local midnight, from the minute rollups) or over the last 7 or 14 days
(`?window=7d`: from the hourly rollups, as Event Delivery counts them)."""

from __future__ import annotations

from datetime import datetime, time
from pathlib import Path
from typing import Any

from django.db import connection
from django.db.models import Count, Sum
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from deliveries.models import Delivery, DeliveryRollup, Event, RetentionPolicy
from deliveries.pages.base import optional_url
from deliveries.pages.event_delivery.numbers import WINDOWS, rollup_buckets
from integrations.models import Destination

BACKLOG_PROBLEM = 1000  # more than this waiting for a destination that is not paused is worth a look
DELIVERY_WINDOWS = {"today": "today", "7d": "in 7 days", "14d": "in 14 days"}  # key: what the tiles say


def local_midnight() -> datetime:
    return timezone.make_aware(datetime.combine(timezone.localdate(), time.min))


def dashboard(request: HttpRequest) -> dict[str, Any]:
    """The dashboard's context for the admin index, or {} for a user who may see neither events nor deliveries."""
    user = request.user
    see_events, see_deliveries = user.has_perm("deliveries.view_event"), user.has_perm("deliveries.view_delivery")
    if not (see_events or see_deliveries):
        return {}
    midnight = local_midnight()
    window = request.GET.get("window", "")
    window = window if window in DELIVERY_WINDOWS else "today"
    board: dict[str, Any] = {"since": midnight, "window": window, "window_label": DELIVERY_WINDOWS[window]}
    if see_events:
        # The (status, received_at) index: today's slice of each status, counted in the index.
        today = Event.objects.filter(received_at__gte=midnight)
        board["events_today"] = today.filter(status=Event.Status.ACCEPTED).count()
        board["rejected_today"] = today.filter(status=Event.Status.REJECTED).count()
    if see_deliveries:
        board.update(delivery_numbers(midnight, window))
        board["windows"] = [
            {"key": k, "label": WINDOWS[k].label if k in WINDOWS else "Today", "current": k == window}
            for k in DELIVERY_WINDOWS
        ]
    board["storage"] = storage(request)
    board["links"] = links(request)
    return {"dashboard": board}


def outcomes_of(ids: list[int], midnight: datetime, window: str) -> dict[int, dict[str, int]]:
    """Delivered and failed per destination today or in the window ("7d", "14d")."""
    outcomes: dict[int, dict[str, int]] = {d: {} for d in ids}
    if window != "today":
        for destination_id, (total,) in rollup_buckets(ids, WINDOWS[window], timezone.now(), chart=False).items():
            outcomes[destination_id] = {"delivered": total.delivered, "failed": total.failed}
        return outcomes
    # Rollups by (destination, minute): the destination ids lead the key so today's minutes come from the index.
    rows = (
        DeliveryRollup.objects.filter(destination_id__in=ids, minute__gte=midnight)
        .values("destination_id", "status")
        .annotate(n=Sum("count"))
        .order_by()
    )
    for row in rows:
        outcomes[row["destination_id"]][row["status"]] = row["n"]
    return outcomes


def delivery_numbers(midnight: datetime, window: str = "today") -> dict[str, Any]:
    destinations = list(
        Destination.objects.only(
            "id",
            "name",
            "vendor",
            "enabled",
            "paused",
            "last_error",
            "last_error_code",
            "last_error_hint",
            "last_error_at",
            "last_delivered_at",
        ).order_by("name")
    )
    ids = [d.pk for d in destinations]
    outcomes = outcomes_of(ids, midnight, window)
    waiting: dict[int, int] = {d: 0 for d in ids}
    rows = (
        Delivery.objects.filter(destination_id__in=ids, status__in=Delivery.WAITING)
        .values("destination_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in rows:
        waiting[row["destination_id"]] = row["n"]
    delivered = sum(o.get(Delivery.Status.DELIVERED, 0) for o in outcomes.values())
    failed = sum(o.get(Delivery.Status.FAILED, 0) for o in outcomes.values())
    problems = []
    for destination in destinations:
        problem = problem_of(
            destination, outcomes[destination.pk].get(Delivery.Status.FAILED, 0), waiting[destination.pk], window
        )
        if problem:
            problems.append(problem)
    order = {"misconfigured": 0, "failing": 1, "backlog": 2, "paused": 3, "disabled": 4}
    problems.sort(key=lambda p: (order[p["kind"]], -p["failed"], p["destination"].name))
    return {
        "delivered_today": delivered,
        "failed_today": failed,
        "success_rate": 100.0 * delivered / (delivered + failed) if delivered + failed else None,
        "waiting": sum(waiting.values()),
        "problems": problems,
        "destinations": len(destinations),
    }


def problem_of(destination: Destination, failed: int, waiting: int, window: str = "today") -> dict[str, Any] | None:
    """Why a destination needs someone today (or in the window), or None."""
    if not destination.enabled:
        kind, text = "disabled", "Delivery is off: events are not routed here."
    elif destination.paused:
        kind, text = "paused", "Paused: events wait until you resume delivery."
    elif destination.misconfigured:
        kind, text = "misconfigured", destination.last_error
    elif failed:
        kind, text = "failing", destination.last_error or f"Some deliveries failed {DELIVERY_WINDOWS[window]}."
    elif waiting > BACKLOG_PROBLEM:
        kind, text = "backlog", "Deliveries are waiting longer than usual: the vendor may be slow or rate limiting."
    else:
        return None
    url = reverse("admin:deliveries_delivery_event_delivery", args=[destination.pk])
    url += "?window=" + ("24h" if window == "today" else window)
    hint = destination.last_error_hint if kind in ("misconfigured", "failing") else ""
    return {
        "destination": destination,
        "kind": kind,
        "text": text,
        "hint": hint,
        "failed": failed,
        "waiting": waiting,
        "url": url,
    }


def storage(request: HttpRequest) -> dict[str, Any]:
    """The database's size, the oldest event kept (one seek on the received_at index) and the days kept."""
    days = RetentionPolicy.in_force()
    change = ""
    if request.user.is_superuser:
        change = optional_url("admin:deliveries_retentionpolicy_changelist")
    return {
        "bytes": database_size(),
        "oldest_event": Event.objects.order_by("received_at").values_list("received_at", flat=True).first(),
        "events_days": days["events"],
        "deliveries_days": days["deliveries"],
        "change_url": change,
    }


def database_size() -> int | None:
    """Bytes on disk: SQLite's pages and its write-ahead log, or PostgreSQL's pg_database_size."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_database_size(current_database())")
            return cursor.fetchone()[0]
        if connection.vendor != "sqlite":
            return None
        cursor.execute("PRAGMA page_count")
        pages = cursor.fetchone()[0]
        cursor.execute("PRAGMA page_size")
        size = pages * cursor.fetchone()[0]
    wal = Path(f"{connection.settings_dict['NAME']}-wal")
    return size + (wal.stat().st_size if wal.exists() else 0)


def links(request: HttpRequest) -> list[tuple[str, str]]:
    """The marketer's pages this user may open (and that are installed)."""
    user = request.user
    pages = [
        ("Event Delivery", "admin:deliveries_delivery_event_delivery_index", "deliveries.view_delivery"),
        ("Debugger", "admin:deliveries_event_debugger", "deliveries.view_event"),
        ("Schema", "admin:deliveries_event_schema", "deliveries.view_event"),
        ("Event Tester", "admin:deliveries_event_tester", "deliveries.use_event_tester"),
        ("Replay", "admin:deliveries_replay_changelist", "deliveries.view_replay"),
    ]
    found = []
    for label, name, permission in pages:
        url = optional_url(name) if user.has_perm(permission) else ""
        if url:
            found.append((label, url))
    return found

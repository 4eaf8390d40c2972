"""Which events a replay takes: the accepted events of the destination's sources that its criteria (a selection
or a filter) pick, and the criteria in words."""

from __future__ import annotations

from typing import Any

from django.db.models import Exists, OuterRef, QuerySet
from django.utils.dateparse import parse_datetime

from deliveries.models import Delivery, Event
from deliveries.pages.display import moment
from integrations.models import Destination, Source

MAX_EVENTS = 100_000  # per destination and replay: the oldest are taken, a second replay does the rest
# Delivery statuses a replay's criteria pick that are usually few: read off the destination's status index.
FEW = (Delivery.Status.FAILED, Delivery.Status.RETRYING)
DELIVERY_STATUSES = [
    ("any", "Any"),
    ("failed", "Failed"),
    ("retrying", "Retrying"),
    ("filtered", "Filtered"),
    ("delivered", "Delivered"),
    ("never", "Never sent"),
]


def source_ids(destination: Destination) -> list[int]:
    return list(destination.sources.values_list("pk", flat=True))


def base_events(criteria: dict[str, Any], sources: list[int]) -> QuerySet[Event]:
    """The accepted events of these sources the criteria pick, before their delivery status."""
    events = Event.objects.filter(status=Event.Status.ACCEPTED, source_id__in=sources)
    if "events" in criteria:
        return events.filter(pk__in=criteria["events"])
    if criteria.get("source"):
        events = events.filter(source_id=criteria["source"])
    if criteria.get("since"):
        events = events.filter(received_at__gte=parse_datetime(criteria["since"]))
    if criteria.get("until"):
        events = events.filter(received_at__lt=parse_datetime(criteria["until"]))
    if criteria.get("type"):
        events = events.filter(type=criteria["type"])
    if criteria.get("event"):
        events = events.filter(event=criteria["event"])
    return events


def delivery_status(criteria: dict[str, Any]) -> str:
    return "any" if "events" in criteria else criteria.get("delivery_status") or "any"


def events_for(criteria: dict[str, Any], destination: Destination) -> QuerySet[Event]:
    """The accepted events the criteria pick for this destination, from the sources connected to it."""
    events = base_events(criteria, source_ids(destination))
    status = delivery_status(criteria)
    to_here = Delivery.objects.filter(destination=destination, is_test=False)
    if criteria.get("since") and "events" not in criteria:
        # A delivery is made when its event arrives or later: this bounds the (destination, status, created_at) scan.
        to_here = to_here.filter(created_at__gte=parse_datetime(criteria["since"]))
    if status in FEW:
        # Usually few: read them off the (destination, status, created_at) index, then the events by key.
        events = events.filter(pk__in=to_here.filter(status=status).values("event_id"))
    elif status in ("delivered", "filtered"):
        # Usually most: probe each event's (event, destination) index instead of listing millions of rows.
        events = events.filter(Exists(to_here.filter(event=OuterRef("pk"), status=status)))
    elif status == "never":
        events = events.filter(~Exists(to_here.filter(event=OuterRef("pk"))))
    return events


def describe(criteria: dict[str, Any]) -> str:
    """The criteria in words, for the replay list."""
    if "events" in criteria:
        count = len(criteria["events"])
        return f"{count} selected event{'s' if count != 1 else ''}"
    what = [criteria.get("type") or ""]
    if criteria.get("event"):
        what.append(f"“{criteria['event']}”")
    parts = [" ".join(w for w in what if w) or "All", "events"]
    if criteria.get("source"):
        source = Source.objects.filter(pk=criteria["source"]).values_list("name", flat=True).first()
        parts.append(f"from {source or 'a deleted source'}")
    since, until = parse_datetime(criteria.get("since") or ""), parse_datetime(criteria.get("until") or "")
    if since and until:
        parts.append(f"received {moment(since)} to {moment(until)}")
    elif since:
        parts.append(f"received since {moment(since)}")
    status = criteria.get("delivery_status") or "any"
    if status == "never":
        parts.append("never sent to the destination")
    elif status != "any":
        parts.append(f"whose delivery is {status}")
    return " ".join(parts)

"""The Debugger's queries: filters and search, keyset pages and the live feed, and what each row sums up.

Speed at a million events: the list is a keyset page of 50 on an index (newest first by id, or by received_at
where the status filter's index orders that way), the live feed asks for `id > newest shown` on the primary key,
delivery summaries are one grouped query over the 50 ids shown, and the two predicates no index answers (free
text in the payload, "has a failed delivery") look at a bounded number of events per page and say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.http import QueryDict
from django.utils import timezone

from deliveries.models import Delivery, Event, SchemaRollup

PAGE_SIZE = 50
FEED_SIZE = 50  # new rows per poll; more than that in one second is shown as a gap to reload
SCAN_BOUND = 20_000  # events looked at per page for free text and "with failed deliveries" (no index answers those)
NAME_SUGGESTION_DAYS = 30

STATUSES = [
    ("", "Accepted and rejected"),
    ("accepted", "Accepted"),
    ("rejected", "Rejected"),
    ("failed", "With failed deliveries"),
    ("test", "Test sends (Event Tester)"),
]
EXACT_FIELDS = [
    ("user_id", "user id"),
    ("anonymous_id", "anonymous id"),
    ("message_id", "message id"),
    ("email", "email"),
]
ROW_FIELDS = [
    "id",
    "source__name",
    "type",
    "event",
    "user_id",
    "anonymous_id",
    "message_id",
    "status",
    "reject_reason",
    "received_at",
]


@dataclass
class Filters:
    source: int | None = None
    type: str = ""
    event: str = ""
    status: str = ""
    q: str = ""

    @classmethod
    def parse(cls, query: QueryDict) -> Filters:
        source = query.get("source", "")
        kind = query.get("type", "")
        status = query.get("status", "")
        return cls(
            source=int(source) if source.isdigit() else None,
            type=kind if kind in Event.Type.values else "",
            event=query.get("event", "").strip(),
            status=status if status in dict(STATUSES) else "",
            q=query.get("q", "").strip(),
        )

    def params(self) -> dict[str, str]:
        """The non-empty filters, for links and the live feed."""
        values = {"source": self.source or "", "type": self.type, "event": self.event, "status": self.status}
        values["q"] = self.q
        return {k: str(v) for k, v in values.items() if v}

    @property
    def by_time(self) -> bool:
        # A rejected or test filter is an equality on (status, received_at): that index orders by time, not id.
        return self.status in ("rejected", "test")

    @property
    def any(self) -> bool:
        return bool(self.params())


@dataclass
class Search:
    """What the search box found: exact identifiers (and which kinds), or free text in the payload."""

    term: str
    kinds: list[str]

    @property
    def free_text(self) -> bool:
        return bool(self.term) and not self.kinds

    def predicate(self) -> Q:
        if not self.term:
            return Q()
        if self.kinds:
            return exact_q(self.term)
        return Q(payload_text__icontains=self.term)


def exact_q(term: str) -> Q:
    # Each term on its own column's index (SQLite: MULTI-INDEX OR; PostgreSQL: BitmapOr).
    return Q(user_id=term) | Q(anonymous_id=term) | Q(message_id=term) | Q(email=term.lower())


def resolve_search(term: str) -> Search:
    """Exact identifiers first, each looked up on its index; free text only when none of them matches."""
    if not term:
        return Search("", [])
    kinds = [
        label
        for field, label in EXACT_FIELDS
        if Event.objects.filter(**{field: term.lower() if field == "email" else term}).exists()
    ]
    return Search(term, kinds)


def filtered(filters: Filters) -> QuerySet[Event]:
    """The events the filters select (not the search, not the page), without payloads."""
    events = Event.objects.all()
    if filters.source:
        events = events.filter(source_id=filters.source)
    if filters.type:
        events = events.filter(type=filters.type)
    if filters.event:
        events = events.filter(event=filters.event)
    if filters.by_time:
        events = events.filter(status=filters.status)
    elif filters.status == "accepted":
        # Not an equality on status: ordering by id then keeps to the pk, source, type or name index.
        events = events.exclude(status__in=[Event.Status.REJECTED, Event.Status.TEST])
    else:
        events = events.exclude(status=Event.Status.TEST)  # test sends only when asked for
    return events


def newest_first(events: QuerySet[Event], by_time: bool) -> QuerySet[Event]:
    return events.order_by("-received_at", "-id") if by_time else events.order_by("-id")


def older_than(events: QuerySet[Event], anchor: tuple[int, Any], by_time: bool) -> QuerySet[Event]:
    """Keyset paging: the events after `anchor` (id, received_at) in newest-first order."""
    event_id, received_at = anchor
    if not by_time:
        return events.filter(id__lt=event_id)
    # received_at <= t stays a range on the index; the NOT only trims the ties at t.
    return events.filter(received_at__lte=received_at).exclude(received_at=received_at, id__gte=event_id)


@dataclass
class Page:
    events: list[Event]
    older: int | None  # the `before` cursor of the next page, if there is one
    scanned: bool  # a bounded scan: the page looked at SCAN_BOUND events at most
    scanned_to: Any  # when the bounded scan stopped short of the end: the time it reached


def page_of(filters: Filters, search: Search, before: int | None) -> Page:
    events = filtered(filters)
    if before is not None:
        anchor_time = Event.objects.filter(pk=before).values_list("received_at", flat=True).first()
        if anchor_time is not None or not filters.by_time:
            events = older_than(events, (before, anchor_time), filters.by_time)
    bounded = search.free_text or filters.status == "failed"
    boundary = None
    if bounded:
        # The SCAN_BOUND-th event of the filters (an index walk); the predicates look no further than it.
        boundary = (
            newest_first(events, filters.by_time).values_list("id", "received_at")[SCAN_BOUND - 1 : SCAN_BOUND].first()
        )
        if boundary is not None:
            events = events.filter(id__gte=boundary[0]) if not filters.by_time else _not_older(events, boundary)
        if filters.status == "failed":
            failed = Delivery.objects.filter(event_id=OuterRef("pk"), status=Delivery.Status.FAILED)
            events = events.filter(Exists(failed))
    if search.free_text:
        events = events.annotate(payload_text=Cast("payload", TextField()))
    events = events.filter(search.predicate())
    rows = list(newest_first(events, filters.by_time).select_related("source").only(*ROW_FIELDS)[: PAGE_SIZE + 1])
    if len(rows) > PAGE_SIZE:
        return Page(rows[:PAGE_SIZE], rows[PAGE_SIZE - 1].pk, bounded, None)
    if boundary is not None:  # the scan ran out, not the events: the next page carries on from there
        return Page(rows, boundary[0], True, boundary[1])
    return Page(rows, None, bounded, None)


def _not_older(events: QuerySet[Event], boundary: tuple[int, Any]) -> QuerySet[Event]:
    event_id, received_at = boundary
    return events.filter(received_at__gte=received_at).exclude(received_at=received_at, id__lt=event_id)


@dataclass
class Feed:
    events: list[Event]
    newest: int  # the newest event id now: the next poll asks for events after it
    gap: bool  # more arrived than a poll shows (or than the bound looks at): the page says to reload


def feed_of(filters: Filters, after: int | None) -> Feed:
    """Events newer than the newest shown, for the live tail: a range on the primary key."""
    newest = newest_id()
    last = after if after is not None else newest
    # A tab paused for hours must not scan everything since: at most SCAN_BOUND ids back.
    floor = max(last, newest - SCAN_BOUND)
    events = filtered(filters).filter(id__gt=floor, id__lte=newest)
    search = resolve_search(filters.q)
    if filters.status == "failed":
        events = events.filter(Exists(Delivery.objects.filter(event_id=OuterRef("pk"), status=Delivery.Status.FAILED)))
    if search.free_text:
        events = events.annotate(payload_text=Cast("payload", TextField()))
    events = events.filter(search.predicate())
    rows = list(events.order_by("-id").select_related("source").only(*ROW_FIELDS)[: FEED_SIZE + 1])
    return Feed(rows[:FEED_SIZE], newest, len(rows) > FEED_SIZE or floor > last)


# What the rows show -----------------------------------------------------------------------------------


def summaries(event_ids: list[int]) -> dict[int, dict[str, int]]:
    """Deliveries per status of each event shown: one grouped query on the (event, destination) index."""
    counts: dict[int, dict[str, int]] = {}
    if not event_ids:
        return counts
    rows = (
        Delivery.objects.filter(event_id__in=event_ids)
        .order_by()
        .values_list("event_id", "status")
        .annotate(n=Count("id"))
    )
    for event_id, status, n in rows:
        counts.setdefault(event_id, {})[status] = n
    return counts


def newest_id() -> int:
    return Event.objects.order_by("-id").values_list("id", flat=True).first() or 0


def event_names(source: int | None) -> list[str]:
    """Track event names seen lately, for the name box's suggestions (from the schema rollup, not the events)."""
    since = timezone.localdate() - timedelta(days=NAME_SUGGESTION_DAYS)
    names = SchemaRollup.objects.filter(day__gte=since, type="track", property="").exclude(name="")
    if source:
        names = names.filter(source_id=source)
    return sorted(set(names.values_list("name", flat=True).distinct()[:500]))

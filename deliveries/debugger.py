"""The Debugger: a live tail of events (all sources or one) with filters and search, and each event's trace of
where it went: every delivery, each attempt and its HTTP exchanges, filtered ones with the reason.

Speed at a million events: the list is a keyset page of 50 on an index (newest first by id, or by received_at
where the status filter's index orders that way), the live feed asks for `id > newest shown` on the primary key,
delivery summaries are one grouped query over the 50 ids shown, and the two predicates no index answers (free
text in the payload, "has a failed delivery") look at a bounded number of events per page and say so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import orjson
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from deliveries.display import (
    attempts_text,
    compact_moment,
    destination_link,
    duration,
    error_summary,
    moment,
    render_exchanges,
    short_id,
    status_badge,
)
from deliveries.models import Attempt, Delivery, Event, SchemaRollup
from integrations.models import Source

PAGE_SIZE = 50
FEED_SIZE = 50  # new rows per poll; more than that in one second is shown as a gap to reload
SCAN_BOUND = 20_000  # events looked at per page for free text and "with failed deliveries" (no index answers those)
ATTEMPTS_SHOWN = 10  # newest attempts of a delivery on the event's trace; the delivery page has them all
PRETTY_OPEN_DEPTH = 3  # objects nested deeper start folded in the Pretty view
NAME_SUGGESTION_DAYS = 30

STATUSES = [
    ("", "Accepted and rejected"),
    ("accepted", "Accepted"),
    ("rejected", "Rejected"),
    ("failed", "With failed deliveries"),
    ("test", "Test sends (Event Tester)"),
]
# How the event's deliveries are summed up in a row, in this order.
SUMMARY_ORDER = [
    (Delivery.Status.DELIVERED, "delivered"),
    (Delivery.Status.FAILED, "failed"),
    (Delivery.Status.RETRYING, "retrying"),
    (Delivery.Status.IN_FLIGHT, "in flight"),
    (Delivery.Status.PENDING, "pending"),
    (Delivery.Status.FILTERED, "filtered"),
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


def urls(model_admin: Any) -> list[URLPattern]:
    """The page's URL patterns, added to EventAdmin.get_urls (each wrapped in admin_view)."""
    wrap = model_admin.admin_site.admin_view
    return [
        path("debugger/", wrap(lambda r: list_view(model_admin, r)), name="deliveries_event_debugger"),
        path("debugger/feed/", wrap(lambda r: feed_view(model_admin, r)), name="deliveries_event_debugger_feed"),
        path(
            "debugger/<int:event_id>/",
            wrap(lambda r, event_id: detail_view(model_admin, r, event_id)),
            name="deliveries_event_debugger_detail",
        ),
    ]


def check_permission(request: HttpRequest) -> None:
    if not request.user.has_perm("deliveries.view_event"):
        raise PermissionDenied


def optional_url(name: str, args: Iterable[Any] = (), query: dict[str, Any] | None = None) -> str:
    """A URL of another page, or "" while that page is not installed (the button is then left out)."""
    try:
        url = reverse(name, args=list(args))
    except NoReverseMatch:
        return ""
    return f"{url}?{urlencode(query)}" if query else url


# Filters and search ----------------------------------------------------------------------------------


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


# Rows ------------------------------------------------------------------------------------------------


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


def summary_html(counts: dict[str, int]) -> str:
    if not counts:
        return format_html('<span class="quiet">{}</span>', "no destinations")
    parts = [(status, n, label) for status, label in SUMMARY_ORDER if (n := counts.get(status))]
    return format_html_join(", ", '<span class="sum sum-{}">{} {}</span>', parts)


def rows_html(request: HttpRequest, events: list[Event], can_replay: bool) -> str:
    counts = summaries([e.pk for e in events])
    rows = [
        {
            "event": event,
            "received": compact_moment(event.received_at),
            "user": short_id(event.user_id) if event.user_id else "",
            "anonymous": short_id(event.anonymous_id) if event.anonymous_id else "",
            "summary": summary_html(counts.get(event.pk, {})),
            "failed": counts.get(event.pk, {}).get(Delivery.Status.FAILED, 0),
            "detail_url": reverse("admin:deliveries_event_debugger_detail", args=[event.pk]),
        }
        for event in events
    ]
    return render_to_string(
        "admin/deliveries/debugger/rows.html", {"rows": rows, "can_replay": can_replay}, request=request
    )


def newest_id() -> int:
    return Event.objects.order_by("-id").values_list("id", flat=True).first() or 0


def event_names(source: int | None) -> list[str]:
    """Track event names seen lately, for the name box's suggestions (from the schema rollup, not the events)."""
    since = timezone.localdate() - timedelta(days=NAME_SUGGESTION_DAYS)
    names = SchemaRollup.objects.filter(day__gte=since, type="track", property="").exclude(name="")
    if source:
        names = names.filter(source_id=source)
    return sorted(set(names.values_list("name", flat=True).distinct()[:500]))


# Views -----------------------------------------------------------------------------------------------


def list_view(model_admin: Any, request: HttpRequest) -> HttpResponse:
    check_permission(request)
    filters = Filters.parse(request.GET)
    before = request.GET.get("before", "")
    before_id = int(before) if before.isdigit() else None
    newest = newest_id()  # before the page's query: a row written meanwhile comes again and the page skips it
    search = resolve_search(filters.q)
    page = page_of(filters, search, before_id)
    can_replay = request.user.has_perm("deliveries.add_replay")
    older_url = ""
    if page.older is not None:
        older_url = "?" + urlencode({**filters.params(), "before": page.older})
    replay_filter_url = ""
    if can_replay and not filters.q and filters.status != "test":
        criteria = {"source": filters.source or "", "type": filters.type, "event": filters.event}
        if filters.status == "failed":
            criteria["delivery_status"] = "failed"
        replay_filter_url = optional_url("admin:deliveries_replay_add", query={k: v for k, v in criteria.items() if v})
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Debugger",
        "opts": model_admin.opts,
        "filters": filters,
        "sources": Source.objects.only("id", "name").order_by("name"),
        "types": Event.Type.choices,
        "statuses": STATUSES,
        "names": event_names(filters.source),
        "search": search,
        "page": page,
        "scan_bound": SCAN_BOUND,
        "rows": rows_html(request, page.events, can_replay),
        "empty": not page.events,
        "live": before_id is None,
        "newest": newest,
        "feed_query": urlencode(filters.params()),
        "older_url": older_url,
        "first_url": "?" + urlencode(filters.params()) if before_id is not None else "",
        "can_replay": can_replay,
        "replay_url": optional_url("admin:deliveries_replay_add"),
        "replay_filter_url": replay_filter_url,
    }
    return TemplateResponse(request, "admin/deliveries/debugger/list.html", context)


def feed_view(model_admin: Any, request: HttpRequest) -> HttpResponse:
    """Rows newer than the newest shown, for the live tail: a range on the primary key."""
    check_permission(request)
    filters = Filters.parse(request.GET)
    after = request.GET.get("after", "")
    newest = newest_id()
    last = int(after) if after.isdigit() else newest
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
    gap = len(rows) > FEED_SIZE or floor > last
    rows = rows[:FEED_SIZE]
    return JsonResponse(
        {
            "html": rows_html(request, rows, request.user.has_perm("deliveries.add_replay")) if rows else "",
            "count": len(rows),
            "newest": newest,
            "gap": gap,
        }
    )


def detail_view(model_admin: Any, request: HttpRequest, event_id: int) -> HttpResponse:
    """One event's trace: header, rejection, Pretty and Raw payload, and every delivery with its attempts."""
    check_permission(request)
    event = get_object_or_404(Event.objects.select_related("source"), pk=event_id)
    deliveries = list(
        Delivery.objects.filter(event=event)
        .select_related("destination")
        .only(*DELIVERY_FIELDS)
        .order_by("destination__name", "id")
    )
    traces = [trace(delivery) for delivery in deliveries]
    user = request.user
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"{event.type} {event.event}".strip(),
        "opts": model_admin.opts,
        "event": event,
        "received": moment(event.received_at, precise=True),
        "timestamp": moment(event.timestamp, precise=True),
        "pretty": pretty_json(event.payload),
        "raw": orjson.dumps(event.payload).decode(),
        "traces": traces,
        "delivered": sum(1 for d in deliveries if d.status == Delivery.Status.DELIVERED),
        "tester_url": optional_url("admin:deliveries_event_tester", query=tester_query(event, deliveries))
        if user.has_perm("deliveries.use_event_tester")
        else "",
        "replay_url": optional_url("admin:deliveries_replay_add", query={"events": event.pk})
        if user.has_perm("deliveries.add_replay") and event.status == Event.Status.ACCEPTED
        else "",
        "event_url": reverse("admin:deliveries_event_change", args=[event.pk]),
        "debugger_url": reverse("admin:deliveries_event_debugger"),
        "detail_url": reverse("admin:deliveries_event_debugger_detail", args=[event.pk]),
        "panel": request.GET.get("panel") == "1",
    }
    template = "detail_body.html" if context["panel"] else "detail.html"  # the side panel wants the body alone
    return TemplateResponse(request, f"admin/deliveries/debugger/{template}", context)


def tester_query(event: Event, deliveries: list[Delivery]) -> dict[str, Any]:
    """Open the tester on this event and the destination most worth testing: a failing one, else one it went to."""
    order = (Delivery.Status.FAILED, Delivery.Status.RETRYING, Delivery.Status.DELIVERED, Delivery.Status.PENDING)
    candidates = sorted((d for d in deliveries if d.status in order), key=lambda d: order.index(d.status))
    query: dict[str, Any] = {"event": event.pk}
    if candidates:
        query["destination"] = candidates[0].destination_id
    return query


DELIVERY_FIELDS = [
    "id",
    "event_id",
    "status",
    "attempts",
    "throttled",
    "next_attempt_at",
    "error_code",
    "error_message",
    "hint",
    "delivered_at",
    "latency_ms",
    "is_test",
    "created_at",
    "destination__id",
    "destination__name",
]


def trace(delivery: Delivery) -> dict[str, Any]:
    """A delivery as the event's trace shows it: status, error or filter reason, and its newest attempts."""
    attempts = list(Attempt.objects.filter(delivery=delivery).order_by("-number")[: ATTEMPTS_SHOWN + 1])
    newest_number = attempts[0].number if attempts else None
    return {
        "delivery": delivery,
        "destination": destination_link(delivery.destination),
        "status": status_badge(delivery),
        "attempts_text": attempts_text(delivery),
        "error": error_summary(delivery, chars=400) if delivery.status != Delivery.Status.DELIVERED else "",
        "filtered": delivery.status == Delivery.Status.FILTERED,
        "delivered_at": moment(delivery.delivered_at, precise=True) if delivery.delivered_at else "",
        "latency": duration(delivery.latency_ms) if delivery.latency_ms is not None else "",
        "attempts": [
            {
                "attempt": attempt,
                "started": moment(attempt.started_at, precise=True),
                "duration": duration(attempt.duration_ms),
                "error": error_summary(attempt, chars=400),
                "exchanges": render_exchanges(attempt.exchanges or [], open_last=attempt.number == newest_number),
            }
            for attempt in attempts[:ATTEMPTS_SHOWN]
        ],
        "more_attempts": len(attempts) > ATTEMPTS_SHOWN,
        "delivery_url": reverse("admin:deliveries_delivery_change", args=[delivery.pk]),
        "event_delivery_url": optional_url(
            "admin:deliveries_delivery_event_delivery", args=[delivery.destination_id], query={"window": "24h"}
        ),
    }


def pretty_json(value: Any, key: str | None = None, depth: int = 0) -> SafeString:
    """The payload as a tree: objects and arrays fold open and shut, keys and values coloured by kind."""
    label = format_html('<span class="json-key">{}</span>: ', orjson.dumps(key).decode()) if key is not None else ""
    if isinstance(value, dict | list) and value:
        is_dict = isinstance(value, dict)
        items = value.items() if is_dict else ((None, v) for v in value)
        children = format_html_join(
            "", "{}", ((pretty_json(v, str(k) if is_dict else None, depth + 1),) for k, v in items)
        )
        brackets = "{}" if is_dict else "[]"
        size = f"{len(value)} {'key' if is_dict else 'item'}{'' if len(value) == 1 else 's'}"
        return format_html(
            '<details class="json-node"{}><summary>{}<span class="json-bracket">{}</span>'
            '<span class="json-size"> {} </span></summary><div class="json-children">{}</div>'
            '<span class="json-bracket">{}</span></details>',
            " open" if depth < PRETTY_OPEN_DEPTH else "",
            label,
            brackets[0],
            size,
            children,
            brackets[1],
        )
    return format_html('<div class="json-leaf">{}{}</div>', label, scalar(value))


def scalar(value: Any) -> SafeString:
    if isinstance(value, bool) or value is None:
        kind = "literal"
    elif isinstance(value, int | float):
        kind = "number"
    elif isinstance(value, str):
        kind = "string"
    else:  # an empty object or array
        kind = "bracket"
    return format_html('<span class="json-{}">{}</span>', kind, orjson.dumps(value).decode())

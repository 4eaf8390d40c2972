"""The Debugger: a live tail of events (all sources or one) with filters and search, and each event's trace of
where it went: every delivery, each attempt and its HTTP exchanges, filtered ones with the reason. The queries are
in query.py."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from deliveries.models import Attempt, Delivery, Event
from deliveries.pages.base import check_permission, optional_url, page_context
from deliveries.pages.debugger.query import (
    SCAN_BOUND,
    STATUSES,
    Filters,
    event_names,
    feed_of,
    newest_id,
    page_of,
    resolve_search,
    summaries,
)
from deliveries.pages.display import (
    attempts_text,
    compact_moment,
    destination_link,
    duration,
    error_summary,
    moment,
    short_id,
    status_badge,
)
from integrations.admin.exchanges import render_exchanges, render_logs
from integrations.models import Source

PERMISSION = "deliveries.view_event"
ATTEMPTS_SHOWN = 10  # newest attempts of a delivery on the event's trace; the delivery page has them all
PRETTY_OPEN_DEPTH = 3  # objects nested deeper start folded in the Pretty view
# How the event's deliveries are summed up in a row, in this order.
SUMMARY_ORDER = [
    (Delivery.Status.DELIVERED, "delivered"),
    (Delivery.Status.FAILED, "failed"),
    (Delivery.Status.RETRYING, "retrying"),
    (Delivery.Status.IN_FLIGHT, "in flight"),
    (Delivery.Status.PENDING, "pending"),
    (Delivery.Status.FILTERED, "filtered"),
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


# Views -----------------------------------------------------------------------------------------------


def list_view(model_admin: Any, request: HttpRequest) -> HttpResponse:
    check_permission(request, PERMISSION)
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
    context = page_context(
        model_admin,
        request,
        "Debugger",
        filters=filters,
        sources=Source.objects.only("id", "name").order_by("name"),
        types=Event.Type.choices,
        statuses=STATUSES,
        names=event_names(filters.source),
        search=search,
        page=page,
        scan_bound=SCAN_BOUND,
        rows=rows_html(request, page.events, can_replay),
        empty=not page.events,
        live=before_id is None,
        newest=newest,
        feed_query=urlencode(filters.params()),
        older_url=older_url,
        first_url="?" + urlencode(filters.params()) if before_id is not None else "",
        can_replay=can_replay,
        replay_url=optional_url("admin:deliveries_replay_add"),
        replay_filter_url=replay_filter_url,
    )
    return TemplateResponse(request, "admin/deliveries/debugger/list.html", context)


def feed_view(model_admin: Any, request: HttpRequest) -> HttpResponse:
    """Rows newer than the newest shown, for the live tail: a range on the primary key."""
    check_permission(request, PERMISSION)
    filters = Filters.parse(request.GET)
    after = request.GET.get("after", "")
    feed = feed_of(filters, int(after) if after.isdigit() else None)
    can_replay = request.user.has_perm("deliveries.add_replay")
    return JsonResponse(
        {
            "html": rows_html(request, feed.events, can_replay) if feed.events else "",
            "count": len(feed.events),
            "newest": feed.newest,
            "gap": feed.gap,
        }
    )


def detail_view(model_admin: Any, request: HttpRequest, event_id: int) -> HttpResponse:
    """One event's trace: header, rejection, Pretty and Raw payload, and every delivery with its attempts."""
    check_permission(request, PERMISSION)
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
        **page_context(model_admin, request, f"{event.type} {event.event}".strip()),
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
                "logs": render_logs(attempt.logs),
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


# Rows ------------------------------------------------------------------------------------------------


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

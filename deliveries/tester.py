"""The Event Tester: paste or build an event, see how a destination would route, map and send it (dry run), or
send it for real as a test and read every HTTP exchange of its lifecycle, one page per exchange.

Unlike Segment's tester, which skips filters and shows the partner's answer only, this runs the real pipeline:
the Tracking API's normalisation, routing, the destination's mapping and its vendor's requests (token calls
included). A test send is an Event (status "test") and a Delivery (is_test) that the normal drain never claims
(no next_attempt_at): a task sends it once and records it like any other, never retried and kept out of rollups.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.http import urlencode
from django_q.tasks import async_task

from deliveries.display import duration, http_message, pretty_body
from deliveries.engine import Sent, Timing, build_vendor, internal_error, rate_gate, record, send
from deliveries.ingest import EventError, email_of, normalise
from deliveries.models import Attempt, Delivery, Event
from deliveries.routing import decide
from integrations.models import Destination, Source
from integrations.spec import EVENT_TYPES
from integrations.vendors import DeliveryError

log = logging.getLogger("cdphub.tester")

PERMISSION = "deliveries.use_event_tester"
DONE = (Delivery.Status.DELIVERED, Delivery.Status.FAILED)
SAMPLE = {
    "type": "track",
    "event": "Order Completed",
    "userId": "user-1",
    "properties": {"order_id": "A-1001", "total": 49.5, "currency": "EUR"},
    "context": {"traits": {"email": "ada@example.com"}},
}
# Set by the hub on receipt: a prefilled event is sent as new, not with its old arrival time.
RECEIPT_FIELDS = ("receivedAt", "_timestamp")


def urls(model_admin: Any) -> list[URLPattern]:
    """The page's URL patterns, added to its ModelAdmin's get_urls (each wrapped in admin_view)."""
    site = model_admin.admin_site
    return [
        path("tester/", site.admin_view(lambda r: tester_view(model_admin, r)), name="deliveries_event_tester"),
        path(
            "tester/result/<int:delivery_id>/",
            site.admin_view(lambda r, delivery_id: result_view(r, delivery_id)),
            name="deliveries_event_tester_result",
        ),
    ]


def check_permission(request: HttpRequest) -> None:
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied


# The page ---------------------------------------------------------------------------------------------


def tester_view(model_admin: Any, request: HttpRequest) -> HttpResponse:
    check_permission(request)
    destinations = viewable_destinations(request)
    sources = list(Source.objects.only("id", "name").order_by("name"))
    first_source = first_sources([d.pk for d in destinations])
    data = request.POST if request.method == "POST" else request.GET
    destination_id = _int(data.get("destination"))
    source_id = _int(data.get("source"))
    payload_text, errors, dry_run, sent = "", [], None, None

    if request.method == "POST":
        payload_text = request.POST.get("payload", "")
        destination = next((d for d in destinations if d.pk == destination_id), None)
        source = next((s for s in sources if s.pk == source_id), None)
        payload, problem = parse_event(payload_text)
        if destination is None:
            errors.append("Choose a destination.")
        if source is None:
            errors.append("Choose a source: the test event is stored as if it came from it.")
        if problem:
            errors.append(problem)
        if not errors and request.POST.get("action") == "send":
            delivery = start_test(destination, source, payload)
            decision = decide(destination, payload)
            if not decision.send:
                messages.warning(
                    request, f"Routing would filter this event ({decision.reason}); sent anyway: this is a test."
                )
            query = urlencode({"sent": delivery.pk, "destination": destination.pk, "source": source.pk})
            return HttpResponseRedirect(reverse("admin:deliveries_event_tester") + "?" + query)
        if not errors:
            dry_run = dry_run_of(destination, payload)
    else:
        prefill = prefilled(request, destinations, first_source)
        payload_text = prefill.pop("payload_text")
        destination_id = destination_id or prefill.get("destination_id")
        source_id = source_id or prefill.get("source_id")
        sent = prefill.get("sent")

    if destination_id is None and destinations:
        destination_id = destinations[0].pk
    if source_id is None:
        source_id = first_source.get(destination_id) or (sources[0].pk if sources else None)
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Event Tester",
        "opts": model_admin.opts,
        "destinations": [
            {
                "id": d.pk,
                "name": d.name,
                "vendor": d.vendor_class.label,
                "state": "disabled" if not d.enabled else "paused" if d.paused else "",
                "first_source": first_source.get(d.pk, ""),
            }
            for d in destinations
        ],
        "sources": sources,
        "destination_id": destination_id,
        "source_id": source_id,
        "payload_text": payload_text or json.dumps(SAMPLE, indent=2),
        "event_types": EVENT_TYPES,
        "errors": errors,
        "dry_run": dry_run,
        "sent": sent,
    }
    return TemplateResponse(request, "admin/deliveries/tester.html", context)


def viewable_destinations(request: HttpRequest) -> list[Destination]:
    """Every destination the user may view (credentials left out: the page never needs them)."""
    if not request.user.has_perm("integrations.view_destination"):
        return []
    fields = ("id", "name", "vendor", "enabled", "paused", "config", "filter", "mapping", "consent_categories")
    return list(Destination.objects.only(*fields).order_by("name"))


def first_sources(destination_ids: list[int]) -> dict[int, int]:
    """Each destination's first source by name: the source a test event is stored under unless chosen."""
    through = Destination.sources.through
    rows = through.objects.filter(destination_id__in=destination_ids).order_by("source__name", "source_id")
    first: dict[int, int] = {}
    for destination_id, source_id in rows.values_list("destination_id", "source_id"):
        first.setdefault(destination_id, source_id)
    return first


def prefilled(request: HttpRequest, destinations: list[Destination], first_source: dict[int, int]) -> dict[str, Any]:
    """What the form starts from: a test just sent (?sent=), a stored event (?event=, from the Debugger), or nothing."""
    sent_id, event_id = _int(request.GET.get("sent")), _int(request.GET.get("event"))
    if sent_id is not None:
        delivery = Delivery.objects.filter(pk=sent_id, is_test=True).select_related("event").first()
        if delivery is not None:
            return {
                "payload_text": event_text(delivery.event.payload),
                "destination_id": delivery.destination_id,
                "source_id": delivery.event.source_id,
                "sent": outcome_of(delivery),
            }
    if event_id is not None and request.user.has_perm("deliveries.view_event"):
        event = Event.objects.filter(pk=event_id).only("id", "source_id", "payload").first()
        if event is not None:
            return {"payload_text": event_text(event.payload), "source_id": event.source_id}
    return {"payload_text": ""}


def event_text(payload: Any) -> str:
    if isinstance(payload, dict):
        payload = {k: v for k, v in payload.items() if k not in RECEIPT_FIELDS}
    return json.dumps(payload, indent=2, ensure_ascii=False)


def parse_event(text: str) -> tuple[dict[str, Any], str]:
    """The event as the Tracking API would accept it (normalised), or why it would be refused."""
    if not text.strip():
        return {}, "Paste an event as JSON, or build one with the form."
    try:
        item = json.loads(text)
    except json.JSONDecodeError as exc:
        return {}, f"The event is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
    event_type = item.get("type") if isinstance(item, dict) else None
    try:
        return normalise(item, event_type, timezone.now()), ""
    except EventError as exc:
        return {}, f"The Tracking API would refuse this event ({exc.code}): {exc.message}"


# Dry run ----------------------------------------------------------------------------------------------


def dry_run_of(destination: Destination, payload: dict[str, Any]) -> dict[str, Any]:
    """Routing, the mapped payload and the vendor's requests for this event: no HTTP, nothing stored."""
    payload = {k: v for k, v in payload.items() if k != "_timestamp"}
    decision = decide(destination, payload)
    out: dict[str, Any] = {
        "destination": destination,
        "send": decision.send,
        "reason": decision.reason,
        "event": pretty_body(payload),
        "requests": [],
    }
    full = Destination.objects.get(pk=destination.pk)  # with its credentials: the vendor needs them to be built
    try:
        vendor = full.build_vendor()
        out["mapped"] = pretty_body(vendor.map_event(payload))
        out["requests"] = [
            {
                "method": r.get("method", ""),
                "url": r.get("url", ""),
                "note": r.get("note", ""),
                "text": http_message(f"{r.get('method', '')} {r.get('url', '')}", r.get("headers"), r.get("body")),
            }
            for r in vendor.preview(payload)
        ]
    except DeliveryError as exc:
        out["error"] = {"code": exc.code, "message": exc.message, "hint": exc.hint}
    except Exception as exc:  # a bug in a vendor or a mapping that fails on this event: say so, do not crash
        log.exception("dry run of destination %s failed", destination.pk)
        error = internal_error(f"the {destination.vendor_class.label} vendor", exc)
        out["error"] = {
            "code": error.code,
            "message": error.message.replace("; the delivery is retried", ""),
            "hint": "",
        }
    return out


# Send -------------------------------------------------------------------------------------------------


def start_test(destination: Destination, source: Source, payload: dict[str, Any]) -> Delivery:
    """Store the test event and its delivery, and queue the task that sends it (no vendor I/O in the request)."""
    now = timezone.now()
    payload = dict(payload)
    timestamp = payload.pop("_timestamp", now)
    name = payload.get("event")
    with transaction.atomic():
        event = Event.objects.create(
            source=source,
            message_id=payload["messageId"],
            type=payload["type"],
            event=name[:255] if isinstance(name, str) else "",
            user_id=payload.get("userId") or "",
            anonymous_id=payload.get("anonymousId") or "",
            email=email_of(payload),
            payload=payload,
            received_at=now,
            timestamp=timestamp,
            status=Event.Status.TEST,
        )
        delivery = Delivery.objects.create(
            event=event,
            destination=destination,
            status=Delivery.Status.PENDING,
            next_attempt_at=None,  # the normal drain claims only due rows: this one is the tester's task's alone
            is_test=True,
            created_at=now,
        )
    async_task("deliveries.tester.send_test", delivery.pk, task_name="send_test")
    return delivery


def send_test(delivery_id: int) -> str:
    """The task: claim the test delivery, send it once through the destination's vendor and record it."""
    timing = Timing.current()
    found = Delivery.objects.filter(pk=delivery_id, is_test=True).only("destination_id").first()
    if found is None:
        return "gone"
    destination = Destination.objects.get(pk=found.destination_id)
    try:
        vendor, build_error = build_vendor(destination), None
    except DeliveryError as exc:
        vendor, build_error = None, exc
    except Exception as exc:
        log.exception("could not build the vendor of destination %s", destination.pk)
        vendor, build_error = None, internal_error(f"the {destination.vendor} vendor's settings", exc)
    calls = vendor.calls_per_batch if vendor else 1
    lease = timezone.now() + timedelta(seconds=destination.timeout * (2 + calls) + timing.lease_margin)
    claimed = Delivery.objects.filter(pk=delivery_id, status=Delivery.Status.PENDING).update(
        status=Delivery.Status.IN_FLIGHT, lease_expires_at=lease
    )
    if not claimed:
        return "taken"
    delivery = Delivery.objects.select_related("event").get(pk=delivery_id)
    if vendor is not None:  # extra calls (a token, a lookup) still wait for the destination's rate limit
        vendor.http.gate = rate_gate(destination, time.monotonic() + timing.drain_seconds)
    started, clock = timezone.now(), time.monotonic()
    (result,) = send(vendor, [delivery], build_error)
    took = int((time.monotonic() - clock) * 1000)
    record(destination, [Sent(delivery, result, started, timezone.now(), took)], timing)
    return result.outcome


# Result -----------------------------------------------------------------------------------------------


def result_view(request: HttpRequest, delivery_id: int) -> HttpResponse:
    """The test delivery's outcome and exchanges, as JSON (with the rendered panel) for the page to poll."""
    check_permission(request)
    delivery = get_object_or_404(Delivery.objects.select_related("event"), pk=delivery_id, is_test=True)
    outcome = outcome_of(delivery)
    data = {key: outcome[key] for key in ("status", "status_label", "done", "error_code", "error_message", "hint")}
    data["exchanges"] = [
        {key: x[key] for key in ("attempt", "request", "response", "error", "duration_ms")}
        for x in outcome["exchanges"]
    ]
    data["html"] = render_to_string("admin/deliveries/tester_result.html", {"sent": outcome}, request)
    return JsonResponse(data)


def outcome_of(delivery: Delivery) -> dict[str, Any]:
    attempts = list(Attempt.objects.filter(delivery_id=delivery.pk).order_by("number"))
    exchanges = [
        {"attempt": attempt.number, **exchange} for attempt in attempts for exchange in attempt.exchanges or []
    ]
    total = len(exchanges)
    for n, x in enumerate(exchanges, 1):
        request, response = x.get("request") or {}, x.get("response")
        x.setdefault("response", None)
        x.setdefault("error", "")
        x.setdefault("duration_ms", None)
        status = response.get("status") if response else None
        x["number"], x["total"] = n, total
        x["ok"] = status is not None and 200 <= status < 300
        x["outcome"] = f"HTTP {status}" if response else x["error"] or "no answer"
        x["took"] = duration(x["duration_ms"])
        x["request_text"] = http_message(
            f"{request.get('method', '')} {request.get('url', '')}", request.get("headers"), request.get("body")
        )
        x["response_text"] = (
            http_message(x["outcome"], response.get("headers"), response.get("body")) if response else x["outcome"]
        )
    return {
        "id": delivery.pk,
        "event_id": delivery.event_id,
        "status": delivery.status,
        "status_label": delivery.get_status_display().capitalize(),
        "done": delivery.status in DONE,
        "error_code": delivery.error_code,
        "error_message": delivery.error_message,
        "hint": delivery.hint,
        "attempts": len(attempts),
        "duration": duration(sum(a.duration_ms for a in attempts)) if attempts else "",
        "exchanges": exchanges,
        "result_url": reverse("admin:deliveries_event_tester_result", args=[delivery.pk]),
        "delivery_url": reverse("admin:deliveries_delivery_change", args=[delivery.pk]),
    }


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None

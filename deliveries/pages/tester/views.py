"""The Event Tester's page: the form (a destination, a source, the event as JSON or built field by field), a dry
run or a test send, and the test send's result for the page to poll."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.http import urlencode

from deliveries.engine.routing import decide
from deliveries.models import Delivery, Event
from deliveries.pages.base import check_permission, page_context
from deliveries.pages.tester.dry_run import dry_run_of
from deliveries.pages.tester.event import parse_event
from deliveries.pages.tester.send import first_sources, outcome_of, start_test
from integrations.models import Destination, Source
from integrations.spec import EVENT_TYPES

PERMISSION = "deliveries.use_event_tester"
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


# The page ---------------------------------------------------------------------------------------------


def tester_view(model_admin: Any, request: HttpRequest) -> HttpResponse:
    check_permission(request, PERMISSION)
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
        **page_context(model_admin, request, "Event Tester"),
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
    return TemplateResponse(request, "admin/deliveries/tester/page.html", context)


def viewable_destinations(request: HttpRequest) -> list[Destination]:
    """Every destination the user may view (credentials left out: the page never needs them)."""
    if not request.user.has_perm("integrations.view_destination"):
        return []
    fields = ("id", "name", "vendor", "enabled", "paused", "config", "filter", "mapping", "consent_categories")
    return list(Destination.objects.only(*fields).order_by("name"))


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


# Result -----------------------------------------------------------------------------------------------


def result_view(request: HttpRequest, delivery_id: int) -> HttpResponse:
    """The test delivery's outcome and exchanges, as JSON (with the rendered panel) for the page to poll."""
    check_permission(request, PERMISSION)
    delivery = get_object_or_404(Delivery.objects.select_related("event"), pk=delivery_id, is_test=True)
    outcome = outcome_of(delivery)
    data = {key: outcome[key] for key in ("status", "status_label", "done", "error_code", "error_message", "hint")}
    data["exchanges"] = [
        {key: x[key] for key in ("attempt", "request", "response", "error", "duration_ms")}
        for x in outcome["exchanges"]
    ]
    data["logs"] = [{key: c[key] for key in ("attempt", "lines")} for c in outcome["logs"]]
    data["html"] = render_to_string("admin/deliveries/tester/result.html", {"sent": outcome}, request)
    return JsonResponse(data)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None

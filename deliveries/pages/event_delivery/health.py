"""Event Delivery's rate and circuit panel: the rate a destination is sent at now and why (adaptive or fixed), its
circuit breaker (open since when, why, the next probe) and "Close circuit and resume now"."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from deliveries.engine import adaptive, circuit
from deliveries.engine.slots import kick
from deliveries.models import Circuit, RateBucket
from deliveries.pages.base import check_permission
from integrations.models import Destination

CLOSE_PERMISSION = "integrations.change_destination"
LIMIT_FIELDS = ("vendor", "rate_mode", "rate_limit", "rate_period", "concurrency")  # what limits() reads


def urls(model_admin: Any) -> list[URLPattern]:
    wrap = model_admin.admin_site.admin_view
    return [
        path(
            "event-delivery/<int:destination_id>/close-circuit/",
            wrap(lambda r, destination_id: close_circuit_view(r, destination_id)),
            name="deliveries_delivery_event_delivery_close_circuit",
        )
    ]


def health_of(destinations: list[Destination], now: datetime | None = None) -> dict[int, dict[str, Any]]:
    """Each destination's rate now and why, and its circuit: two reads for any number of destinations."""
    now = now or timezone.now()
    ids = [d.pk for d in destinations]
    buckets = {b.destination_id: b for b in RateBucket.objects.filter(destination_id__in=ids)}
    circuits = {c.destination_id: c for c in Circuit.objects.filter(destination_id__in=ids)}
    return {d.pk: {**rate_of(d, buckets.get(d.pk), now), "circuit": circuits.get(d.pk)} for d in destinations}


def rate_of(destination: Destination, bucket: RateBucket | None, now: datetime) -> dict[str, Any]:
    """The rate sent at now ("250/s"), the limit, why, and since when."""
    ceiling, period = adaptive.ceiling_of(destination)
    limit = adaptive.rate_text(ceiling, period)
    if not destination.adaptive:
        return {
            "mode": "fixed",
            "rate": limit,
            "limit": limit,
            "reduced": False,
            "reason": "a fixed limit",
            "since": None,
        }
    share, changes = adaptive.level(destination, bucket, now) if bucket is not None else (1.0, {})
    reason = changes.get("rate_reason", bucket.rate_reason if bucket else "")
    since = changes.get("rate_changed_at", bucket.rate_changed_at if bucket else None)
    if share >= 1 and not reason.startswith("back at the limit"):
        reason, since = "at the limit: no 429, 5xx or timeout lately", None
    return {
        "mode": "adaptive",
        "rate": adaptive.rate_text(ceiling * share, period),
        "limit": limit,
        "reduced": share < 1,
        "reason": reason,
        "since": since,
    }


def panel_context(destination: Destination, request: HttpRequest) -> dict[str, Any]:
    """What the page's include (health.html) reads."""
    health = health_of([destination])[destination.pk]
    return {
        "health": health,
        "can_close_circuit": request.user.has_perm(CLOSE_PERMISSION),
        "close_circuit_url": reverse("admin:deliveries_delivery_event_delivery_close_circuit", args=[destination.pk]),
    }


def close_circuit_view(request: HttpRequest, destination_id: int) -> HttpResponse:
    """Close circuit and resume now: the backlog goes out at once (a 5xx again counts towards opening it anew)."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    check_permission(request, CLOSE_PERMISSION)
    destination = get_object_or_404(Destination.objects.only("id", "name"), pk=destination_id)
    who = request.user.get_username()
    if circuit.close(destination.pk, f"closed by hand by {who}"):
        kick(destination.pk, fill=True)
        messages.success(request, f"The circuit of {destination.name} is closed: its waiting deliveries go out now.")
    else:
        messages.info(request, f"The circuit of {destination.name} was not open.")
    return HttpResponseRedirect(reverse("admin:deliveries_delivery_event_delivery", args=[destination.pk]))

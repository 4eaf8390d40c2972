"""The Event Tester's test send: the event stored as a test from a source, its delivery queued for the engine's
send_once task (no vendor I/O in the request), and its outcome with every HTTP exchange, page by page."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django_q.tasks import async_task

from deliveries.ingest.writes import insert_event
from deliveries.models import Attempt, Delivery, Event
from integrations.admin.exchanges import duration, http_message, render_logs
from integrations.models import Destination, Source

SEND_TASK = "deliveries.engine.send_once.send_once"


def start_test(destination: Destination, source: Source, payload: dict[str, Any]) -> Delivery:
    """Store the test event and its delivery, and queue the task that sends it (no vendor I/O in the request)."""
    now = timezone.now()
    with transaction.atomic():
        event_id = insert_event(source, dict(payload), now, Event.Status.TEST)  # the columns ingest takes
        delivery = Delivery.objects.create(
            event_id=event_id,
            destination=destination,
            status=Delivery.Status.PENDING,
            next_attempt_at=None,  # the normal drain claims only due rows: this one is the tester's task's alone
            is_test=True,
            created_at=now,
        )
    async_task(SEND_TASK, delivery.pk, task_name="send_test")
    return delivery


def first_sources(destination_ids: list[int]) -> dict[int, int]:
    """Each destination's first source by name: the source a test event is stored under unless chosen."""
    through = Destination.sources.through
    rows = through.objects.filter(destination_id__in=destination_ids).order_by("source__name", "source_id")
    first: dict[int, int] = {}
    for destination_id, source_id in rows.values_list("destination_id", "source_id"):
        first.setdefault(destination_id, source_id)
    return first


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
        "done": delivery.status in Delivery.FINISHED,
        "error_code": delivery.error_code,
        "error_message": delivery.error_message,
        "hint": delivery.hint,
        "attempts": len(attempts),
        "duration": duration(sum(a.duration_ms for a in attempts)) if attempts else "",
        "exchanges": exchanges,
        # A destination function's console output, per attempt (a vendor's attempts have none).
        "logs": [{"attempt": a.number, "lines": a.logs, "html": render_logs(a.logs)} for a in attempts if a.logs],
        "result_url": reverse("admin:deliveries_event_tester_result", args=[delivery.pk]),
        "delivery_url": reverse("admin:deliveries_delivery_change", args=[delivery.pk]),
    }

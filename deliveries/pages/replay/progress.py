"""Where a replay stands, for its progress page (polled until every queued delivery has finished); once nothing
it queued waits any more, its final counts are stored on the Replay row."""

from __future__ import annotations

from typing import Any

from django.db.models import Count
from django.utils import timezone

from deliveries.models import Delivery, Replay
from deliveries.pages.display import moment


def progress(replay: Replay) -> dict[str, Any]:
    """Where the replay stands; once nothing it queued waits any more, its final counts are stored."""
    by_status: dict[str, int] = {}
    if replay.status in (Replay.Status.SENDING, Replay.Status.FAILED) or (
        replay.status == Replay.Status.RUNNING and replay.queued
    ):
        by_status = dict(
            Delivery.objects.filter(replay=replay).order_by().values_list("status").annotate(n=Count("pk"))
        )
    if replay.status == Replay.Status.DONE:
        delivered, failed, filtered, waiting = replay.delivered, replay.failed, 0, 0
    else:
        delivered, failed = by_status.get("delivered", 0), by_status.get("failed", 0)
        filtered = by_status.get("filtered", 0)
        waiting = sum(by_status.get(status, 0) for status in Delivery.WAITING)
        if replay.status == Replay.Status.SENDING and not waiting:
            now = timezone.now()
            Replay.objects.filter(pk=replay.pk, status=Replay.Status.SENDING).update(
                status=Replay.Status.DONE, delivered=delivered, failed=failed, finished_at=now
            )
            replay.status, replay.delivered, replay.failed, replay.finished_at = "done", delivered, failed, now
    skipped_in_flight = replay.processed - replay.queued - replay.skipped_delivered - replay.skipped_filtered
    if replay.status == Replay.Status.RUNNING:
        percent = 100 * replay.processed / replay.total if replay.total else 0
        phase = f"Queuing deliveries: {replay.processed:,} of {replay.total:,} looked at."
    elif replay.status == Replay.Status.QUEUED:
        percent, phase = 0, "Waiting for a worker to start the replay."
    else:
        finished = replay.queued - waiting
        percent = 100 * finished / replay.queued if replay.queued else 100
        phase = f"Sent {finished:,} of {replay.queued:,} queued deliveries."
        if replay.status == Replay.Status.DONE:
            phase = "Done: " + phase[0].lower() + phase[1:]
    paused = [
        d.name
        for d in replay.destinations.only("name", "paused", "enabled").order_by("name")
        if (d.paused or not d.enabled) and replay.status != Replay.Status.DONE
    ]
    return {
        "status": replay.status,
        "status_label": replay.get_status_display().capitalize(),
        "done": replay.status in (Replay.Status.DONE, Replay.Status.FAILED) and not waiting,
        "percent": round(min(percent, 100), 1),
        "phase": phase,
        "total": replay.total,
        "processed": replay.processed,
        "queued": replay.queued,
        "skipped_delivered": replay.skipped_delivered,
        "skipped_filtered": replay.skipped_filtered,
        "skipped_in_flight": max(skipped_in_flight, 0),
        "delivered": delivered,
        "failed": failed,
        "filtered": filtered,
        "waiting": waiting,
        "error": replay.error,
        "paused": paused,
        "finished_at": moment(replay.finished_at) if replay.finished_at else "",
    }

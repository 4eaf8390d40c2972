"""The sweeper (every few seconds, in `manage.py worker`): count the attempts of workers that died (expired
leases), queue due work, probe open circuits, fold a chunk of events into the Schema page's counts, evaluate
alerts (engine/alerts/, at most every ALERT_EVALUATE_SECONDS) and, once a minute, purge what is past its retention.
And Retry now, which makes deliveries due at once."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from deliveries.engine import alerts, schema_fold
from deliveries.engine.probe import probe_due
from deliveries.engine.purge import purge_if_due
from deliveries.engine.record import record
from deliveries.engine.send import Sent
from deliveries.engine.slots import kick, kick_on_commit
from deliveries.engine.timing import Timing
from deliveries.models import Delivery
from integrations.vendors import Result

EXPIRED_PER_SWEEP = 500
RETRY_CHUNK = 1000  # delivery ids per UPDATE: "select all" may pick many thousands
WORKER_LOST_HINT = (
    "If this repeats for the same event, the event may be crashing the worker: the worker's log has the details."
)


def sweep() -> dict[str, int]:
    """Count the attempts of workers that died (lease expired) and kick every destination with due work."""
    now = timezone.now()
    expired = expire_leases(now, Timing.current())
    due = set(
        Delivery.objects.filter(status__in=Delivery.DUE, next_attempt_at__lte=now)
        .values_list("destination_id", flat=True)
        .distinct()
    )
    kicked = sum(kick(destination_id, fill=True) for destination_id in due)
    probed = probe_due(now)  # open circuits (circuit.py): one delivery now and then
    folded = schema_fold.fold(seconds=0.5)  # the Schema page's counts, a time-boxed chunk per sweep
    alerted = alerts.run()  # at most every ALERT_EVALUATE_SECONDS; never raises
    purged = purge_if_due()  # rows past their retention, time-boxed, once a minute (more often while behind)
    return {
        "expired": expired,
        "destinations": len(due),
        "kicked": kicked,
        "probed": probed,
        "folded": folded,
        "purged": purged.rows if purged else 0,
        **alerted,
    }


def expire_leases(now: datetime, timing: Timing) -> int:
    """A delivery still in flight after its lease was held by a worker that crashed, was killed or timed out,
    perhaps because of this very event: count that as an attempt, so backoff and the retry deadline apply and
    an event that kills the worker every time is not tried for ever."""
    expired = list(
        Delivery.objects.filter(status=Delivery.Status.IN_FLIGHT, lease_expires_at__lt=now)
        .select_related("event", "destination")
        .defer("destination__credentials")
        .order_by("lease_expires_at")[:EXPIRED_PER_SWEEP]
    )
    lost = Result(
        "retry",
        error_code="worker_lost",
        error_message=(
            "The worker stopped while this delivery was in flight (it crashed, was killed or ran out of time); "
            "whether the destination got it is unknown, so it is sent again."
        ),
        hint=WORKER_LOST_HINT,
    )
    by_destination: dict[int, list[Sent]] = {}
    for delivery in expired:
        by_destination.setdefault(delivery.destination_id, []).append(Sent(delivery, lost, now, now, 0))
    return sum(record(sent[0].delivery.destination, sent, timing) for sent in by_destination.values())


def retry_now(delivery_ids: Iterable[int]) -> int:
    """Send failed, retrying and pending deliveries at once (the admin's Retry now, Event Delivery's Retry these);
    returns how many.

    Failed ones come back as retrying (one more try; past their retry deadline a retryable error fails them
    again), pending ones only become due now. Delivered, filtered and in-flight ones are left alone.
    """
    ids = list(delivery_ids)
    count = 0
    with transaction.atomic():  # the kicks run on commit, once every row is due
        for start in range(0, len(ids), RETRY_CHUNK):
            count += _retry(ids[start : start + RETRY_CHUNK])
    return count


def _retry(delivery_ids: list[int]) -> int:
    now = timezone.now()
    count = Delivery.objects.filter(
        id__in=delivery_ids, status__in=[Delivery.Status.FAILED, Delivery.Status.RETRYING]
    ).update(status=Delivery.Status.RETRYING, next_attempt_at=now)
    count += Delivery.objects.filter(id__in=delivery_ids, status=Delivery.Status.PENDING).update(next_attempt_at=now)
    kick_on_commit(set(Delivery.objects.filter(id__in=delivery_ids).values_list("destination_id", flat=True)))
    return count

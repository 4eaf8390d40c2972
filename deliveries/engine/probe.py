"""Probes of open circuits (circuit.py): the sweeper starts one when a circuit's next probe is due; the probe task
sends one waiting delivery. It getting through closes the circuit and kicks the backlog; a failure doubles the
wait before the next probe, up to a cap. Only one probe of a destination runs at a time, however many sweepers."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone
from django_q.tasks import async_task

from deliveries.engine import circuit
from deliveries.engine.claim import lease_for
from deliveries.engine.record import record
from deliveries.engine.send import send_group, vendor_or_error
from deliveries.engine.slots import kick
from deliveries.engine.timing import Timing
from deliveries.models import Circuit, Delivery
from integrations.models import Destination

PROBE_TASK = "deliveries.engine.probe.probe"
PROBE_LEASE = timedelta(minutes=5)  # a probe that died is started again after this long


def probe_due(now: datetime | None = None) -> int:
    """The sweeper's part: start a probe for every open circuit whose next probe is due; return how many."""
    now = now or timezone.now()
    due = Circuit.objects.filter(opened_at__isnull=False, next_probe_at__lte=now).values_list("id", "destination_id")
    started = 0
    for circuit_id, destination_id in list(due):
        # Taking the probe moves the next one past its lease: two sweepers never probe the same destination.
        if Circuit.objects.filter(id=circuit_id, next_probe_at__lte=now).update(next_probe_at=now + PROBE_LEASE):
            async_task(PROBE_TASK, destination_id, task_name="probe")
            started += 1
    return started


def probe(destination_id: int) -> str:
    """The task: send the destination's first waiting delivery; close the circuit if it gets through."""
    destination = Destination.objects.filter(id=destination_id).defer("credentials", "insert_secrets").first()
    if destination is None:
        return "gone"
    if not destination.enabled or destination.paused:
        return "paused"  # probed again after the lease, in case someone resumes it
    timing = Timing.current()
    vendor, build_error = vendor_or_error(destination, time.monotonic() + timing.drain_seconds)
    delivery = claim_probe(destination, lease_for(destination, vendor, timing))
    if delivery is None:
        if circuit.close(destination_id, "closed: no delivery was waiting to probe with"):
            kick(destination_id, fill=True)
        return "nothing to probe"
    sent = send_group(vendor, [delivery], build_error)
    record(destination, sent, timing)  # circuit.observe() closes the circuit if it got through
    if not circuit.is_open(destination_id):
        kick(destination_id, fill=True)
        return "closed"
    next_probe(destination_id)
    return "still open"


def claim_probe(destination: Destination, lease: timedelta) -> Delivery | None:
    """Mark the waiting delivery due first (due yet or not: a failed probe's own backoff must not stop the next
    probe) in flight for the probe; None when nothing waits."""
    waiting = Delivery.objects.filter(destination=destination, status__in=Delivery.DUE, is_test=False)
    first = waiting.order_by("next_attempt_at", "id").values_list("id", flat=True).first()
    if first is None:
        return None
    expires = timezone.now() + lease
    if not Delivery.objects.filter(id=first, status__in=Delivery.DUE).update(
        status=Delivery.Status.IN_FLIGHT, lease_expires_at=expires
    ):
        return None  # taken meanwhile (a drain of a circuit just closed by hand): the next probe tries again
    return Delivery.objects.select_related("event").get(id=first)


def next_probe(destination_id: int) -> None:
    """The probe failed: wait twice as long before the next one, up to the cap."""
    now = timezone.now()
    found = Circuit.objects.filter(destination_id=destination_id, opened_at__isnull=False).first()
    if found is None:
        return
    interval = min(settings.CIRCUIT_PROBE_CAP_SECONDS, max(settings.CIRCUIT_PROBE_SECONDS, found.probe_interval * 2))
    Circuit.objects.filter(id=found.id, opened_at__isnull=False).update(
        probe_interval=interval, next_probe_at=now + timedelta(seconds=interval)
    )

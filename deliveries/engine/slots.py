"""Concurrency slots and kicks: a drain task holds one of its destination's slots (a Slot row) while it sends, so
the limit holds across all workers and machines; a kick queues a drain when a slot is free (and the destination's
circuit is closed: circuit.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django_q.tasks import async_task

from deliveries.engine import circuit, cluster
from deliveries.engine.timing import Timing
from deliveries.models import Slot
from integrations.models import Destination

DRAIN_TASK = "deliveries.engine.drain.drain"


def _free_slot_filter(now: datetime) -> Q:
    return Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now)


def kick(destination_id: int, *, fill: bool = False) -> int:
    """Queue a drain for the destination if a concurrency slot is free (all free slots when `fill`).

    Every accepted request calls this: two reads when every slot is busy (the drains holding them will see the
    new work), a conditional update and an enqueue per drain started otherwise.
    """
    fields = ("id", "enabled", "paused", "vendor", "concurrency")
    found = Destination.objects.filter(id=destination_id).only(*fields)
    destination = found.annotate(circuit_opened_at=F("circuit__opened_at")).first()
    if destination is None or not destination.enabled or destination.paused or destination.circuit_opened_at:
        return 0
    # Never every delivery process of the hub for one destination: a slow one must leave a process for the others.
    wanted = destination.concurrency or destination.vendor_class.default_concurrency
    concurrency = min(wanted, max(1, cluster.processes() - 1))
    timing = Timing.current()
    started = 0
    while True:
        now = timezone.now()
        slots = list(Slot.objects.filter(destination_id=destination_id).values_list("id", "number", "lease_expires_at"))
        free = [i for i, number, lease in slots if number < concurrency and (lease is None or lease < now)]
        if not free:
            if len(slots) >= concurrency:
                return started
            _create_slots(destination_id, concurrency)
            continue
        for slot_id in free[: concurrency if fill else 1]:
            token = uuid.uuid4().hex
            taken = Slot.objects.filter(_free_slot_filter(now), id=slot_id).update(
                token=token, lease_expires_at=now + timedelta(seconds=timing.queue_lease)
            )
            if taken:
                async_task(DRAIN_TASK, destination_id, slot_id, token, task_name="drain")
                started += 1
                if not fill:
                    return started
        return started


def kick_on_commit(destination_ids: Iterable[int]) -> None:
    """Once the caller's transaction commits, start a drain in every free slot of these destinations (a retry,
    a replay or a resume made their work due now, not at the sweeper's next pass)."""
    ids = list(destination_ids)
    transaction.on_commit(lambda: [kick(destination_id, fill=True) for destination_id in ids])


def kick_resumed(sender: Any, destination_ids: list[int], **kwargs: Any) -> None:
    """integrations' destinations_resumed signal: send what waited for resumed destinations now, closing their
    circuits if open (a person said resume: circuit.py)."""
    for destination_id in destination_ids:
        circuit.close(destination_id, "closed by hand: delivery resumed in the admin")
    kick_on_commit(destination_ids)


def _create_slots(destination_id: int, concurrency: int) -> None:
    existing = set(Slot.objects.filter(destination_id=destination_id).values_list("number", flat=True))
    missing = [Slot(destination_id=destination_id, number=n) for n in range(concurrency) if n not in existing]
    try:
        with transaction.atomic():
            Slot.objects.bulk_create(missing)
    except IntegrityError:
        pass  # another process made them first


def take_slot(slot_id: int, token: str, hold: timedelta) -> bool:
    """The drain queued for this slot holds it for `hold` from now; False when the slot was lost meanwhile."""
    return bool(Slot.objects.filter(id=slot_id, token=token).update(lease_expires_at=timezone.now() + hold))


def release_slot(slot_id: int, token: str) -> None:
    Slot.objects.filter(id=slot_id, token=token).update(lease_expires_at=None, token="")


def busy_slots() -> int:
    """Slots held by a drain now, across every destination."""
    return Slot.objects.filter(lease_expires_at__gt=timezone.now()).count()

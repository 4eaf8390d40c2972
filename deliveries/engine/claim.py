"""Claims and leases: take due deliveries for this worker (no two workers get the same one), renew, give back.

A claim is identified by its lease: claim() stamps the rows it takes with one `lease_expires_at` (to the
microsecond), and every later write of this worker (renew, record, release) matches on status in_flight and
that exact value. A delivery whose lease expired and that another worker (or the sweeper) took meanwhile no
longer matches, so a late worker cannot overwrite what the new holder did.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, Q, Value, When
from django.utils import timezone

from deliveries.engine.rate import take_tokens
from deliveries.engine.timing import Timing
from deliveries.models import Delivery
from integrations.models import Destination
from integrations.vendors import Vendor


def has_due_work(destination_id: int, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    return Delivery.objects.filter(
        destination_id=destination_id, status__in=Delivery.DUE, next_attempt_at__lte=now
    ).exists()


def lease_for(destination: Destination, vendor: Vendor | None, timing: Timing) -> timedelta:
    """How long a claim of one group may be held: every call of a send (a token, a lookup, the post) may take
    the destination's timeout."""
    calls = vendor.calls_per_batch if vendor else 1
    seconds = destination.timeout * (2 + calls) + timing.lease_margin
    if vendor is not None:
        seconds += vendor.run_seconds  # a function's own time limit, beyond its HTTP calls'
        if vendor.insert_step is not None:  # each event of the group runs the insert function first
            seconds += settings.FUNCTION_TIMEOUT * vendor.max_batch
    return timedelta(seconds=seconds)


def claim(destination: Destination, limit: int, lease: timedelta) -> list[Delivery]:
    """Mark up to `limit` due deliveries in flight for this worker; no two workers get the same one."""
    return claim_within_rate(destination, limit, lease, None)[0]


def claim_within_rate(
    destination: Destination, limit: int, lease: timedelta, group_size: int | None
) -> tuple[list[Delivery], float]:
    """claim(), taking the rate limit's tokens in the same write transaction when `group_size` (events per
    vendor call) is given: only as many whole groups as there are tokens for are claimed, the rest wait for the
    next token untouched (no attempt spent). Returns the claimed deliveries and, when some have to wait, the
    seconds until that token (else 0).
    """
    now = timezone.now()
    expires = now + lease
    if not has_due_work(destination.id, now):
        return [], 0.0  # a read: on SQLite, taking the write lock to find nothing would delay every other writer
    wait = 0.0
    with transaction.atomic():
        query = Delivery.objects.filter(destination=destination, status__in=Delivery.DUE, next_attempt_at__lte=now)
        if connection.features.has_select_for_update_skip_locked:
            query = query.select_for_update(skip_locked=True)
        ids = list(query.order_by("next_attempt_at", "id").values_list("id", flat=True)[:limit])
        if ids and group_size:
            granted, wait = take_tokens(destination, math.ceil(len(ids) / group_size))
            ids, held_back = ids[: granted * group_size], ids[granted * group_size :]
            if held_back:
                Delivery.objects.filter(id__in=held_back).update(next_attempt_at=now + timedelta(seconds=wait))
        if not ids:
            return [], wait
        Delivery.objects.filter(id__in=ids, status__in=Delivery.DUE).update(
            status=Delivery.Status.IN_FLIGHT, lease_expires_at=expires
        )
    held = Delivery.objects.filter(id__in=ids, status=Delivery.Status.IN_FLIGHT, lease_expires_at=expires)
    return list(held.select_related("event").order_by("id")), wait


def still_held(deliveries: list[Delivery]) -> Q:
    """The rows of these deliveries that this worker still holds (see the note on claims above)."""
    leases: dict[datetime | None, list[int]] = {}
    for d in deliveries:
        leases.setdefault(d.lease_expires_at, []).append(d.id)
    held = Q(pk__in=[])
    for lease, ids in leases.items():
        held |= Q(id__in=ids, lease_expires_at=lease)
    return held & Q(status=Delivery.Status.IN_FLIGHT)


def claim_test(delivery_id: int, lease: timedelta) -> Delivery | None:
    """Mark a test delivery (Event Tester) in flight for this worker: it is never due, so no drain claims it;
    None when someone took it first."""
    expires = timezone.now() + lease
    claimed = Delivery.objects.filter(pk=delivery_id, status=Delivery.Status.PENDING).update(
        status=Delivery.Status.IN_FLIGHT, lease_expires_at=expires
    )
    return Delivery.objects.select_related("event").get(pk=delivery_id) if claimed else None


def release(deliveries: list[Delivery], wait: float) -> None:
    """Give claimed deliveries back untouched (throttled, or out of time): no attempt is spent."""
    if not deliveries:
        return
    Delivery.objects.filter(still_held(deliveries)).update(
        status=Case(When(attempts=0, then=Value(Delivery.Status.PENDING)), default=Value(Delivery.Status.RETRYING)),
        next_attempt_at=timezone.now() + timedelta(seconds=wait),
        lease_expires_at=None,
    )


def renew(deliveries: list[Delivery], lease: timedelta) -> None:
    expires = timezone.now() + lease
    Delivery.objects.filter(still_held(deliveries)).update(lease_expires_at=expires)
    for d in deliveries:
        d.lease_expires_at = expires

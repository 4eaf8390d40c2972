"""The delivery engine: claim due deliveries, send them through their vendor, record what happened, retry.

Retries are data (Delivery.next_attempt_at, attempts); django-q2 only runs `drain` tasks. Each running drain
holds one of its destination's concurrency slots (a Slot row), so the limit holds across all workers and
machines; the rate limit is a token bucket row. A sweeper re-queues due work and expired leases.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, Q, Value, When
from django.utils import timezone
from django_q.conf import Conf
from django_q.tasks import async_task

from deliveries.models import Attempt, Delivery, RateBucket, Slot
from integrations.models import Destination
from integrations.vendors import DeliveryError, Result, Vendor

log = logging.getLogger("cdphub.engine")

CLAIM_LIMIT = 50
DUE = (Delivery.Status.PENDING, Delivery.Status.RETRYING)


@dataclass(frozen=True)
class Timing:
    """Engine timings from settings (tests shorten them)."""

    retry_base: float
    retry_cap: float
    lease_margin: float
    drain_seconds: float
    queue_lease: float

    @classmethod
    def current(cls) -> Timing:
        return cls(
            settings.DELIVERY_RETRY_BASE,
            settings.DELIVERY_RETRY_CAP,
            settings.DELIVERY_LEASE_MARGIN,
            settings.DELIVERY_DRAIN_SECONDS,
            settings.DELIVERY_QUEUE_LEASE,
        )


def backoff(attempts: int, retry_after: float | None, timing: Timing) -> float:
    """Exponential backoff with equal jitter; a vendor's Retry-After wins (capped at an hour)."""
    if retry_after is not None:
        return min(max(retry_after, 0.1), 3600.0) * random.uniform(1.0, 1.1)
    delay = min(timing.retry_cap, timing.retry_base * 2 ** max(attempts - 1, 0))
    return delay / 2 + random.uniform(0, delay / 2)


# Slots and kicks -------------------------------------------------------------------------------------


def _free_slot_filter(now: datetime) -> Q:
    return Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now)


def kick(destination_id: int, *, fill: bool = False) -> int:
    """Queue a drain for the destination if a concurrency slot is free (all free slots when `fill`)."""
    fields = ("id", "enabled", "paused", "vendor", "concurrency")
    destination = Destination.objects.filter(id=destination_id).only(*fields).first()
    if destination is None or not destination.enabled or destination.paused:
        return 0
    # Never every process of a cluster for one destination: a slow one must leave a process for the others.
    concurrency = min(destination.limits()[2], max(1, Conf.WORKERS - 1))
    timing = Timing.current()
    started = 0
    while True:
        now = timezone.now()
        free = list(
            Slot.objects.filter(
                _free_slot_filter(now), destination_id=destination_id, number__lt=concurrency
            ).values_list("id", flat=True)[: concurrency if fill else 1]
        )
        if not free:
            if Slot.objects.filter(destination_id=destination_id).count() >= concurrency:
                return started
            _create_slots(destination_id, concurrency)
            continue
        for slot_id in free:
            token = uuid.uuid4().hex
            taken = Slot.objects.filter(_free_slot_filter(now), id=slot_id).update(
                token=token, lease_expires_at=now + timedelta(seconds=timing.queue_lease)
            )
            if taken:
                async_task("deliveries.engine.drain", destination_id, slot_id, token, task_name="drain")
                started += 1
                if not fill:
                    return started
        return started


def _create_slots(destination_id: int, concurrency: int) -> None:
    existing = set(Slot.objects.filter(destination_id=destination_id).values_list("number", flat=True))
    missing = [Slot(destination_id=destination_id, number=n) for n in range(concurrency) if n not in existing]
    try:
        with transaction.atomic():
            Slot.objects.bulk_create(missing)
    except IntegrityError:
        pass  # another process made them first


def _release(slot_id: int, token: str) -> None:
    Slot.objects.filter(id=slot_id, token=token).update(lease_expires_at=None, token="")


def has_due_work(destination_id: int, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    return Delivery.objects.filter(destination_id=destination_id, status__in=DUE, next_attempt_at__lte=now).exists()


# Rate limit ------------------------------------------------------------------------------------------


def take_tokens(destination: Destination, want: int) -> tuple[int, float]:
    """Take up to `want` request tokens; return how many were granted and, if short, seconds to wait."""
    rate, period, _ = destination.limits()
    per_second = rate / period
    with transaction.atomic():
        now = timezone.now()
        query = RateBucket.objects.filter(destination=destination)
        if connection.features.has_select_for_update:
            query = query.select_for_update()
        bucket = query.first()
        if bucket is None:
            try:
                with transaction.atomic():
                    bucket = RateBucket.objects.create(destination=destination, tokens=rate, refilled_at=now)
            except IntegrityError:
                bucket = query.get()
        tokens = min(float(rate), bucket.tokens + (now - bucket.refilled_at).total_seconds() * per_second)
        granted = min(want, int(tokens))
        RateBucket.objects.filter(id=bucket.id).update(tokens=tokens - granted, refilled_at=now)
    wait = 0.0 if granted == want else (1 - (tokens - granted)) / per_second
    return granted, wait


# Claim, send, record ---------------------------------------------------------------------------------


def claim(destination: Destination, limit: int, lease: timedelta) -> list[Delivery]:
    """Mark up to `limit` due deliveries in flight for this worker; no two workers get the same one."""
    now = timezone.now()
    with transaction.atomic():
        query = Delivery.objects.filter(destination=destination, status__in=DUE, next_attempt_at__lte=now)
        if connection.features.has_select_for_update_skip_locked:
            query = query.select_for_update(skip_locked=True)
        ids = list(query.order_by("next_attempt_at", "id").values_list("id", flat=True)[:limit])
        if not ids:
            return []
        Delivery.objects.filter(id__in=ids, status__in=DUE).update(
            status=Delivery.Status.IN_FLIGHT, lease_expires_at=now + lease
        )
    return list(Delivery.objects.filter(id__in=ids).select_related("event").order_by("id"))


def release(deliveries: list[Delivery], wait: float) -> None:
    """Give claimed deliveries back untouched (throttled): no attempt is spent."""
    if not deliveries:
        return
    Delivery.objects.filter(id__in=[d.id for d in deliveries], status=Delivery.Status.IN_FLIGHT).update(
        status=Case(When(attempts=0, then=Value(Delivery.Status.PENDING)), default=Value(Delivery.Status.RETRYING)),
        next_attempt_at=timezone.now() + timedelta(seconds=wait),
        lease_expires_at=None,
    )


def send(vendor: Vendor | None, deliveries: list[Delivery], build_error: DeliveryError | None) -> list[Result]:
    if vendor is None:
        assert build_error is not None
        return [build_error.result([]) for _ in deliveries]
    try:
        results = vendor.deliver([d.event.payload for d in deliveries])
    except DeliveryError as exc:
        results = [exc.result(vendor.http.take_exchanges()) for _ in deliveries]
    except Exception as exc:  # a bug in a vendor must not lose the delivery: record it and retry
        log.exception("vendor %s crashed", vendor.key)
        error = f"Internal error in the {vendor.label} vendor: {exc!r}"[:500]
        results = [Result("retry", error_code="vendor_error", error_message=error) for _ in deliveries]
    if len(results) != len(deliveries):
        raise RuntimeError(f"{type(vendor).__name__}.deliver returned {len(results)} results for {len(deliveries)}")
    return results


def record(
    destination: Destination,
    deliveries: list[Delivery],
    results: list[Result],
    started: datetime,
    duration_ms: int,
    timing: Timing,
) -> None:
    """Write one Attempt per delivery and move each delivery on: delivered, retrying or failed."""
    now = timezone.now()
    attempts = []
    last_error = ""
    for delivery, result in zip(deliveries, results, strict=True):
        delivery.attempts += 1
        delivery.lease_expires_at = None
        outcome = result.outcome
        message = result.error_message
        if outcome == "retry":
            delay = backoff(delivery.attempts, result.retry_after, timing)
            deadline = delivery.event.received_at + destination.retry_deadline
            if delivery.is_test:
                outcome, message = "failed", message + " (test sends are not retried)"
            elif now + timedelta(seconds=delay) > deadline:
                outcome = "failed"
                message += f" (gave up after {delivery.attempts} attempts: the retry deadline has passed)"
            else:
                delivery.next_attempt_at = now + timedelta(seconds=delay)
        attempts.append(
            Attempt(
                delivery=delivery,
                number=delivery.attempts,
                started_at=started,
                duration_ms=duration_ms,
                outcome=outcome,
                status_code=result.status_code,
                error_code=result.error_code,
                error_message=message,
                exchanges=result.exchanges,
            )
        )
        if outcome == "delivered":
            delivery.status = Delivery.Status.DELIVERED
            delivery.delivered_at = now
            delivery.latency_ms = max(0, int((now - delivery.event.received_at).total_seconds() * 1000))
            delivery.error_code = delivery.error_message = delivery.hint = ""
        else:
            delivery.status = Delivery.Status.RETRYING if outcome == "retry" else Delivery.Status.FAILED
            delivery.error_code, delivery.error_message, delivery.hint = result.error_code, message, result.hint
            last_error = message
    with transaction.atomic():
        Attempt.objects.bulk_create(attempts)
        Delivery.objects.bulk_update(
            deliveries,
            [
                "status",
                "attempts",
                "next_attempt_at",
                "lease_expires_at",
                "error_code",
                "error_message",
                "hint",
                "delivered_at",
                "latency_ms",
                "updated_at",
            ],
        )
        changes = {}
        if any(r.ok for r in results):
            changes["last_delivered_at"] = now
        if last_error:
            changes.update(last_error=last_error[:1000], last_error_at=now)
        if changes:
            Destination.objects.filter(id=destination.id).update(**changes)


def drain(destination_id: int, slot_id: int, token: str) -> str:
    """The worker task: send this destination's due deliveries for a few seconds, then hand the slot back."""
    timing = Timing.current()
    stop_at = time.monotonic() + timing.drain_seconds
    destination = Destination.objects.filter(id=destination_id).first()
    if destination is None:
        return "gone"
    hold = timedelta(seconds=timing.drain_seconds + destination.timeout * 2 + timing.lease_margin)
    if not Slot.objects.filter(id=slot_id, token=token).update(lease_expires_at=timezone.now() + hold):
        return "slot lost"
    if not destination.enabled or destination.paused:
        _release(slot_id, token)
        return "paused"
    try:
        vendor, build_error = destination.build_vendor(), None
    except DeliveryError as exc:
        vendor, build_error = None, exc
    batch_size = vendor.max_batch if vendor else 1
    sent = 0
    out_of_time = False
    while True:
        if time.monotonic() >= stop_at:
            out_of_time = True
            break
        lease = timedelta(seconds=destination.timeout * 3 + timing.lease_margin)
        claimed = claim(destination, CLAIM_LIMIT, lease)
        if not claimed:
            break
        count, throttled = _send_claimed(destination, vendor, build_error, claimed, batch_size, lease, timing, stop_at)
        sent += count
        if throttled:
            break  # the rest waits for the rate limit; the sweeper queues it when it is due
    _release(slot_id, token)
    # In sync mode (tests) the drain runs inside kick(); chaining another would recurse, the sweeper follows up.
    if (out_of_time or has_due_work(destination_id)) and not Conf.SYNC:
        kick(destination_id)
    return f"sent {sent}"


def _send_claimed(
    destination: Destination,
    vendor: Vendor | None,
    build_error: DeliveryError | None,
    claimed: list[Delivery],
    batch_size: int,
    lease: timedelta,
    timing: Timing,
    stop_at: float,
) -> tuple[int, bool]:
    """Send claimed deliveries group by group within the rate limit; return (sent, throttled)."""
    groups = [claimed[i : i + batch_size] for i in range(0, len(claimed), batch_size)]
    granted, wait = take_tokens(destination, len(groups))
    if granted < len(groups) and wait <= 1.0 and time.monotonic() + wait < stop_at:
        time.sleep(wait)
        more, wait = take_tokens(destination, len(groups) - granted)
        granted += more
    lease_until = time.monotonic() + lease.total_seconds()
    sent = 0
    done = 0  # groups sent
    for group in groups[:granted]:
        if done and time.monotonic() >= stop_at:
            break  # the time box is over (the slot's lease counts on it): the next drain sends the rest
        if lease_until - time.monotonic() < destination.timeout + 1:
            remaining = [d.id for g in groups[groups.index(group) : granted] for d in g]
            Delivery.objects.filter(id__in=remaining, status=Delivery.Status.IN_FLIGHT).update(
                lease_expires_at=timezone.now() + lease
            )
            lease_until = time.monotonic() + lease.total_seconds()
        started = timezone.now()
        clock = time.monotonic()
        results = send(vendor, group, build_error)
        record(destination, group, results, started, int((time.monotonic() - clock) * 1000), timing)
        sent += len(group)
        done += 1
    release([d for g in groups[done:granted] for d in g], 0)
    release([d for g in groups[granted:] for d in g], wait)
    return sent, granted < len(groups)


# Sweeper ---------------------------------------------------------------------------------------------


def sweep() -> dict[str, int]:
    """Re-queue deliveries whose worker died (lease expired) and kick every destination with due work."""
    now = timezone.now()
    expired = Delivery.objects.filter(status=Delivery.Status.IN_FLIGHT, lease_expires_at__lt=now).update(
        status=Case(When(attempts=0, then=Value(Delivery.Status.PENDING)), default=Value(Delivery.Status.RETRYING)),
        next_attempt_at=now,
        lease_expires_at=None,
    )
    due = set(
        Delivery.objects.filter(status__in=DUE, next_attempt_at__lte=now)
        .values_list("destination_id", flat=True)
        .distinct()
    )
    kicked = sum(kick(destination_id, fill=True) for destination_id in due)
    return {"expired": expired, "destinations": len(due), "kicked": kicked}


def retry_now(delivery_ids: list[int]) -> int:
    """Put failed or retrying deliveries back in the queue at once (admin action); returns how many."""
    now = timezone.now()
    count = Delivery.objects.filter(
        id__in=delivery_ids, status__in=[Delivery.Status.FAILED, Delivery.Status.RETRYING]
    ).update(status=Delivery.Status.RETRYING, next_attempt_at=now)
    destinations = set(Delivery.objects.filter(id__in=delivery_ids).values_list("destination_id", flat=True))
    transaction.on_commit(lambda: [kick(d, fill=True) for d in destinations])
    return count

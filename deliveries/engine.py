"""The delivery engine: claim due deliveries, send them through their vendor, record what happened, retry.

Retries are data (Delivery.next_attempt_at, attempts); django-q2 only runs `drain` tasks. Each running drain
holds one of its destination's concurrency slots (a Slot row), so the limit holds across all workers and
machines; the rate limit is a token bucket row. A drain that runs out of work waits a moment for more (a steady
stream then needs no task per event). A sweeper counts the attempts of workers that died (expired leases) and
queues due work.
"""

from __future__ import annotations

import logging
import math
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Least
from django.utils import timezone
from django_q.conf import Conf
from django_q.tasks import async_task

from deliveries import rollups
from deliveries.models import Attempt, Delivery, RateBucket, Slot
from integrations.models import Destination
from integrations.vendors import DeliveryError, Result, Vendor

log = logging.getLogger("cdphub.engine")

CLAIM_LIMIT = 50
RECORD_EVERY = 25  # sends recorded in one write transaction ...
RECORD_SECONDS = 0.2  # ... or after this long, whichever comes first
LINGER_POLL = 0.02  # how often a drain with nothing to do looks for new work (see wait_for_work)


@dataclass(frozen=True)
class Timing:
    """Engine timings from settings (tests shorten them)."""

    retry_base: float
    retry_cap: float
    lease_margin: float
    drain_seconds: float
    queue_lease: float
    linger: float = 0.0

    @classmethod
    def current(cls) -> Timing:
        return cls(
            settings.DELIVERY_RETRY_BASE,
            settings.DELIVERY_RETRY_CAP,
            settings.DELIVERY_LEASE_MARGIN,
            settings.DELIVERY_DRAIN_SECONDS,
            settings.DELIVERY_QUEUE_LEASE,
            settings.DELIVERY_LINGER_SECONDS,
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
    """Queue a drain for the destination if a concurrency slot is free (all free slots when `fill`).

    Every accepted request calls this: two reads when every slot is busy (the drains holding them will see the
    new work), a conditional update and an enqueue per drain started otherwise.
    """
    fields = ("id", "enabled", "paused", "vendor", "concurrency")
    destination = Destination.objects.filter(id=destination_id).only(*fields).first()
    if destination is None or not destination.enabled or destination.paused:
        return 0
    # Never every process of a cluster for one destination: a slow one must leave a process for the others.
    wanted = destination.concurrency or destination.vendor_class.default_concurrency
    concurrency = min(wanted, max(1, Conf.WORKERS - 1))
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
    return Delivery.objects.filter(
        destination_id=destination_id, status__in=Delivery.DUE, next_attempt_at__lte=now
    ).exists()


# Rate limit ------------------------------------------------------------------------------------------


def bucket_shape(destination: Destination) -> tuple[float, float]:
    """The token bucket of a limit of `rate` calls per `period` seconds: (capacity, tokens per second).

    Up to a second, the bucket holds the whole rate (a burst within a second harms no one). For longer
    periods, which vendors count as a sliding window (Marketo: 100 calls per 20 s), it holds one second's worth
    and refills with the rest, so that no `period` ever sees more than `rate` calls: a full bucket of the whole
    rate would let twice the rate through in one window (the burst, then the refill).
    """
    rate, period, _ = destination.limits()
    if period <= 1:
        return float(rate), rate / period
    capacity = min(float(rate), max(1.0, rate / period))
    refill = rate - capacity if rate > capacity else rate  # a limit of 1 per period: at most 2 in a window
    return capacity, refill / period


def take_tokens(destination: Destination, want: int) -> tuple[int, float]:
    """Take up to `want` request tokens; return how many were granted and, if short, seconds to wait."""
    capacity, per_second = bucket_shape(destination)
    with transaction.atomic():
        now = timezone.now()
        query = RateBucket.objects.filter(destination=destination)
        if connection.features.has_select_for_update:
            query = query.select_for_update()
        bucket = query.first()
        if bucket is None:
            try:
                with transaction.atomic():
                    bucket = RateBucket.objects.create(destination=destination, tokens=capacity, refilled_at=now)
            except IntegrityError:
                bucket = query.get()
        tokens = min(capacity, bucket.tokens + (now - bucket.refilled_at).total_seconds() * per_second)
        granted = max(0, min(want, int(tokens)))  # negative while a vendor has the destination on hold
        RateBucket.objects.filter(id=bucket.id).update(tokens=tokens - granted, refilled_at=now)
    wait = 0.0 if granted == want else (1 - (tokens - granted)) / per_second
    return granted, wait


def hold(destination: Destination, seconds: float) -> None:
    """Empty the destination's bucket for `seconds`: the vendor said to slow down (429, 606, a quota), so no
    worker sends there until then."""
    now = timezone.now()
    tokens = -seconds * bucket_shape(destination)[1]
    if not RateBucket.objects.filter(destination=destination).update(tokens=tokens, refilled_at=now):
        try:
            with transaction.atomic():
                RateBucket.objects.create(destination=destination, tokens=tokens, refilled_at=now)
        except IntegrityError:
            RateBucket.objects.filter(destination=destination).update(tokens=tokens, refilled_at=now)


def rate_gate(destination: Destination, stop_at: float) -> Any:
    """What a vendor calls before each extra HTTP call (a token, a lookup): wait for a token of the rate limit,
    or, when the wait would outlast the drain, end the batch as throttled (it waits, no attempt is spent)."""

    def wait_for_token() -> None:
        while True:
            granted, wait = take_tokens(destination, 1)
            if granted:
                return
            if time.monotonic() + wait > stop_at:
                raise DeliveryError(
                    f"The destination's rate limit ({describe_limit(destination)}) allows no more calls now.",
                    code="rate_limited",
                    throttled=True,
                    retry_after=wait,
                )
            time.sleep(wait)

    return wait_for_token


def describe_limit(destination: Destination) -> str:
    rate, period, _ = destination.limits()
    return f"{rate} calls per {period:g} s"


def return_tokens(destination: Destination, count: int) -> None:
    """Give back tokens taken but not spent (the time box ended first), never above the bucket's size."""
    capacity = bucket_shape(destination)[0]
    RateBucket.objects.filter(destination=destination).update(tokens=Least(F("tokens") + count, capacity))


# Claim, send, record ---------------------------------------------------------------------------------
#
# A claim is identified by its lease: claim() stamps the rows it takes with one `lease_expires_at` (to the
# microsecond), and every later write of this worker (renew, record, release) matches on status in_flight and
# that exact value. A delivery whose lease expired and that another worker (or the sweeper) took meanwhile no
# longer matches, so a late worker cannot overwrite what the new holder did.

INTERNAL_ERROR_HINT = "This is a fault in cdphub, not in the destination: the worker's log has the details."
WORKER_LOST_HINT = (
    "If this repeats for the same event, the event may be crashing the worker: the worker's log has the details."
)


@dataclass
class Sent:
    """One delivery sent (or tried) and not yet recorded."""

    delivery: Delivery
    result: Result
    started: datetime
    finished: datetime
    duration_ms: int


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


def _held(deliveries: list[Delivery]) -> Q:
    """The rows of these deliveries that this worker still holds (see the note on claims above)."""
    leases: dict[datetime | None, list[int]] = {}
    for d in deliveries:
        leases.setdefault(d.lease_expires_at, []).append(d.id)
    held = Q(pk__in=[])
    for lease, ids in leases.items():
        held |= Q(id__in=ids, lease_expires_at=lease)
    return held & Q(status=Delivery.Status.IN_FLIGHT)


def release(deliveries: list[Delivery], wait: float) -> None:
    """Give claimed deliveries back untouched (throttled, or out of time): no attempt is spent."""
    if not deliveries:
        return
    Delivery.objects.filter(_held(deliveries)).update(
        status=Case(When(attempts=0, then=Value(Delivery.Status.PENDING)), default=Value(Delivery.Status.RETRYING)),
        next_attempt_at=timezone.now() + timedelta(seconds=wait),
        lease_expires_at=None,
    )


def _renew(deliveries: list[Delivery], lease: timedelta) -> None:
    expires = timezone.now() + lease
    Delivery.objects.filter(_held(deliveries)).update(lease_expires_at=expires)
    for d in deliveries:
        d.lease_expires_at = expires


_vendors: dict[int, tuple[datetime, Vendor]] = {}


def build_vendor(destination: Destination) -> Vendor:
    """The destination's vendor, kept per process while the destination is unchanged: its HTTP session keeps
    connections (and TLS sessions) open from one drain to the next, which is most of a single event's latency."""
    cached = _vendors.get(destination.id)
    if cached and cached[0] == destination.updated_at:
        return cached[1]
    vendor = destination.build_vendor()
    if len(_vendors) >= 256:
        _vendors.clear()
    _vendors[destination.id] = (destination.updated_at, vendor)
    return vendor


def internal_error(where: str, exc: BaseException) -> DeliveryError:
    """A bug in cdphub or a vendor: retried like a 5xx, with the exception's type only (its text may hold a
    secret: a URL with a token, a header value); the traceback goes to the worker log."""
    return DeliveryError(
        f"Internal error in {where} ({type(exc).__name__}); the delivery is retried.",
        code="internal_error",
        retryable=True,
        hint=INTERNAL_ERROR_HINT,
    )


def send(vendor: Vendor | None, deliveries: list[Delivery], build_error: DeliveryError | None) -> list[Result]:
    if vendor is None:
        assert build_error is not None
        return [build_error.result([]) for _ in deliveries]
    try:
        results = vendor.deliver([d.event.payload for d in deliveries])
        if len(results) != len(deliveries):
            raise RuntimeError(f"{type(vendor).__name__}.deliver returned {len(results)} results for {len(deliveries)}")
    except DeliveryError as exc:
        results = [exc.result(vendor.http.take_exchanges()) for _ in deliveries]
    except Exception as exc:  # a bug in a vendor must not lose the delivery, nor crash the drain every time
        log.exception("the %s vendor crashed on deliveries %s", vendor.key, [d.id for d in deliveries])
        error = internal_error(f"the {vendor.label} vendor", exc)
        exchanges = vendor.http.take_exchanges()
        results = [error.result(exchanges) for _ in deliveries]
    return results


def _send_group(vendor: Vendor | None, group: list[Delivery], build_error: DeliveryError | None) -> list[Sent]:
    started = timezone.now()
    clock = time.monotonic()
    results = send(vendor, group, build_error)
    duration_ms = int((time.monotonic() - clock) * 1000)
    finished = timezone.now()
    return [Sent(d, r, started, finished, duration_ms) for d, r in zip(group, results, strict=True)]


RECORDED_FIELDS = (
    "status",
    "attempts",
    "throttled",
    "next_attempt_at",
    "lease_expires_at",
    "error_code",
    "error_message",
    "hint",
    "delivered_at",
    "latency_ms",
    "updated_at",
)


def record(destination: Destination, sent: list[Sent], timing: Timing) -> int:
    """Write one Attempt per delivery this worker still holds and move it on: delivered, retrying or failed.

    Returns how many were recorded; a delivery re-claimed by someone else meanwhile is left to its new holder.
    """
    if not sent:
        return 0
    now = timezone.now()
    changes: list[tuple[Delivery, dict, Attempt]] = []
    for item in sent:
        delivery, result = item.delivery, item.result
        outcome = result.outcome
        throttled = outcome == "throttled"
        # A throttled try waits without counting: backoff and the attempt count see only the others.
        attempts = delivery.attempts + (0 if throttled else 1)
        number = delivery.attempts + delivery.throttled + 1
        message = result.error_message
        fields: dict[str, Any] = {"attempts": attempts, "lease_expires_at": None, "updated_at": now}
        if throttled:
            fields["throttled"] = delivery.throttled + 1
        if outcome in ("retry", "throttled"):
            if result.defer and result.retry_after is not None:  # a quota's reset, maybe hours away
                delay = min(result.retry_after, 26 * 3600.0) + random.uniform(0, 60)
            else:
                delay = backoff(max(attempts, 1), result.retry_after, timing)
            deadline = (delivery.retry_from or delivery.event.received_at) + destination.retry_deadline
            if delivery.is_test:
                outcome, message = "failed", message + " (test sends are not retried)"
            elif now + timedelta(seconds=delay) > deadline and not result.defer:
                outcome = "failed"
                message += f" (gave up after {number} attempts: the retry deadline has passed)"
            else:
                fields["next_attempt_at"] = now + timedelta(seconds=delay)
        if outcome == "delivered":
            latency = max(0, int((item.finished - delivery.event.received_at).total_seconds() * 1000))
            fields |= {"status": Delivery.Status.DELIVERED, "delivered_at": item.finished, "latency_ms": latency}
            fields |= {"error_code": "", "error_message": "", "hint": ""}
        else:
            status = Delivery.Status.FAILED if outcome == "failed" else Delivery.Status.RETRYING
            fields |= {"status": status, "error_code": result.error_code, "error_message": message}
            fields["hint"] = result.hint
        attempt = Attempt(
            delivery=delivery,
            number=number,
            started_at=item.started,
            duration_ms=item.duration_ms,
            outcome=outcome,
            status_code=result.status_code,
            error_code=result.error_code,
            error_message=message,
            hint=result.hint,
            exchanges=result.exchanges,
        )
        changes.append((delivery, fields, attempt))
    with transaction.atomic():
        query = Delivery.objects.filter(_held([d for d, _, _ in changes]))
        if connection.features.has_select_for_update:
            query = query.select_for_update()
        held = set(query.values_list("id", flat=True))
        recorded = [change for change in changes if change[0].id in held]
        for delivery, _, attempt in changes:
            if delivery.id not in held:
                log.warning(
                    "delivery %s was taken over after its lease expired; this worker's late %s is not recorded",
                    delivery.id,
                    attempt.outcome,
                )
        for delivery, fields, _ in recorded:
            for name, value in fields.items():
                setattr(delivery, name, value)
        _save_rows([delivery for delivery, _, _ in recorded], RECORDED_FIELDS)
        Attempt.objects.bulk_create([attempt for _, _, attempt in recorded])
        rollups.add(
            (destination.id, fields.get("delivered_at") or now, fields["status"], fields.get("latency_ms"))
            for delivery, fields, _ in recorded
            if fields["status"] in rollups.OUTCOMES and not delivery.is_test
        )
        update = {}
        if any(fields["status"] == Delivery.Status.DELIVERED for _, fields, _ in recorded):
            update["last_delivered_at"] = now
        errors = [attempt for _, fields, attempt in recorded if fields["status"] != "delivered"]
        if errors:
            last = errors[-1]
            update.update(
                last_error=last.error_message[:1000],
                last_error_code=last.error_code,
                last_error_hint=last.hint,
                last_error_at=now,
            )
        if update:
            Destination.objects.filter(id=destination.id).update(**update)
    return len(recorded)


def _save_rows(deliveries: list[Delivery], names: tuple[str, ...]) -> None:
    """Write these fields of each delivery with one UPDATE statement run for every row (executemany).

    What bulk_update() or one update() per row would do, without compiling a query per row or a CASE per field
    and row: that compiling cost more CPU than the HTTP call being recorded.
    """
    if not deliveries:
        return
    fields = [Delivery._meta.get_field(name) for name in names]
    quote = connection.ops.quote_name
    sql = "UPDATE {} SET {} WHERE {} = %s".format(
        quote(Delivery._meta.db_table),
        ", ".join(f"{quote(f.column)} = %s" for f in fields),
        quote(Delivery._meta.pk.column),
    )
    rows = [[f.get_db_prep_save(getattr(d, f.attname), connection) for f in fields] + [d.pk] for d in deliveries]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def drain(destination_id: int, slot_id: int, token: str) -> str:
    """The worker task: send this destination's due deliveries for a few seconds, then hand the slot back."""
    timing = Timing.current()
    stop_at = time.monotonic() + timing.drain_seconds
    # Credentials are read (and decrypted) only when the vendor is built, not on every drain.
    destination = Destination.objects.filter(id=destination_id).defer("credentials").first()
    if destination is None:
        return "gone"
    hold = timedelta(seconds=timing.drain_seconds + destination.timeout * 2 + timing.lease_margin)
    if not Slot.objects.filter(id=slot_id, token=token).update(lease_expires_at=timezone.now() + hold):
        return "slot lost"
    try:
        if not destination.enabled or destination.paused:
            return "paused"
        sent, out_of_time = _drain(destination, timing, stop_at)
    finally:
        _release(slot_id, token)  # whatever happened: a slot held by a crashed drain would idle until its lease ends
    # In sync mode (tests) the drain runs inside kick(); chaining another would recurse, the sweeper follows up.
    if (out_of_time or has_due_work(destination_id)) and not Conf.SYNC:
        kick(destination_id)
    return f"sent {sent}"


def _drain(destination: Destination, timing: Timing, stop_at: float) -> tuple[int, bool]:
    """Claim and send until nothing is due, the rate limit says wait, or the time box ends: (sent, out of time)."""
    try:
        vendor, build_error = build_vendor(destination), None
    except DeliveryError as exc:
        vendor, build_error = None, exc
    except Exception as exc:  # a bug building the vendor: each delivery gets an attempt, the retry rules apply
        log.exception("could not build the vendor of destination %s", destination.id)
        vendor, build_error = None, internal_error(f"the {destination.vendor} vendor's settings", exc)
    batch_size = vendor.max_batch if vendor else 1
    if vendor is not None:
        vendor.http.gate = rate_gate(destination, stop_at)
    calls = vendor.calls_per_batch if vendor else 1
    lease = timedelta(seconds=destination.timeout * (2 + calls) + timing.lease_margin)
    sent = 0
    while time.monotonic() < stop_at:
        claimed, wait = claim_within_rate(destination, max(CLAIM_LIMIT, batch_size), lease, batch_size)
        if claimed:
            sent += _send_claimed(destination, vendor, build_error, claimed, batch_size, lease, timing, stop_at)
        if wait:
            if wait <= 1.0 and time.monotonic() + wait < stop_at:
                time.sleep(wait)  # the next token is close: the deliveries held back are due again then
                continue
            return sent, False  # the rest waits for the rate limit; the sweeper queues it when it is due
        if not claimed:
            if wait_for_work(destination.id, min(stop_at, time.monotonic() + timing.linger)):
                continue
            return sent, False
    return sent, True


def wait_for_work(destination_id: int, until: float) -> bool:
    """Stay a moment for more work while the cluster has a process to spare; True as soon as some is due.

    A steady stream of events then finds a drain already running and polling: no drain task per event to queue,
    pick up from the broker, start and acknowledge, which was most of an event's latency and database writes.
    """
    if Conf.SYNC:
        return False  # the drain runs inline (tests, a web request): never wait there
    while time.monotonic() + LINGER_POLL < until:
        if Slot.objects.filter(lease_expires_at__gt=timezone.now()).count() >= Conf.WORKERS:
            return False  # every process may be wanted by a drain: hand this one back
        time.sleep(LINGER_POLL)
        if has_due_work(destination_id):
            return True
    return False


def _send_claimed(
    destination: Destination,
    vendor: Vendor | None,
    build_error: DeliveryError | None,
    claimed: list[Delivery],
    batch_size: int,
    lease: timedelta,
    timing: Timing,
    stop_at: float,
) -> int:
    """Send claimed deliveries (their rate-limit tokens taken) group by group until the time box ends; return
    how many were sent. What is left goes back untouched, and its tokens to the bucket.

    Results are recorded a few at a time (RECORD_EVERY sends or RECORD_SECONDS): one write transaction per
    send made the database lock, not the network, the limit. A worker killed in between loses at most that
    many records; their leases expire and the sweeper counts the lost attempt, so they are sent again.
    """
    groups = [claimed[i : i + batch_size] for i in range(0, len(claimed), batch_size)]
    lease_until = time.monotonic() + lease.total_seconds()
    unrecorded: list[Sent] = []
    recorded_at = time.monotonic()
    sent = done = 0  # deliveries, groups sent
    for group in groups:
        if done and time.monotonic() >= stop_at:
            break  # the time box is over (the slot's lease counts on it): the next drain sends the rest
        if lease_until - time.monotonic() < destination.timeout + 1:
            _renew([s.delivery for s in unrecorded] + [d for g in groups[done:] for d in g], lease)
            lease_until = time.monotonic() + lease.total_seconds()
        just_sent = _send_group(vendor, group, build_error)
        unrecorded += just_sent
        sent += len(group)
        done += 1
        throttled = [s.result for s in just_sent if s.result.outcome == "throttled"]
        if throttled:
            # The vendor said slow down: the whole destination waits, not only this group.
            wait = max((r.retry_after for r in throttled if r.retry_after is not None), default=1.0)
            hold(destination, wait)
            record(destination, unrecorded, timing)
            release([d for g in groups[done:] for d in g], wait)
            return sent
        if len(unrecorded) >= RECORD_EVERY or time.monotonic() - recorded_at >= RECORD_SECONDS:
            record(destination, unrecorded, timing)
            unrecorded, recorded_at = [], time.monotonic()
    record(destination, unrecorded, timing)
    if done < len(groups):
        return_tokens(destination, len(groups) - done)
        release([d for g in groups[done:] for d in g], 0)
    return sent


# Sweeper ---------------------------------------------------------------------------------------------


EXPIRED_PER_SWEEP = 500


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
    from deliveries import schema  # only the sweeper needs the Schema page's fold

    folded = schema.fold(seconds=0.5)  # the Schema page's counts, a time-boxed chunk per sweep
    return {"expired": expired, "destinations": len(due), "kicked": kicked, "folded": folded}


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


def retry_now(delivery_ids: list[int]) -> int:
    """Send failed, retrying and pending deliveries at once (admin action); returns how many.

    Failed ones come back as retrying (one more try; past their retry deadline a retryable error fails them
    again), pending ones only become due now. Delivered, filtered and in-flight ones are left alone.
    """
    now = timezone.now()
    count = Delivery.objects.filter(
        id__in=delivery_ids, status__in=[Delivery.Status.FAILED, Delivery.Status.RETRYING]
    ).update(status=Delivery.Status.RETRYING, next_attempt_at=now)
    count += Delivery.objects.filter(id__in=delivery_ids, status=Delivery.Status.PENDING).update(next_attempt_at=now)
    destinations = set(Delivery.objects.filter(id__in=delivery_ids).values_list("destination_id", flat=True))
    transaction.on_commit(lambda: [kick(d, fill=True) for d in destinations])
    return count

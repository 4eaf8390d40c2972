"""The delivery engine in one process (django-q2 in sync mode: a kick runs its drain inline) against a real
local HTTP receiver: backoff, deadlines, claims, rate limit, concurrency slots, sweeper, retry now, attempts."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from deliveries.engine import cluster, rate, slots
from deliveries.engine import drain as drain_module
from deliveries.engine import send as send_module
from deliveries.engine.claim import claim, release
from deliveries.engine.drain import drain, wait_for_work
from deliveries.engine.rate import bucket_shape, take_tokens
from deliveries.engine.record import record
from deliveries.engine.send import Sent
from deliveries.engine.slots import kick
from deliveries.engine.sweep import retry_now, sweep
from deliveries.engine.timing import Timing, backoff
from deliveries.models import Attempt, Delivery, Event, RateBucket, Slot, WorkerHeartbeat
from integrations.models import Destination, Source
from integrations.vendors import Result
from tests import factories
from tests.conftest import basic_auth
from tests.factories import make_event
from tests.receiver import Receiver

SIGNING_SECRET = "whsec_" + "c2VjcmV0LXNpZ25pbmcta2V5LWZvci10ZXN0cw=="
API_KEY = "sk-test-0123456789abcdef"


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


def make_destination(source: Source, url: str, slug: str = "hook", **fields: Any) -> Destination:
    fields.setdefault("timeout", 5.0)
    destination = Destination.objects.create(
        name=slug.title(),
        slug=slug,
        vendor="webhook",
        config={"url": url},
        credentials={"signing_secret": SIGNING_SECRET, "headers": {"X-Api-Key": API_KEY}},
        **fields,
    )
    destination.sources.add(source)
    return destination


def make_delivery(destination: Destination, source: Source, *, received_at=None, **fields: Any) -> Delivery:
    """An accepted event and its outbox row, written directly (no kick)."""
    return factories.make_delivery(destination, make_event(source, received_at), **fields)


@pytest.fixture
def queued(monkeypatch):
    """Record the drains kick() would queue instead of running them."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "WORKERS", 8)  # enough processes that only the destinations' own limits count
    calls: list[tuple[int, int, str]] = []
    monkeypatch.setattr(slots, "async_task", lambda func, *args, **kwargs: calls.append(args))
    return calls


# Backoff ---------------------------------------------------------------------------------------------


def test_backoff_grows_exponentially_within_equal_jitter_bounds():
    timing = Timing(retry_base=10, retry_cap=900, lease_margin=30, drain_seconds=5, queue_lease=60)
    for attempts in range(1, 12):
        ceiling = min(900, 10 * 2 ** (attempts - 1))
        samples = [backoff(attempts, None, timing) for _ in range(200)]
        assert all(ceiling / 2 <= s <= ceiling for s in samples), attempts
        assert max(samples) - min(samples) > ceiling / 10  # jittered, not fixed
    assert backoff(20, None, timing) <= 900


def test_backoff_honours_retry_after_with_a_little_jitter_and_bounds():
    timing = Timing(retry_base=10, retry_cap=900, lease_margin=30, drain_seconds=5, queue_lease=60)
    for _ in range(100):
        assert 120 <= backoff(1, 120, timing) <= 132
        assert 0.1 <= backoff(5, 0, timing) <= 0.11  # "now" still leaves a breath
        assert 3600 <= backoff(1, 10**6, timing) <= 3960  # an absurd Retry-After is capped


# Outcomes of one attempt -----------------------------------------------------------------------------


def test_a_5xx_is_retried_later_with_exponential_backoff(db, source, receiver, settings):
    settings.DELIVERY_RETRY_BASE = 30
    destination = make_destination(source, receiver.url)
    delivery = make_delivery(destination, source)
    receiver.answer(503, {"message": "try later"})

    before = timezone.now()
    kick(destination.id)

    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.RETRYING
    assert delivery.attempts == 1
    assert delivery.error_code == "http_503"
    assert delivery.error_message == "HTTP 503: try later"
    assert before + timedelta(seconds=15) <= delivery.next_attempt_at <= timezone.now() + timedelta(seconds=30)
    assert delivery.lease_expires_at is None
    assert len(receiver.requests) == 1  # not due again yet: the drain did not retry at once


def test_a_429_is_throttled_it_waits_retry_after_without_counting_as_an_attempt(db, source, receiver):
    destination = make_destination(source, receiver.url)
    delivery = make_delivery(destination, source)
    other = make_delivery(destination, source)
    receiver.answer(429, {"message": "slow down"}, headers={"Retry-After": "120"})

    before = timezone.now()
    kick(destination.id)

    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.RETRYING
    assert (delivery.attempts, delivery.throttled, delivery.error_code) == (0, 1, "http_429")
    assert before + timedelta(seconds=120) <= delivery.next_attempt_at <= timezone.now() + timedelta(seconds=133)
    attempt = delivery.attempt_log.get()
    assert (attempt.number, attempt.outcome, attempt.status_code) == (1, Attempt.Outcome.THROTTLED, 429)
    # The whole destination waits: the other delivery was not sent into the limit, and no token is left.
    other.refresh_from_db()
    assert other.attempt_log.count() == 0
    assert other.next_attempt_at >= before + timedelta(seconds=119)
    granted, wait = take_tokens(destination, 1)
    assert granted == 0
    assert wait > 110


def test_the_retry_deadline_turns_a_retry_into_failed_with_the_reason(db, source, receiver):
    destination = make_destination(source, receiver.url, retry_deadline=timedelta(minutes=1))
    old = make_delivery(destination, source, received_at=timezone.now() - timedelta(minutes=2))
    receiver.answer(500, {"message": "boom"})

    kick(destination.id)

    old.refresh_from_db()
    assert old.status == Delivery.Status.FAILED
    assert old.attempts == 1
    assert old.error_message == "HTTP 500: boom (gave up after 1 attempts: the retry deadline has passed)"
    attempt = old.attempt_log.get()
    assert attempt.outcome == Attempt.Outcome.FAILED
    assert "retry deadline" in attempt.error_message
    destination.refresh_from_db()
    assert "retry deadline" in destination.last_error


def test_a_retry_that_would_land_past_the_deadline_also_fails(db, source, receiver, settings):
    settings.DELIVERY_RETRY_BASE = 120  # the next try would be 60-120 s away; the deadline is 50 s away
    destination = make_destination(source, receiver.url, retry_deadline=timedelta(minutes=1))
    delivery = make_delivery(destination, source, received_at=timezone.now() - timedelta(seconds=10))
    receiver.answer(502)

    kick(destination.id)

    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED
    assert "the retry deadline has passed" in delivery.error_message


def test_test_sends_are_never_retried(db, source, receiver):
    destination = make_destination(source, receiver.url)
    delivery = make_delivery(destination, source, is_test=True)
    receiver.answer(503, {"message": "down for maintenance"})

    kick(destination.id)

    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED
    assert delivery.attempts == 1
    assert delivery.next_attempt_at <= timezone.now()
    assert delivery.error_message == "HTTP 503: down for maintenance (test sends are not retried)"
    assert len(receiver.requests) == 1


def test_a_4xx_fails_at_once_with_the_receivers_message(db, source, receiver):
    destination = make_destination(source, receiver.url)
    delivery = make_delivery(destination, source)
    receiver.answer(400, {"message": "email is required"})

    kick(destination.id)

    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED
    assert delivery.attempts == 1
    assert delivery.error_code == "http_400"
    assert delivery.error_message == "HTTP 400: email is required"


def test_a_refused_connection_is_retried(db, source, receiver):
    destination = make_destination(source, receiver.url)
    delivery = make_delivery(destination, source)
    receiver.down()

    kick(destination.id)

    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.RETRYING
    assert delivery.error_code == "connection_error"
    assert delivery.attempt_log.get().exchanges[0]["error"].startswith("Connection failed")


# Attempts ---------------------------------------------------------------------------------------------


def test_attempts_record_every_exchange_with_secrets_redacted(db, source, receiver):
    destination = make_destination(source, receiver.url)
    delivery = make_delivery(destination, source)
    receiver.answer(503, {"message": "busy"})
    kick(destination.id)
    receiver.answer(None)
    Delivery.objects.filter(id=delivery.id).update(next_attempt_at=timezone.now())
    kick(destination.id)

    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.DELIVERED
    assert delivery.attempts == 2
    assert delivery.delivered_at is not None
    assert delivery.latency_ms is not None
    assert delivery.error_message == ""
    first, second = delivery.attempt_log.order_by("number")
    assert (first.number, first.outcome, first.status_code) == (1, Attempt.Outcome.RETRY, 503)
    assert (second.number, second.outcome, second.status_code) == (2, Attempt.Outcome.DELIVERED, 200)
    for attempt in (first, second):
        (exchange,) = attempt.exchanges
        request = exchange["request"]
        assert request["method"] == "POST"
        assert request["url"] == receiver.url
        assert request["headers"]["X-Api-Key"] == "[REDACTED]"
        assert request["headers"]["webhook-signature"] == "[REDACTED]"
        assert json.loads(request["body"])["messageId"] == delivery.event.message_id
        assert exchange["duration_ms"] >= 0
    assert first.exchanges[0]["response"]["status"] == 503
    assert json.loads(first.exchanges[0]["response"]["body"]) == {"message": "busy"}
    assert second.exchanges[0]["response"]["status"] == 200
    # The receiver got the real values.
    sent = receiver.requests[-1].headers
    assert sent["X-Api-Key"] == API_KEY
    assert sent["webhook-signature"].startswith("v1,")
    dump = json.dumps(list(Attempt.objects.values()), default=str)
    assert API_KEY not in dump
    assert SIGNING_SECRET not in dump
    assert sent["webhook-signature"] not in dump


# Claims -----------------------------------------------------------------------------------------------


def test_claim_never_hands_the_same_delivery_to_two_claims(db, source, receiver):
    destination = make_destination(source, receiver.url, paused=True)
    made = [make_delivery(destination, source) for _ in range(7)]
    not_due = make_delivery(destination, source, next_attempt_at=timezone.now() + timedelta(hours=1))
    lease = timedelta(seconds=60)

    first = claim(destination, 4, lease)
    second = claim(destination, 4, lease)
    third = claim(destination, 4, lease)

    assert len(first) == 4
    assert len(second) == 3
    assert third == []
    ids = [d.id for d in first + second]
    assert sorted(ids) == sorted(d.id for d in made)
    assert not_due.id not in ids
    assert set(Delivery.objects.filter(id__in=ids).values_list("status", flat=True)) == {"in_flight"}
    assert all(d.lease_expires_at > timezone.now() + timedelta(seconds=50) for d in first + second)


def test_concurrent_claims_from_many_threads_are_disjoint(transactional_db, source, receiver):
    destination = make_destination(source, receiver.url, paused=True)
    made = {make_delivery(destination, source).id for _ in range(60)}
    results: list[list[int]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def claimer() -> None:
        got: list[int] = []
        try:
            start.wait()
            while batch := claim(destination, 3, timedelta(seconds=60)):
                got += [d.id for d in batch]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            results.append(got)
            connection.close()

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    assert not errors
    everything = [i for got in results for i in got]
    assert len(everything) == len(set(everything)), "a delivery was claimed twice"
    assert set(everything) == made


# Rate limit -------------------------------------------------------------------------------------------


def test_take_tokens_enforces_rate_per_period(db, source, receiver, monkeypatch):
    destination = make_destination(source, receiver.url, rate_limit=5, rate_period=1)
    # The clock stands still between calls: on a busy machine 10 ms between two calls refilled a twentieth of a
    # token and moved the waits below.
    frozen = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: frozen)

    granted, wait = take_tokens(destination, 3)
    assert (granted, wait) == (3, 0.0)
    granted, wait = take_tokens(destination, 10)
    assert granted == 2
    assert wait == pytest.approx(0.2)  # one token every 0.2 s
    granted, wait = take_tokens(destination, 1)
    assert granted == 0
    assert wait == pytest.approx(0.2)

    # The bucket refills with time, never above the rate.
    RateBucket.objects.filter(destination=destination).update(refilled_at=frozen - timedelta(seconds=0.7))
    assert take_tokens(destination, 10)[0] == 3  # 0.7 s = 3.5 tokens
    RateBucket.objects.filter(destination=destination).update(refilled_at=frozen - timedelta(hours=1))
    assert take_tokens(destination, 10)[0] == 5


def test_a_limit_over_a_long_period_never_lets_more_than_the_rate_through_in_any_window(db, source, receiver):
    """45 calls per 20 s (Marketo's default here) is a sliding window at the vendor: a bucket of the whole
    rate would let 90 through in 20 s (the burst, then the refill)."""
    destination = make_destination(source, receiver.url, rate_limit=45, rate_period=20)
    capacity, per_second = bucket_shape(destination)
    assert (capacity, per_second) == (2.25, pytest.approx(42.75 / 20))
    assert capacity + per_second * 20 == pytest.approx(45)

    granted, wait = take_tokens(destination, 10)
    assert granted == 2
    assert 0 < wait < 1
    RateBucket.objects.filter(destination=destination).update(refilled_at=timezone.now() - timedelta(hours=1))
    assert take_tokens(destination, 100)[0] == 2  # an hour idle still allows one second's worth at once

    # Simulated: a client taking every token as soon as it comes, for 200 s; no 20 s window holds more than 45.
    times: list[float] = []
    clock = 0.0
    tokens = capacity
    while clock < 200:
        while tokens >= 1:
            tokens -= 1
            times.append(clock)
        clock += 0.01
        tokens = min(capacity, tokens + per_second * 0.01)
    assert max(sum(1 for t in times if start <= t < start + 20) for start in times) <= 45
    assert len(times) >= 200 * 42.75 / 20


def test_a_throttled_delivery_is_released_without_spending_an_attempt(db, source, receiver):
    # 2 a minute: one call at once, the second 60 s later (see bucket_shape).
    destination = make_destination(source, receiver.url, rate_limit=2, rate_period=60)
    now = timezone.now()
    fresh = [make_delivery(destination, source, next_attempt_at=now - timedelta(seconds=10 - i)) for i in range(4)]
    retried = make_delivery(
        destination, source, status=Delivery.Status.RETRYING, attempts=2, next_attempt_at=now - timedelta(seconds=1)
    )

    kick(destination.id)

    assert len(receiver.requests) == 1
    sent = Delivery.objects.filter(status=Delivery.Status.DELIVERED)
    assert {d.id for d in sent} == {fresh[0].id}
    later = timezone.now() + timedelta(seconds=25)
    for held in (fresh[1], fresh[2], fresh[3], retried):
        held.refresh_from_db()
        assert held.next_attempt_at > later, "a throttled delivery waits for the next token"
        assert held.lease_expires_at is None
        assert not held.attempt_log.exists(), "a throttled delivery did not spend an attempt"
    assert (fresh[2].status, fresh[2].attempts) == (Delivery.Status.PENDING, 0)
    assert (fresh[3].status, fresh[3].attempts) == (Delivery.Status.PENDING, 0)
    assert (retried.status, retried.attempts) == (Delivery.Status.RETRYING, 2)
    assert not Slot.objects.filter(destination=destination, lease_expires_at__isnull=False).exists()


# Concurrency slots --------------------------------------------------------------------------------------


def test_kick_queues_no_more_drains_than_the_destination_has_slots(db, source, receiver, queued):
    destination = make_destination(source, receiver.url, concurrency=3)

    assert kick(destination.id) == 1
    assert kick(destination.id, fill=True) == 2
    assert kick(destination.id, fill=True) == 0
    assert kick(destination.id) == 0
    assert len(queued) == 3
    assert len({slot_id for _, slot_id, _ in queued}) == 3
    assert Slot.objects.filter(destination=destination).count() == 3

    # A slot whose queued drain never started (lease expired) is taken again, with a new token.
    stale = Slot.objects.filter(destination=destination).first()
    old_token = stale.token
    Slot.objects.filter(id=stale.id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert kick(destination.id, fill=True) == 1
    assert queued[-1][1] == stale.id
    assert queued[-1][2] != old_token
    # ... and the drain holding the old token gives up without sending.
    make_delivery(destination, source)
    assert drain(destination.id, stale.id, old_token) == "slot lost"
    assert receiver.requests == []


def test_one_destination_never_takes_every_process_of_the_cluster(db, source, receiver, queued, monkeypatch):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "WORKERS", 4)
    greedy = make_destination(source, receiver.url, slug="greedy", concurrency=10)
    assert kick(greedy.id, fill=True) == 3  # one process stays free for every other destination
    monkeypatch.setattr(Conf, "WORKERS", 1)
    cluster.forget()
    other = make_destination(source, receiver.url, slug="other", concurrency=10)
    assert kick(other.id, fill=True) == 1  # a one-process cluster still sends


def test_a_destinations_concurrency_counts_the_processes_of_every_worker(db, source, receiver, queued, monkeypatch):
    """Two workers of two processes each: a destination may take three of the four, not one of its worker's two."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "WORKERS", 2)
    cluster.beat("host-a:1", 2)
    cluster.beat("host-b:2", 2)
    cluster.beat("host-c:3", 8)
    WorkerHeartbeat.objects.filter(name="host-c:3").update(seen_at=timezone.now() - timedelta(minutes=5))  # killed
    assert cluster.processes() == 4
    greedy = make_destination(source, receiver.url, slug="greedy", concurrency=10)
    assert kick(greedy.id, fill=True) == 3

    cluster.gone("host-b:2")  # stopped cleanly
    cluster.forget()
    assert cluster.processes() == 2
    WorkerHeartbeat.objects.all().delete()  # no worker has beaten yet: this process's own setting
    cluster.forget()
    assert cluster.processes() == 2


def test_kick_gives_a_paused_or_disabled_destination_nothing(db, source, receiver, queued):
    paused = make_destination(source, receiver.url, slug="paused", paused=True)
    disabled = make_destination(source, receiver.url, slug="disabled", enabled=False)
    make_delivery(paused, source)
    make_delivery(disabled, source)

    assert kick(paused.id, fill=True) == 0
    assert kick(disabled.id, fill=True) == 0
    assert kick(999_999) == 0
    assert queued == []
    assert sweep()["kicked"] == 0


def test_a_drain_runs_within_its_slot_and_hands_it_back(db, source, receiver):
    destination = make_destination(source, receiver.url, concurrency=2)
    make_delivery(destination, source)

    assert kick(destination.id) == 1

    assert Delivery.objects.get().status == Delivery.Status.DELIVERED
    slots = Slot.objects.filter(destination=destination)
    assert slots.count() == 2
    assert all(s.lease_expires_at is None and s.token == "" for s in slots)


def test_a_drain_stops_at_its_time_box_and_hands_back_what_it_did_not_send(db, source, receiver, settings):
    """The slot's lease is sized for one time box and one request: a drain that went on sending 50 claimed
    deliveries would outlive it (and django-q2's task timeout), letting more drains run than the limit."""
    settings.DELIVERY_DRAIN_SECONDS = 0.3
    receiver.delay = 0.4
    destination = make_destination(source, receiver.url)
    deliveries = [make_delivery(destination, source) for _ in range(8)]

    started = time.monotonic()
    kick(destination.id)
    elapsed = time.monotonic() - started

    assert elapsed < 2.0, "the drain overran its time box (8 x 0.4 s)"
    statuses = dict(Delivery.objects.values_list("id", "status"))
    delivered = [d for d in deliveries if statuses[d.id] == Delivery.Status.DELIVERED]
    assert 1 <= len(delivered) <= 2
    for d in deliveries:
        if d not in delivered:
            d.refresh_from_db()
            assert (d.status, d.attempts, d.lease_expires_at) == (Delivery.Status.PENDING, 0, None)
            assert d.next_attempt_at <= timezone.now()  # due at once: the next drain carries on
    assert Attempt.objects.count() == len(delivered)
    assert not Slot.objects.filter(destination=destination, lease_expires_at__isnull=False).exists()


def test_a_drain_out_of_work_waits_a_moment_for_more_while_a_process_is_spare(db, source, receiver, monkeypatch):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", False)
    monkeypatch.setattr(Conf, "WORKERS", 4)
    destination = make_destination(source, receiver.url)

    started = time.monotonic()
    assert wait_for_work(destination.id, time.monotonic() + 0.2) is False
    assert 0.15 <= time.monotonic() - started < 1.0

    make_delivery(destination, source)
    started = time.monotonic()
    assert wait_for_work(destination.id, time.monotonic() + 5) is True
    assert time.monotonic() - started < 1.0

    # Every process may be wanted (as many drains hold slots as the cluster has processes): no waiting.
    Delivery.objects.all().delete()
    future = timezone.now() + timedelta(minutes=1)
    Slot.objects.bulk_create([Slot(destination=destination, number=n, lease_expires_at=future) for n in range(4)])
    started = time.monotonic()
    assert wait_for_work(destination.id, time.monotonic() + 5) is False
    assert time.monotonic() - started < 0.5


def test_a_drain_run_inline_never_waits_for_more_work(db, source, receiver):
    destination = make_destination(source, receiver.url)
    started = time.monotonic()
    assert wait_for_work(destination.id, time.monotonic() + 5) is False  # sync mode: inside the caller
    assert time.monotonic() - started < 0.1


# Sweeper ----------------------------------------------------------------------------------------------


def test_sweep_counts_expired_leases_as_attempts_and_kicks_destinations_with_due_work(db, source, receiver, queued):
    a = make_destination(source, receiver.url, slug="a", concurrency=2)
    b = make_destination(source, receiver.url, slug="b", concurrency=1)
    c = make_destination(source, receiver.url, slug="c")
    d = make_destination(source, receiver.url, slug="d", paused=True)
    past, future = timezone.now() - timedelta(seconds=5), timezone.now() + timedelta(minutes=5)
    crashed_first = make_delivery(a, source, status=Delivery.Status.IN_FLIGHT, lease_expires_at=past)
    crashed_retry = make_delivery(a, source, status=Delivery.Status.IN_FLIGHT, attempts=2, lease_expires_at=past)
    running = make_delivery(a, source, status=Delivery.Status.IN_FLIGHT, attempts=1, lease_expires_at=future)
    make_delivery(b, source, status=Delivery.Status.RETRYING, attempts=1, next_attempt_at=past)
    make_delivery(c, source, status=Delivery.Status.RETRYING, attempts=1, next_attempt_at=future)
    make_delivery(d, source)

    result = sweep()

    assert result["expired"] == 2
    crashed_first.refresh_from_db()
    crashed_retry.refresh_from_db()
    running.refresh_from_db()
    # The dead worker's try counts: backoff applies, as after any other failed attempt.
    assert (crashed_first.status, crashed_first.attempts) == (Delivery.Status.RETRYING, 1)
    assert (crashed_retry.status, crashed_retry.attempts) == (Delivery.Status.RETRYING, 3)
    assert crashed_first.lease_expires_at is None
    assert crashed_first.next_attempt_at > timezone.now()
    assert crashed_first.error_code == "worker_lost"
    lost = crashed_retry.attempt_log.get()
    assert (lost.number, lost.outcome, lost.error_code, lost.exchanges) == (3, Attempt.Outcome.RETRY, "worker_lost", [])
    assert "crashed, was killed or ran out of time" in lost.error_message
    assert running.status == Delivery.Status.IN_FLIGHT
    assert not running.attempt_log.exists()
    kicked = [destination_id for destination_id, _, _ in queued]
    assert sorted(kicked) == [b.id]  # b is due; a's lost deliveries wait for their backoff; not c, not d
    assert result["kicked"] == 1


def test_an_event_that_kills_the_worker_every_time_gives_up_at_the_retry_deadline(db, source, receiver):
    destination = make_destination(source, receiver.url, retry_deadline=timedelta(minutes=1))
    poison = make_delivery(
        destination,
        source,
        received_at=timezone.now() - timedelta(minutes=2),
        status=Delivery.Status.IN_FLIGHT,
        attempts=4,
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )

    sweep()

    poison.refresh_from_db()
    assert (poison.status, poison.attempts, poison.error_code) == (Delivery.Status.FAILED, 5, "worker_lost")
    assert "gave up after 5 attempts: the retry deadline has passed" in poison.error_message
    assert "worker's log" in poison.hint
    assert receiver.requests == []


def test_sweep_then_drain_delivers_what_a_crashed_worker_left(db, source, receiver, settings):
    settings.DELIVERY_RETRY_BASE = 0.01
    destination = make_destination(source, receiver.url)
    orphan = make_delivery(
        destination, source, status=Delivery.Status.IN_FLIGHT, lease_expires_at=timezone.now() - timedelta(seconds=1)
    )

    sweep()  # counts the lost attempt; its backoff (at most 10 ms here) is over by the next sweep
    time.sleep(0.02)
    sweep()  # sync mode: the kicked drain runs here

    orphan.refresh_from_db()
    assert orphan.status == Delivery.Status.DELIVERED
    assert orphan.attempts == 2
    assert [a.error_code for a in orphan.attempt_log.order_by("number")] == ["worker_lost", ""]
    assert receiver.successes[orphan.event.message_id] == 1


# Robustness -------------------------------------------------------------------------------------------


def claimed_slot(destination: Destination, queued: list) -> tuple[int, str]:
    """Queue a drain (not run: see `queued`) and return the slot and token it would run with."""
    assert kick(destination.id) == 1
    _, slot_id, token = queued[-1]
    return slot_id, token


def test_a_drain_hands_its_slot_back_even_when_sending_raises(db, source, receiver, queued, monkeypatch):
    destination = make_destination(source, receiver.url)
    delivery = make_delivery(destination, source)
    slot_id, token = claimed_slot(destination, queued)

    def broken_record(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(drain_module, "record", broken_record)
    with pytest.raises(RuntimeError, match="the database went away"):
        drain(destination.id, slot_id, token)

    slot = Slot.objects.get(id=slot_id)
    assert (slot.token, slot.lease_expires_at) == ("", None)
    assert kick(destination.id) == 1  # the slot is free for the next drain at once
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.IN_FLIGHT  # its lease brings it back (see the sweeper tests)


def test_a_late_worker_does_not_overwrite_a_delivery_another_worker_took_over(db, source, receiver, settings):
    settings.DELIVERY_RETRY_BASE = 0.01
    destination = make_destination(source, receiver.url, paused=True)
    delivery = make_delivery(destination, source)
    lease = timedelta(seconds=60)
    (late,) = claim(destination, 1, lease)
    # Its lease runs out (a long stall): the sweeper counts the lost try, and another worker claims it again.
    Delivery.objects.filter(id=delivery.id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    sweep()
    Delivery.objects.filter(id=delivery.id).update(next_attempt_at=timezone.now())
    (holder,) = claim(destination, 1, lease)
    assert holder.lease_expires_at != late.lease_expires_at

    now = timezone.now()
    timing = Timing.current()
    late_result = Sent(late, Result("failed", status_code=400, error_code="http_400"), now, now, 5)
    assert record(destination, [late_result], timing) == 0
    release([late], 60)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (Delivery.Status.IN_FLIGHT, 1)
    assert delivery.lease_expires_at == holder.lease_expires_at
    assert [a.error_code for a in delivery.attempt_log.all()] == ["worker_lost"]

    holder_result = Sent(holder, Result("delivered", status_code=200), now, now, 5)
    assert record(destination, [holder_result], timing) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.lease_expires_at) == (Delivery.Status.DELIVERED, 2, None)
    assert [a.outcome for a in delivery.attempt_log.order_by("number")] == ["retry", "delivered"]


def test_a_vendor_that_raises_counts_an_attempt_with_an_internal_error_and_no_secret(
    db, source, receiver, monkeypatch, settings
):
    settings.DELIVERY_RETRY_BASE = 30
    destination = make_destination(source, receiver.url)
    delivery = make_delivery(destination, source)

    def crash(self: Any, events: list) -> list:
        raise ValueError(f"cannot sign with {API_KEY} for {self.config.url}")

    monkeypatch.setattr("integrations.vendors.webhook.Webhook.deliver", crash)
    kick(destination.id)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.error_code) == (Delivery.Status.RETRYING, 1, "internal_error")
    assert delivery.error_message == "Internal error in the Webhook vendor (ValueError); the delivery is retried."
    assert delivery.next_attempt_at > timezone.now() + timedelta(seconds=10)  # the normal backoff
    attempt = delivery.attempt_log.get()
    assert (attempt.outcome, attempt.error_code) == (Attempt.Outcome.RETRY, "internal_error")
    destination.refresh_from_db()
    dump = json.dumps([list(Attempt.objects.values()), destination.last_error, delivery.hint], default=str)
    assert API_KEY not in dump
    assert receiver.url not in dump


def test_a_vendor_that_always_raises_fails_at_the_retry_deadline(db, source, receiver, monkeypatch):
    destination = make_destination(source, receiver.url, retry_deadline=timedelta(minutes=1))
    old = make_delivery(destination, source, received_at=timezone.now() - timedelta(minutes=2))
    monkeypatch.setattr("integrations.vendors.webhook.Webhook.deliver", lambda self, events: [])  # a wrong count

    kick(destination.id)

    old.refresh_from_db()
    assert (old.status, old.attempts, old.error_code) == (Delivery.Status.FAILED, 1, "internal_error")
    assert "the retry deadline has passed" in old.error_message


def test_a_destination_whose_vendor_cannot_be_built_counts_an_attempt(db, source, receiver, monkeypatch):
    destination = make_destination(source, receiver.url)
    delivery = make_delivery(destination, source)

    def broken(self: Destination) -> None:
        raise KeyError("url")

    monkeypatch.setattr(Destination, "build_vendor", broken)
    kick(destination.id)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.error_code) == (Delivery.Status.RETRYING, 1, "internal_error")
    assert "(KeyError)" in delivery.error_message
    assert receiver.requests == []
    assert not Slot.objects.filter(destination=destination, lease_expires_at__isnull=False).exists()


def test_tokens_taken_but_not_spent_when_the_time_box_ends_go_back_to_the_bucket(
    db, source, receiver, settings, monkeypatch
):
    settings.DELIVERY_DRAIN_SECONDS = 0.3
    receiver.delay = 0.4
    # A bucket of 10 that hardly refills, so that only the returned tokens change it.
    monkeypatch.setattr(rate, "bucket_shape", lambda destination: (10.0, 10 / 3600))
    destination = make_destination(source, receiver.url)
    for _ in range(6):
        make_delivery(destination, source)

    kick(destination.id)  # takes 6 tokens, sends one before the time box ends

    sent = len(receiver.requests)
    assert sent == 1
    bucket = RateBucket.objects.get(destination=destination)
    assert 10 - sent <= bucket.tokens < 10 - sent + 0.01  # the 5 unspent tokens are back
    assert take_tokens(destination, 10)[0] == 9


def test_a_drain_keeps_the_vendor_and_its_connection_until_the_destination_changes(db, source, receiver, monkeypatch):
    destination = make_destination(source, receiver.url)
    built: list[int] = []
    original = Destination.build_vendor

    def counting(self: Destination) -> Any:
        built.append(self.id)
        return original(self)

    monkeypatch.setattr(Destination, "build_vendor", counting)
    send_module._vendors.clear()
    make_delivery(destination, source)
    kick(destination.id)
    make_delivery(destination, source)
    kick(destination.id)
    assert built == [destination.id]

    destination.timeout = 7
    destination.save()
    make_delivery(destination, source)
    kick(destination.id)
    assert built == [destination.id, destination.id]
    assert Delivery.objects.filter(status=Delivery.Status.DELIVERED).count() == 3


def test_a_drain_records_many_sends_in_few_transactions(db, source, receiver, monkeypatch):
    destination = make_destination(source, receiver.url)
    deliveries = [make_delivery(destination, source) for _ in range(drain_module.RECORD_EVERY * 2)]
    records: list[int] = []
    original = record

    def counting(destination: Destination, sent: list, timing: Timing) -> int:
        records.append(len(sent))
        return original(destination, sent, timing)

    monkeypatch.setattr(drain_module, "record", counting)
    monkeypatch.setattr(drain_module, "RECORD_SECONDS", 60)
    kick(destination.id)

    assert Delivery.objects.filter(status=Delivery.Status.DELIVERED).count() == len(deliveries)
    assert Attempt.objects.count() == len(deliveries)
    assert [n for n in records if n] == [drain_module.RECORD_EVERY, drain_module.RECORD_EVERY]
    assert sorted(int(d.latency_ms is not None) for d in Delivery.objects.all()) == [1] * len(deliveries)


# Operator actions -------------------------------------------------------------------------------------


def test_retry_now_puts_failed_deliveries_back_and_sends_them(db, source, receiver, django_capture_on_commit_callbacks):
    destination = make_destination(source, receiver.url)
    failed = make_delivery(
        destination,
        source,
        status=Delivery.Status.FAILED,
        attempts=3,
        next_attempt_at=timezone.now() - timedelta(hours=1),
        error_message="HTTP 400: nope",
    )
    delivered = make_delivery(destination, source, status=Delivery.Status.DELIVERED, attempts=1)

    with django_capture_on_commit_callbacks(execute=True):
        assert retry_now([failed.id, delivered.id]) == 1

    failed.refresh_from_db()
    delivered.refresh_from_db()
    assert failed.status == Delivery.Status.DELIVERED
    assert failed.attempts == 4
    assert delivered.attempts == 1
    assert [r.message_ids() for r in receiver.requests] == [[failed.event.message_id]]


# Ingest -----------------------------------------------------------------------------------------------


def test_ingest_routes_filtered_deliveries_with_the_reason_and_sends_the_rest(db, source, receiver):
    sending = make_destination(source, receiver.url, slug="everything")
    identify_only = make_destination(source, receiver.url, slug="identify-only", filter={"types": ["identify"]})

    response = Client().post(
        "/v1/track",
        {"userId": "u1", "event": "Order Completed", "messageId": "m-1", "properties": {"total": 5}},
        content_type="application/json",
        HTTP_AUTHORIZATION=basic_auth(source.write_key),
    )

    assert response.status_code == 200, response.content
    event = Event.objects.get(message_id="m-1")
    filtered = Delivery.objects.get(event=event, destination=identify_only)
    assert filtered.status == Delivery.Status.FILTERED
    assert filtered.error_code == "filter_type"
    assert filtered.error_message == "The filter lets through identify only, not track."
    assert filtered.next_attempt_at is None
    assert Delivery.objects.get(event=event, destination=sending).status == Delivery.Status.DELIVERED
    assert receiver.successes == {"m-1": 1}
    assert sweep()["destinations"] == 0  # filtered rows are never due

"""Adaptive rate limits: a destination starts at its limit, halves on a 429, a 5xx or a timeout (once per
cooldown, never below the floor), gives a twentieth of the limit back every quiet 10 s, never passes the vendor's
ceiling; a fixed limit never moves; Event Delivery shows the rate now and why. Real HTTP through `responses`."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
import responses
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from deliveries.engine import adaptive
from deliveries.engine.rate import bucket_shape, take_tokens
from deliveries.engine.record import record
from deliveries.engine.send import Sent
from deliveries.engine.slots import kick
from deliveries.engine.timing import Timing
from deliveries.models import Delivery, RateBucket
from integrations.models import Destination
from integrations.vendors import Result
from tests.factories import make_delivery, make_event

URL = "https://hooks.example.com/in"


def send_one(destination: Destination, source, **answer) -> Delivery:
    """One delivery to the webhook, answered by `responses` with `answer`, sent by a drain now."""
    delivery = make_delivery(destination, make_event(source))
    with responses.RequestsMock() as mock:
        mock.post(URL, **answer)
        kick(destination.id)
    delivery.refresh_from_db()
    return delivery


def bucket(destination: Destination) -> RateBucket:
    return RateBucket.objects.get(destination=destination)


def quiet_for(destination: Destination, seconds: float) -> None:
    """As if the last slow-down (and the last change of rate) was `seconds` ago."""
    then = timezone.now() - timedelta(seconds=seconds)
    RateBucket.objects.filter(destination=destination).update(slowed_at=then, cut_at=then, rate_changed_at=then)


def test_a_webhook_is_adaptive_by_default_and_starts_at_1000_a_second(db, destination):
    assert destination.rate_mode == Destination.RateMode.ADAPTIVE
    assert destination.limits() == (1000, 1.0, 4)
    assert take_tokens(destination, 1000) == (1000, 0.0)  # a second's burst at the ceiling


def test_a_429_halves_the_rate_and_says_why_and_when(db, destination, source):
    delivery = send_one(destination, source, status=429, headers={"Retry-After": "0"})

    assert (delivery.status, delivery.throttled) == (Delivery.Status.RETRYING, 1)
    row = bucket(destination)
    assert row.rate == 500
    assert row.rate_reason == "cut to 500/s after HTTP 429 Too Many Requests"
    assert timezone.now() - row.rate_changed_at < timedelta(seconds=5)


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ({"status": 503}, "HTTP 503 Service Unavailable"),
        ({"status": 500}, "HTTP 500 Internal Server Error"),
        ({"status": 408}, "HTTP 408 Request Timeout"),
        ({"body": requests.exceptions.ReadTimeout("slow")}, "a timeout"),
    ],
)
def test_a_5xx_or_a_timeout_halves_the_rate(db, destination, source, answer, why):
    delivery = send_one(destination, source, **answer)

    assert delivery.status == Delivery.Status.RETRYING
    assert (bucket(destination).rate, bucket(destination).rate_reason) == (500, f"cut to 500/s after {why}")


@pytest.mark.parametrize(
    "answer",
    [{"status": 200}, {"status": 400}, {"body": requests.exceptions.ConnectionError("refused")}],
)
def test_a_success_a_client_error_or_a_refused_connection_leaves_the_rate_alone(db, destination, source, answer):
    send_one(destination, source, **answer)
    assert bucket(destination).rate is None


def test_the_bucket_refills_at_the_cut_rate(db, destination, source, monkeypatch):
    send_one(destination, source, status=503)
    frozen = timezone.now()  # the clock stands still: a millisecond between the calls is half a token at 500/s
    monkeypatch.setattr(timezone, "now", lambda: frozen)
    RateBucket.objects.filter(destination=destination).update(refilled_at=frozen - timedelta(hours=1))

    granted, _ = take_tokens(destination, 1000)

    assert granted == 500  # a second's burst at 500/s, not at the 1000/s limit
    granted, wait = take_tokens(destination, 1)
    assert granted == 0
    assert wait == pytest.approx(1 / 500, abs=0.001)


def test_one_cut_per_cooldown_then_halving_again_down_to_the_floor(db, destination, source):
    send_one(destination, source, status=503)
    send_one(destination, source, status=503)  # answers to calls sent before the cut: no second cut yet
    assert bucket(destination).rate == 500

    rates = []
    for _ in range(8):
        RateBucket.objects.filter(destination=destination).update(cut_at=timezone.now() - timedelta(seconds=3))
        send_one(destination, source, status=503)
        rates.append(bucket(destination).rate)

    assert rates == [250, 125, 62.5, 31.25, 20, 20, 20, 20]  # the floor: a fiftieth of the limit
    assert bucket(destination).rate_reason == "at the floor, 20/s, after HTTP 503 Service Unavailable"


def test_quiet_periods_give_a_twentieth_of_the_limit_back_up_to_the_limit(db, destination, source):
    send_one(destination, source, status=503)
    quiet_for(destination, 9)
    take_tokens(destination, 1)
    assert bucket(destination).rate == 500  # not quiet long enough yet

    quiet_for(destination, 35)  # three quiet periods
    take_tokens(destination, 1)
    row = bucket(destination)
    assert row.rate == 650
    assert row.rate_reason == "recovering: +50/s every 10 s without a 429, 5xx or timeout"

    quiet_for(destination, 75)  # seven more: 1000, the limit, and no higher
    take_tokens(destination, 1)
    row = bucket(destination)
    assert row.rate is None
    assert row.rate_reason.startswith("back at the limit after 70 s")
    assert bucket_shape(destination) == (1000, 1000)


def test_a_new_slow_down_restarts_the_quiet_period(db, destination, source):
    send_one(destination, source, status=503)
    send_one(destination, source, status=503)  # within the cooldown: no cut, but not quiet either
    then = timezone.now() - timedelta(seconds=30)
    RateBucket.objects.filter(destination=destination).update(rate_changed_at=then, cut_at=then)

    take_tokens(destination, 1)

    assert bucket(destination).rate == 500


def test_a_fixed_limit_never_moves_but_still_honours_retry_after(db, destination, source):
    Destination.objects.filter(id=destination.id).update(rate_mode="fixed", rate_limit=100)
    destination.refresh_from_db()

    send_one(destination, source, status=503)
    send_one(destination, source, status=429, headers={"Retry-After": "30"})

    row = bucket(destination)
    assert row.rate is None
    assert take_tokens(destination, 1)[0] == 0  # held for the Retry-After
    assert row.tokens == pytest.approx(-30 * 100, rel=0.01)


def test_switching_to_fixed_restores_the_full_limit(db, destination, source):
    send_one(destination, source, status=503)
    Destination.objects.filter(id=destination.id).update(rate_mode="fixed")
    destination.refresh_from_db()

    take_tokens(destination, 1)

    assert bucket(destination).rate is None
    assert bucket(destination).rate_reason == "fixed limit"


def test_a_hold_keeps_its_length_after_the_cut(db, destination, source):
    """A 429 with Retry-After 10 empties the bucket for 10 s at the rate it refills at after the cut."""
    send_one(destination, source, status=429, headers={"Retry-After": "10"})

    row = bucket(destination)
    assert row.rate == 500
    assert row.tokens == pytest.approx(-10 * 500, rel=0.01)


def test_our_own_rate_gate_and_a_daily_quota_are_not_signs_of_load(db, destination, source):
    delivery = make_delivery(destination, make_event(source))
    gate = Result("throttled", error_code="rate_limited", error_message="The destination's rate limit ...")
    quota = Result("throttled", status_code=200, error_code="daily_quota", retry_after=3600, defer=True)
    for result in (gate, quota):
        Delivery.objects.filter(id=delivery.id).update(status=Delivery.Status.IN_FLIGHT)
        delivery.refresh_from_db()
        now = timezone.now()
        record(destination, [Sent(delivery, result, now, now, 1)], Timing.current())
    assert not RateBucket.objects.filter(destination=destination, rate__isnull=False).exists()


# Ceilings -----------------------------------------------------------------------------------------


def marketo(**fields) -> Destination:
    return Destination(
        name="Marketo",
        slug="marketo",
        vendor="marketo",
        config={"munchkin_id": "123-ABC-456"},
        credentials={"client_id": "id", "client_secret": "secret"},
        **fields,
    )


def test_marketo_never_goes_above_its_documented_100_calls_per_20_seconds(db):
    assert marketo().limits()[:2] == (45, 20.0)  # Marketo's advice for one integration
    assert marketo(rate_limit=100).limits()[:2] == (100, 20.0)
    assert marketo(rate_limit=500).limits()[:2] == (100, 20.0)  # a setting above the ceiling is capped
    with pytest.raises(ValidationError) as refused:
        marketo(rate_limit=500).full_clean()
    assert refused.value.message_dict["rate_limit"] == [
        "rate_limit: Marketo allows at most 100 requests per 20 s (its documented limit); 500 per 20 s is more"
    ]


@pytest.mark.parametrize(
    ("vendor", "config", "credentials", "ceiling"),
    [
        ("marketo", {"munchkin_id": "123-ABC-456"}, {"client_id": "i", "client_secret": "s"}, (45, 20.0)),
        (
            "sfmc_journey",
            {"subdomain": "mc-abc123", "event_definition_key": "APIEvent-x"},
            {"client_id": "i", "client_secret": "s"},
            (2000, 60.0),
        ),
    ],
)
def test_recovery_stops_at_the_vendors_ceiling(db, vendor, config, credentials, ceiling):
    destination = Destination.objects.create(
        name=vendor, slug=vendor, vendor=vendor, config=config, credentials=credentials
    )
    assert destination.limits()[:2] == ceiling
    full = bucket_shape(destination)
    now = timezone.now()
    adaptive.cut(destination, "HTTP 429 Too Many Requests", now)
    assert bucket(destination).rate == pytest.approx(ceiling[0] / ceiling[1] / 2)

    quiet_for(destination, 3600)
    RateBucket.objects.filter(destination=destination).update(refilled_at=now - timedelta(hours=1))
    granted, _ = take_tokens(destination, 10_000)

    assert bucket(destination).rate is None  # at the ceiling, not above it
    assert granted == int(full[0])
    assert bucket_shape(destination) == full
    assert adaptive.rate_text(*adaptive.ceiling_of(destination)) == f"{ceiling[0]:,} per {ceiling[1]:g} s"


# The page -----------------------------------------------------------------------------------------


def test_event_delivery_shows_the_rate_now_and_why(admin_client, destination, source):
    page = reverse("admin:deliveries_delivery_event_delivery", args=[destination.pk])
    html = admin_client.get(page).content.decode()
    assert "1,000/s" in html
    assert "at the limit: no 429, 5xx or timeout lately" in html

    send_one(destination, source, status=429, headers={"Retry-After": "0"})
    html = admin_client.get(page).content.decode()
    assert '<span class="ed-rate-value ed-warn-text">500/s</span>' in html
    assert "(adaptive, up to 1,000/s)" in html
    assert "cut to 500/s after HTTP 429 Too Many Requests" in html
    assert f"since {timezone.localtime(bucket(destination).rate_changed_at):%H:%M:%S}" in html

    index = admin_client.get(reverse("admin:deliveries_delivery_event_delivery_index")).content.decode()
    assert 'title="cut to 500/s after HTTP 429 Too Many Requests">500/s</span>' in index

    Destination.objects.filter(id=destination.id).update(rate_mode="fixed", rate_limit=100)
    html = admin_client.get(page).content.decode()
    assert "100/s" in html
    assert "(fixed)" in html

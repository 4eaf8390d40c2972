"""What the engine does with a vendor's "slow down": throttled tries wait without counting, hold the whole
destination, a daily quota waits past the retry deadline; extra calls pass the rate gate; hints are kept; a
vendor's skip reason makes a delivery filtered. A scripted vendor stands in for SFMC and Marketo here."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar

import pytest
import responses
from django.utils import timezone

from deliveries.engine import rate
from deliveries.engine import send as send_module
from deliveries.engine.rate import hold, take_tokens
from deliveries.engine.routing import decide
from deliveries.engine.slots import kick
from deliveries.models import Attempt, Delivery, RateBucket
from integrations import vendors
from integrations.models import Destination, Source
from integrations.vendors import DeliveryError, Result, Vendor
from tests import factories

URL = "https://api.vendor.example/calls"


@dataclass
class ScriptedConfig:
    skip_type: str = ""


class Scripted(Vendor):
    """Answers from `script` (one entry per deliver call): a Result outcome, or "extra:N" to make N extra calls."""

    key = "scripted"
    label = "Scripted"
    config_class = ScriptedConfig
    max_batch = 1
    script: ClassVar[list[Any]] = []
    calls: ClassVar[list[str]] = []

    @classmethod
    def skip_reason(cls, config: dict[str, Any], event: dict[str, Any]) -> str:
        skip = config.get("skip_type")
        return f"Scripted does not take {skip} events." if skip and event.get("type") == skip else ""

    def deliver(self, events: list[dict[str, Any]]) -> list[Result]:
        step = self.script.pop(0) if self.script else Result("delivered", status_code=200)
        if isinstance(step, str) and step.startswith("extra:"):
            for _ in range(int(step.split(":")[1])):
                self.http.request("POST", URL, extra=True)
                self.calls.append("extra")
            self.http.request("POST", URL)
            self.calls.append("main")
            return [Result("delivered", status_code=200, exchanges=self.http.take_exchanges())]
        if isinstance(step, DeliveryError):
            raise step
        return [step for _ in events]


@pytest.fixture
def scripted(monkeypatch):
    monkeypatch.setitem(vendors.VENDORS, Scripted.key, Scripted)
    monkeypatch.setattr(Scripted, "script", [])
    monkeypatch.setattr(Scripted, "calls", [])
    send_module._vendors.clear()
    yield Scripted
    send_module._vendors.clear()


def make_destination(source: Source, **fields: Any) -> Destination:
    destination = Destination.objects.create(name="Scripted", slug="scripted", vendor="scripted", **fields)
    destination.sources.add(source)
    return destination


def test_a_throttled_try_is_recorded_with_its_hint_and_the_destination_remembers_the_hint(db, source, scripted):
    destination = make_destination(source)
    delivery = factories.make_delivery(destination, factories.make_event(source))
    scripted.script.append(
        Result("throttled", error_code="rate_limited", error_message="606 Max rate", hint="Lower it.", retry_after=20)
    )

    kick(destination.id)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.throttled) == (Delivery.Status.RETRYING, 0, 1)
    assert delivery.hint == "Lower it."
    attempt = delivery.attempt_log.get()
    assert (attempt.outcome, attempt.error_code, attempt.hint) == (
        Attempt.Outcome.THROTTLED,
        "rate_limited",
        "Lower it.",
    )
    destination.refresh_from_db()
    assert (destination.last_error, destination.last_error_hint) == ("606 Max rate", "Lower it.")
    assert destination.last_error_code == "rate_limited"


def test_throttled_tries_do_not_grow_the_backoff_and_numbers_keep_counting(db, source, scripted):
    destination = make_destination(source)
    delivery = factories.make_delivery(destination, factories.make_event(source))
    for step in (Result("throttled", retry_after=0), Result("throttled", retry_after=0), Result("retry")):
        scripted.script.append(step)
        Delivery.objects.filter(id=delivery.id).update(next_attempt_at=timezone.now())
        hold(destination, 0)
        kick(destination.id)

    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.throttled) == (1, 2)
    assert list(delivery.attempt_log.order_by("number").values_list("number", "outcome")) == [
        (1, "throttled"),
        (2, "throttled"),
        (3, "retry"),
    ]
    # The first counted attempt backs off by the base delay (tests: DELIVERY_RETRY_BASE), not by the third.
    from django.conf import settings

    assert delivery.next_attempt_at <= timezone.now() + timedelta(seconds=settings.DELIVERY_RETRY_BASE + 1)


def test_a_daily_quota_waits_past_the_retry_deadline_but_a_plain_throttle_does_not(db, source, scripted):
    destination = make_destination(source, retry_deadline=timedelta(minutes=10))
    quota = factories.make_delivery(destination, factories.make_event(source))
    scripted.script.append(Result("throttled", error_code="daily_quota", retry_after=6 * 3600, defer=True))
    kick(destination.id)
    quota.refresh_from_db()
    assert quota.status == Delivery.Status.RETRYING
    assert quota.next_attempt_at > timezone.now() + timedelta(hours=5)

    hold(destination, 0)
    plain = factories.make_delivery(destination, factories.make_event(source))
    scripted.script.append(Result("throttled", error_code="http_429", error_message="HTTP 429", retry_after=3600))
    kick(destination.id)
    plain.refresh_from_db()
    assert plain.status == Delivery.Status.FAILED
    assert "retry deadline" in plain.error_message


def test_a_throttled_vendor_error_holds_the_destination_and_leaves_the_rest_untouched(db, source, scripted):
    destination = make_destination(source)
    first = factories.make_delivery(destination, factories.make_event(source))
    rest = [factories.make_delivery(destination, factories.make_event(source)) for _ in range(3)]
    scripted.script.append(DeliveryError("615 concurrency", code="concurrency_limited", throttled=True, retry_after=30))

    kick(destination.id)

    first.refresh_from_db()
    assert (first.status, first.throttled, first.error_code) == (Delivery.Status.RETRYING, 1, "concurrency_limited")
    for delivery in rest:
        delivery.refresh_from_db()
        assert delivery.attempt_log.count() == 0
        assert delivery.status == Delivery.Status.PENDING
        assert delivery.next_attempt_at > timezone.now() + timedelta(seconds=25)
    assert take_tokens(destination, 1)[0] == 0


@responses.activate
def test_extra_calls_take_tokens_and_a_batch_whose_next_token_is_far_ends_throttled(db, source, scripted, monkeypatch):
    responses.add(responses.POST, URL, json={"ok": True})
    # A bucket of 3 refilling one token every 20 s.
    monkeypatch.setattr(rate, "bucket_shape", lambda destination: (3.0, 1 / 20))
    destination = make_destination(source)
    first = factories.make_delivery(destination, factories.make_event(source))
    scripted.script.append("extra:2")  # the claim's token, then two extra ones: the bucket is empty
    kick(destination.id)
    first.refresh_from_db()
    assert first.status == Delivery.Status.DELIVERED
    assert scripted.calls == ["extra", "extra", "main"]

    second = factories.make_delivery(destination, factories.make_event(source))
    kick(destination.id)
    second.refresh_from_db()
    assert second.attempt_log.count() == 0  # the claim itself found no token: it waits untouched
    assert second.next_attempt_at > timezone.now() + timedelta(seconds=15)

    RateBucket.objects.filter(destination=destination).update(tokens=1, refilled_at=timezone.now())  # the claim's
    Delivery.objects.filter(id=second.id).update(next_attempt_at=timezone.now())
    scripted.script.append("extra:1")  # its extra call would wait 20 s: longer than the drain
    kick(destination.id)
    second.refresh_from_db()
    assert (second.status, second.attempts, second.throttled) == (Delivery.Status.RETRYING, 0, 1)
    assert second.error_code == "rate_limited"
    assert second.next_attempt_at > timezone.now() + timedelta(seconds=15)


@responses.activate
def test_the_rate_gate_sleeps_for_a_near_token(db, source, scripted):
    responses.add(responses.POST, URL, json={"ok": True})
    destination = make_destination(source, rate_limit=10, rate_period=1)  # a token every 0.1 s
    delivery = factories.make_delivery(destination, factories.make_event(source))
    scripted.script.append("extra:12")

    started = time.monotonic()
    kick(destination.id)

    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.DELIVERED
    assert scripted.calls.count("extra") == 12
    assert time.monotonic() - started >= 0.2  # 13 calls against a bucket of 10: at least three waits of 0.1 s


def test_a_vendor_skip_reason_filters_the_event_with_that_reason(db, source, scripted):
    destination = make_destination(source, config={"skip_type": "page"})
    decision = decide(destination, {"type": "page", "name": "Home"})
    assert (decision.send, decision.code, decision.reason) == (
        False,
        "not_for_vendor",
        "Scripted does not take page events.",
    )
    assert decide(destination, {"type": "track", "event": "Signed Up"}).send

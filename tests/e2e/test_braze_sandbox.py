"""Braze end to end: events through the real Tracking API, the real worker (`manage.py worker`), the Braze vendor,
and the sandbox's Braze fake answering as /users/track does.

A batch of identifies, tracks and an order arrives as attributes, events and purchases in a few requests of at
most 75 objects; an object Braze refuses fails its event alone; 429s and 5xx delay but lose nothing (the only
duplicates are the requests Braze took before its answer was lost); a wrong key fails with the hint and marks
the destination misconfigured; and no API key reaches any Attempt.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from deliveries.models import Attempt, Delivery
from integrations.models import Destination, Source
from integrations.sandbox import Sandbox
from integrations.vendors.braze import HINTS
from tests.e2e.conftest import Worker, post, settled, statuses, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.one_database]

KEY = "sandbox-braze-rest-key"  # the fake's default key
ARRAYS = ("attributes", "events", "purchases")
StartWorker = Callable[..., Worker]


@pytest.fixture
def source(transactional_db: None) -> Source:
    return Source.objects.create(name="Website", slug="website", write_key="wk_e2e_braze")


def braze(source: Source, sb: Sandbox, api_key: str = KEY, slug: str = "braze") -> Destination:
    destination = Destination.objects.create(
        name=f"Braze ({slug})",
        slug=slug,
        vendor="braze",
        config={"rest_endpoint": sb.url + "/braze"},
        credentials={"api_key": api_key},
    )
    destination.sources.add(source)
    return destination


def identify(n: int, email: str | None = None, user: str | None = None) -> dict[str, Any]:
    return {
        "type": "identify",
        "userId": user or f"user-{n}",
        "messageId": f"identify-{n}",
        "traits": {"email": email or f"user-{n}@example.com", "firstName": f"Ada {n}", "plan": "pro"},
    }


def track(n: int, user: str | None = None) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Viewed Pricing",
        "userId": user or f"user-{n}",
        "messageId": f"track-{n}",
        "properties": {"n": n, "$browser": "Firefox"},  # the vendor leaves out what Braze refuses
    }


def order(n: int, *products: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": f"user-{n}",
        "messageId": f"order-{n}",
        "properties": {"order_id": f"o-{n}", "currency": "EUR", "products": list(products)},
    }


def requests_to_braze(sb: Sandbox) -> list[dict[str, Any]]:
    return [entry for entry in sb.received(service="braze") if entry["path"] == "/braze/users/track"]


def objects_in(entry: dict[str, Any]) -> int:
    return sum(len(entry["body"].get(name, [])) for name in ARRAYS)


def delivered(destination: Destination, count: int) -> bool:
    return statuses(destination).get("delivered") == count


def test_identifies_tracks_and_an_order_arrive_as_attributes_events_and_purchases_in_few_requests(
    start_worker: StartWorker, source: Source, sandbox: Sandbox
) -> None:
    destination = braze(source, sandbox)
    mugs = {"product_id": "mug", "price": 12.5, "quantity": 2, "name": "Mug"}
    spoon = {"sku": "spoon", "price": 3, "name": "Spoon"}
    bowl = {"product_id": "bowl", "price": 20, "currency": "GBP"}
    events = [identify(n) for n in range(50)] + [track(n) for n in range(40)] + [order(7, mugs, spoon, bowl)]
    post(source, events)  # all due before the worker starts: it sends them in as few requests as the limit allows
    start_worker()

    wait_until(lambda: delivered(destination, 91), 30, "all 91 delivered")

    users = sandbox.braze_users()
    assert len(users) == 50
    assert users["user-3"]["attributes"] == {"email": "user-3@example.com", "first_name": "Ada 3", "plan": "pro"}
    tracked = sandbox.braze_events()
    assert sorted(e["properties"]["n"] for e in tracked) == list(range(40))
    assert {e["name"] for e in tracked} == {"Viewed Pricing"}
    assert all(e["properties"] == {"n": e["properties"]["n"]} for e in tracked)  # no $browser
    purchases = sorted(sandbox.braze_purchases("user-7"), key=lambda p: p["product_id"])
    assert [(p["product_id"], p["price"], p["quantity"], p["currency"]) for p in purchases] == [
        ("bowl", 20, 1, "GBP"),
        ("mug", 12.5, 2, "EUR"),
        ("spoon", 3, 1, "EUR"),
    ]
    sent = requests_to_braze(sandbox)
    assert all(objects_in(entry) <= 75 for entry in sent), [objects_in(entry) for entry in sent]
    assert sum(objects_in(entry) for entry in sent) == 93  # 50 + 40 + 3 purchases, each sent once
    assert 2 <= len(sent) < 10  # batched: far fewer requests than the 91 events
    assert sandbox.counters["braze_objects"] == 93


def test_an_object_braze_refuses_fails_its_event_alone_with_its_hint(
    start_worker: StartWorker, source: Source, sandbox: Sandbox
) -> None:
    destination = braze(source, sandbox)
    refused = [identify(2, email="ada@"), track(3, user="undefined")]  # a bad email; a placeholder userId
    post(source, [identify(1), *refused, identify(4), track(5)])
    start_worker()

    wait_until(lambda: settled(destination, 5), 30, "all five settled")

    (request,) = requests_to_braze(sandbox)  # one request for all five: the refusals came back inside its 201
    assert request["status"] == 201
    assert len(request["response"]["errors"]) == 2
    by_message = {
        d.event.message_id: d for d in Delivery.objects.filter(destination=destination).select_related("event")
    }
    assert {m: d.status for m, d in by_message.items()} == {
        "identify-1": "delivered",
        "identify-2": "failed",
        "track-3": "failed",
        "identify-4": "delivered",
        "track-5": "delivered",
    }
    for message_id, code in (("identify-2", "invalid_email"), ("track-3", "blocked_external_id")):
        failed = by_message[message_id]
        assert (failed.error_code, failed.hint, failed.attempts) == (code, HINTS[code], 1)  # not retried
        assert failed.error_message.startswith("Braze refused ")
    assert sorted(sandbox.braze_users()) == ["user-1", "user-4", "user-5"]
    assert [e["properties"]["n"] for e in sandbox.braze_events()] == [5]


def test_429s_and_5xx_delay_deliveries_but_lose_none_and_duplicate_only_what_braze_took(
    start_worker: StartWorker, source: Source, sandbox: Sandbox
) -> None:
    destination = braze(source, sandbox)
    start_worker()

    sandbox.configure(error_rate=1.0)  # 502, 503, then a 504 after Braze took the request, in turn
    post(source, [track(n) for n in range(10)])
    wait_until(lambda: sandbox.counters["braze_faults"] >= 3, 20, "502, 503 and 504 answered")
    sandbox.configure(error_rate=0.0, rate_429=1.0, retry_after=1)
    post(source, [track(n) for n in range(10, 20)])
    wait_until(lambda: sandbox.counters["braze_429"] >= 2, 20, "two 429s answered")
    sandbox.configure(rate_429=0.0)
    post(source, [track(n) for n in range(20, 30)])
    wait_until(lambda: delivered(destination, 30), 30, "all 30 delivered after the faults")

    stored = Counter(e["properties"]["n"] for e in sandbox.braze_events())
    assert set(stored) == set(range(30)), "no event lost"
    # Braze does not deduplicate: an event is there twice only when a request that carried it was taken and its
    # answer lost (the 504), which at-least-once delivery retries.
    lost = [entry for entry in requests_to_braze(sandbox) if entry["status"] == 504]
    assert len(lost) == sandbox.counters["braze_lost_answers"] >= 1
    taken_twice = Counter(event["properties"]["n"] for entry in lost for event in entry["body"]["events"])
    assert {n: count - 1 for n, count in stored.items() if count > 1} == dict(taken_twice)
    outcomes = Counter(Attempt.objects.filter(delivery__destination=destination).values_list("outcome", flat=True))
    assert outcomes["retry"] >= 3, outcomes
    assert outcomes["throttled"] >= 2, outcomes
    assert set(Attempt.objects.filter(outcome="throttled").values_list("error_code", flat=True)) == {"rate_limited"}


def test_a_wrong_api_key_fails_with_the_hint_and_marks_the_destination_misconfigured(
    start_worker: StartWorker, source: Source, sandbox: Sandbox
) -> None:
    destination = braze(source, sandbox, api_key="brz-not-the-key")
    post(source, [identify(n) for n in range(3)] + [track(9)])
    start_worker()

    wait_until(lambda: statuses(destination).get("failed") == 4, 30, "all four failed")

    for delivery in Delivery.objects.filter(destination=destination):
        assert (delivery.error_code, delivery.hint, delivery.attempts) == (
            "invalid_api_key",
            HINTS["invalid_api_key"],
            1,
        )
    destination.refresh_from_db()
    assert destination.misconfigured
    assert destination.last_error_hint == HINTS["invalid_api_key"]
    assert (sandbox.counters["braze_401"], sandbox.counters["braze_calls"], sandbox.braze_users()) == (1, 0, {})


def test_no_api_key_reaches_any_attempt(start_worker: StartWorker, source: Source, sandbox: Sandbox) -> None:
    good_key, wrong_key = "brz-rest-7f3c9a1e-hub", "brz-rest-0000-not-it"
    sandbox.configure(braze_api_keys={"hub": good_key})
    good = braze(source, sandbox, api_key=good_key, slug="braze-good")
    wrong = braze(source, sandbox, api_key=wrong_key, slug="braze-wrong")
    post(source, [identify(1), identify(2, email="ada@"), track(3)])
    start_worker()

    wait_until(lambda: settled(good, 3) and settled(wrong, 3), 30, "all settled")

    attempts = list(Attempt.objects.values("exchanges", "error_message", "hint"))
    assert len(attempts) == 6
    dumped = json.dumps(attempts) + json.dumps(list(Delivery.objects.values("error_message", "hint")))
    good.refresh_from_db()
    wrong.refresh_from_db()
    dumped += json.dumps([good.last_error, wrong.last_error])
    assert good_key not in dumped
    assert wrong_key not in dumped
    assert '"Authorization": "[REDACTED]"' in json.dumps(attempts)  # the header was recorded, redacted

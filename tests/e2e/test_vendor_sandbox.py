"""SFMC and Marketo end to end: events through the real Tracking API, the real worker (`manage.py worker`), the
real vendor clients, and the vendor sandbox (integrations/sandbox) answering as the vendors do.

A token expiring mid-stream costs one new token and nothing fails; 30% 5xx/429 still delivers everything; a 606
storm throttles without failing; an unknown Event Definition Key fails with its hint; an unknown Marketo lead
with upsert off fails that record alone; and no client secret or token reaches any Attempt.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from deliveries.models import Attempt, Delivery
from integrations.models import Destination, Source
from integrations.sandbox import Sandbox
from tests.e2e.conftest import post, settled, statuses, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.one_database]

SFMC = {"client_id": "sandbox-sfmc-client", "client_secret": "sandbox-sfmc-secret"}
MARKETO = {"client_id": "sandbox-marketo-client", "client_secret": "sandbox-marketo-secret"}
ORDER_ACTIVITY = {
    "Order Completed": {
        "activity_type_id": 100001,
        "primary_attribute": "properties.order_id",
        "attributes": {"total": "properties.total", "currency": "properties.currency"},
    }
}


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(port=0, seed=11) as sb:
        yield sb


@pytest.fixture
def source(transactional_db) -> Source:
    return Source.objects.create(name="Website", slug="website", write_key="wk_e2e_vendors")


def journey(source: Source, sb: Sandbox, key: str = "APIEvent-welcome", **fields: Any) -> Destination:
    destination = Destination.objects.create(
        name="Welcome journey",
        slug="welcome",
        vendor="sfmc_journey",
        config={
            "auth_base_url": sb.url + "/sfmc/auth",
            "rest_base_url": sb.url + "/sfmc/rest",
            "event_definition_key": key,
        },
        credentials=SFMC,
        filter={"types": ["identify"]},
        **fields,
    )
    destination.sources.add(source)
    return destination


def marketo(source: Source, sb: Sandbox, upsert: bool, **fields: Any) -> Destination:
    destination = Destination.objects.create(
        name="Marketo",
        slug="marketo",
        vendor="marketo",
        config={"base_url": sb.url + "/marketo", "upsert_leads": upsert, "activities": ORDER_ACTIVITY},
        credentials=MARKETO,
        **fields,
    )
    destination.sources.add(source)
    return destination


def identifies(prefix: str, count: int) -> list[dict[str, Any]]:
    return [
        {
            "type": "identify",
            "userId": f"{prefix}-{i}",
            "messageId": f"{prefix}-msg-{i}",
            "traits": {"email": f"{prefix}-{i}@example.com", "firstName": "Ada", "plan": "pro"},
        }
        for i in range(count)
    ]


def order(email: str, n: int) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": f"buyer-{n}",
        "messageId": f"order-{email}-{n}",
        "context": {"traits": {"email": email}},
        "properties": {"order_id": f"o-{n}", "total": 10 + n, "currency": "USD"},
    }


def test_a_token_expiring_mid_stream_costs_exactly_one_new_token_and_nothing_fails(start_worker, source, sandbox):
    destination = journey(source, sandbox)
    start_worker()

    post(source, identifies("first", 30))
    wait_until(lambda: statuses(destination).get("delivered") == 30, 30, "the first 30 delivered")
    assert sandbox.counters["sfmc_tokens_issued"] == 1
    sandbox.expire_tokens()
    post(source, identifies("second", 30))
    wait_until(lambda: statuses(destination).get("delivered") == 60, 30, "all 60 delivered")

    assert statuses(destination) == {"delivered": 60}
    assert sandbox.counters["sfmc_tokens_issued"] == 2  # one new token, however many drains saw the 401
    rejected = [r for r in sandbox.received("sfmc") if r["status"] == 401]
    assert rejected, "the expired token was refused at least once"
    assert len(sandbox.journey_entries) == 60
    assert Attempt.objects.filter(delivery__destination=destination).exclude(outcome="delivered").count() == 0


def test_thirty_percent_5xx_and_429_from_sfmc_still_delivers_every_event(start_worker, source, sandbox):
    sandbox.configure(error_rate=0.2, rate_429=0.1, retry_after=1)
    destination = journey(source, sandbox)
    start_worker()

    for event in identifies("flaky", 60):  # one by one, so that there are many calls for the faults to hit
        post(source, [event])
        time.sleep(0.02)

    wait_until(lambda: statuses(destination).get("delivered") == 60, 90, "all 60 delivered through the faults")
    outcomes = set(Attempt.objects.filter(delivery__destination=destination).values_list("outcome", flat=True))
    assert {"retry", "throttled"} <= outcomes, outcomes  # the faults did happen
    entered = [e["contactKey"] for e in sandbox.journey_entries]
    assert sorted(set(entered)) == sorted(f"flaky-{i}" for i in range(60))


def test_a_606_storm_throttles_marketo_deliveries_without_failing_them(start_worker, source, sandbox):
    # Marketo's window shrunk to 4 calls per 2 s, and the destination's own limit raised far above it, so the
    # hub runs into 606 again and again.
    sandbox.configure(marketo_rate_limit=4, marketo_rate_window=2)
    destination = marketo(source, sandbox, upsert=True, rate_limit=1000, rate_period=1, concurrency=3)
    start_worker()

    for n in range(12):
        post(source, [order(f"storm{n}-{i}@example.com", i) for i in range(3)])
        time.sleep(0.05)

    wait_until(lambda: statuses(destination).get("delivered") == 36, 120, "all 36 delivered after the storm")
    assert sandbox.counters["marketo_606"] > 0, "the storm happened"
    throttled = Attempt.objects.filter(delivery__destination=destination, outcome="throttled")
    assert throttled.exists()
    assert set(throttled.values_list("error_code", flat=True)) == {"rate_limited"}
    assert not Delivery.objects.filter(destination=destination, status="failed").exists()
    assert len(sandbox.activities()) == 36


def test_an_unknown_event_definition_key_fails_at_once_with_the_hint(start_worker, source, sandbox):
    destination = journey(source, sandbox, key="APIEvent-Welcome")  # the real key is APIEvent-welcome
    start_worker()

    post(source, identifies("wrong-key", 3))

    wait_until(lambda: statuses(destination).get("failed") == 3, 30, "three failed")
    delivery = Delivery.objects.filter(destination=destination).first()
    assert delivery.attempts == 1
    assert delivery.error_code == "unknown_event_definition_key"
    assert "APIEvent-Welcome" in delivery.error_message
    assert "case" in delivery.hint.lower()
    assert delivery.attempt_log.get().hint == delivery.hint
    destination.refresh_from_db()
    assert destination.last_error_hint == delivery.hint


def test_an_unknown_marketo_lead_with_upsert_off_fails_alone_with_its_hint(start_worker, source, sandbox):
    destination = marketo(source, sandbox, upsert=False)
    start_worker()

    # ada and grace are leads of the sandbox; nobody is not.
    post(source, [order("ada@example.com", 1), order("nobody@example.com", 2), order("grace@example.com", 3)])

    wait_until(lambda: settled(destination, 3), 30, "all three settled")
    by_email = {
        d.event.payload["context"]["traits"]["email"]: d
        for d in Delivery.objects.filter(destination=destination).select_related("event")
    }
    assert by_email["ada@example.com"].status == "delivered"
    assert by_email["grace@example.com"].status == "delivered"
    lost = by_email["nobody@example.com"]
    assert (lost.status, lost.error_code) == ("failed", "lead_not_found")
    assert "upsert" in lost.hint
    assert sorted(a["leadId"] for a in sandbox.activities()) == sorted(
        lead["id"] for lead in sandbox.leads() if lead["email"] in ("ada@example.com", "grace@example.com")
    )


def test_no_client_secret_or_token_reaches_any_attempt(start_worker, source, sandbox):
    sfmc = journey(source, sandbox)
    mkto = marketo(source, sandbox, upsert=True)
    start_worker()

    post(source, identifies("secret", 5) + [order(f"secret-{i}@example.com", i) for i in range(5)])
    wait_until(lambda: settled(sfmc, 5) and settled(mkto, 10), 30, "everything settled")
    sandbox.expire_tokens()  # a second token of each vendor, and the 401 / 602 that lead to it
    post(source, [*identifies("again", 3), order("again@example.com", 9)])
    wait_until(lambda: settled(sfmc, 8) and settled(mkto, 14), 30, "the second round settled")

    tokens = list(sandbox.sfmc.tokens) + list(sandbox.marketo.tokens)
    assert len(tokens) >= 4
    secrets = [SFMC["client_secret"], MARKETO["client_secret"], *tokens]
    attempts = list(Attempt.objects.values("exchanges", "error_message", "hint"))
    assert attempts
    dumped = json.dumps(attempts)
    assert [s for s in secrets if s in dumped] == []
    dumped = json.dumps(list(Delivery.objects.values("error_message", "hint")))
    assert [s for s in secrets if s in dumped] == []
    assert "[REDACTED]" in json.dumps(attempts)  # the Authorization headers were recorded, redacted

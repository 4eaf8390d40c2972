"""Zendesk end to end: events through the real Tracking API, the real worker (`manage.py worker`), the real Zendesk
vendor, and the sandbox's Zendesk fake answering as Zendesk does.

A track event becomes one ticket with the mapped fields; an identify creates the end user, a later one updates it;
429s and server errors for a while (a 504 among them after the ticket was made) still leave every event exactly
one ticket, the Idempotency-Key answering the retry with the first ticket; wrong credentials fail with their hint
and show the destination misconfigured; and no email, token or Basic header reaches any Attempt.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from django.test import Client

from deliveries.models import Attempt, Delivery
from integrations.models import Destination, Source
from integrations.sandbox import Sandbox
from integrations.vendors.zendesk import Zendesk
from tests.conftest import basic_auth
from tests.e2e.conftest import statuses, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.one_database]

AGENT = {"email": "sandbox-agent@example.com", "api_token": "sandbox-zendesk-token"}  # the fake's default account
CHECKOUT_FAILED = {"types": ["track"], "events": ["Checkout Failed"], "condition": None}


@pytest.fixture
def source(transactional_db: None) -> Source:
    return Source.objects.create(name="Website", slug="website", write_key="wk_e2e_zendesk")


def zendesk(source: Source, sb: Sandbox, action: str = "ticket", **fields: Any) -> Destination:
    destination = Destination.objects.create(
        name=f"Zendesk {action}s",
        slug=f"zendesk-{action}",
        vendor="zendesk",
        config={"base_url": sb.url + "/zendesk", "action": action},
        credentials=fields.pop("credentials", AGENT),
        filter=CHECKOUT_FAILED if action == "ticket" else {"types": ["identify"], "events": [], "condition": None},
        **fields,
    )
    destination.sources.add(source)
    return destination


def send(source: Source, kind: str, body: dict[str, Any]) -> None:
    response = Client().post(
        f"/v1/{kind}", body, content_type="application/json", HTTP_AUTHORIZATION=basic_auth(source.write_key)
    )
    assert response.status_code == 200, response.content


def checkout_failed(n: int) -> dict[str, Any]:
    return {
        "userId": f"buyer-{n}",
        "event": "Checkout Failed",
        "messageId": f"checkout-failed-{n}",
        "context": {"traits": {"email": f"buyer{n}@example.com", "firstName": "Ada", "lastName": f"Buyer {n}"}},
        "properties": {"plan": "pro", "amount": 49, "reason": "card_declined"},
    }


def identify(**traits: Any) -> dict[str, Any]:
    return {"userId": "user-42", "traits": {"email": "ada@example.com", **traits}}


def test_a_track_event_becomes_exactly_one_ticket_with_the_mapped_fields(start_worker, source, sandbox):
    destination = zendesk(source, sandbox)
    start_worker()

    send(source, "track", checkout_failed(1))
    send(source, "track", {**checkout_failed(2), "event": "Order Completed"})  # filtered out: no ticket

    wait_until(lambda: statuses(destination).get("delivered") == 1, 15, "the ticket delivered")
    [ticket] = sandbox.zendesk_tickets()
    [requester] = [user for user in sandbox.zendesk_users() if user["id"] == ticket["requester_id"]]
    assert (requester["email"], requester["name"]) == ("buyer1@example.com", "Ada Buyer 1")
    assert ticket["subject"] == "Checkout Failed"
    assert ticket["description"] == "plan: pro\namount: 49\nreason: card_declined"
    assert ticket["is_public"] is False  # an internal note: the customer is not emailed
    assert ticket["tags"] == ["cdphub", "checkout_failed"]
    assert ticket["external_id"] == "checkout-failed-1"
    assert sandbox.counters["zendesk_calls"] == 1
    [attempt] = Attempt.objects.filter(delivery__destination=destination)
    assert (attempt.outcome, attempt.status_code) == ("delivered", 201)
    assert attempt.exchanges[0]["request"]["headers"]["Idempotency-Key"].startswith("cdphub-")


def test_an_identify_creates_the_end_user_and_a_later_one_updates_it(start_worker, source, sandbox):
    destination = zendesk(source, sandbox, "user")
    start_worker()

    send(source, "identify", identify(firstName="Ada", lastName="Lovelace"))
    wait_until(lambda: statuses(destination).get("delivered") == 1, 15, "the first identify delivered")
    send(source, "identify", identify(name="Ada King", phone="+15551234567"))
    wait_until(lambda: statuses(destination).get("delivered") == 2, 15, "the second identify delivered")

    [user] = sandbox.zendesk_users()
    assert (user["email"], user["external_id"], user["name"], user["phone"]) == (
        "ada@example.com",
        "user-42",
        "Ada King",
        "+15551234567",
    )
    assert user["role"] == "end-user"
    codes = Attempt.objects.filter(delivery__destination=destination).order_by("started_at")
    assert list(codes.values_list("status_code", flat=True)) == [201, 200]  # created, then updated


def test_429s_and_server_errors_for_a_while_still_make_every_ticket_exactly_once(start_worker, source, sandbox):
    # Every call faulted until the fake has throttled and sent each of its server errors, the 504 after a ticket
    # was made among them; the destination's own limit raised so that the test takes seconds.
    sandbox.configure(rate_429=0.3, error_rate=0.7, retry_after=1)
    destination = zendesk(source, sandbox, rate_limit=50, rate_period=1, concurrency=2)
    start_worker()

    for n in range(8):
        send(source, "track", checkout_failed(n))
    wait_until(lambda: sandbox.counters["zendesk_faults"] >= 3, 20, "a 500, a 503 and a 504")
    wait_until(lambda: sandbox.counters["zendesk_429"] >= 1, 20, "a 429")
    sandbox.configure(rate_429=0, error_rate=0)

    wait_until(lambda: statuses(destination).get("delivered") == 8, 30, "all 8 delivered after the faults")
    assert statuses(destination) == {"delivered": 8}
    made = sorted(ticket["external_id"] for ticket in sandbox.zendesk_tickets())
    assert made == sorted(f"checkout-failed-{n}" for n in range(8))
    assert sandbox.counters["zendesk_duplicate_tickets"] == 0
    assert sandbox.counters["zendesk_idempotent_hits"] >= 1  # the 504's ticket, answered again on its retry
    outcomes = set(Attempt.objects.filter(delivery__destination=destination).values_list("outcome", flat=True))
    assert {"throttled", "retry", "delivered"} <= outcomes, outcomes


def test_wrong_credentials_fail_with_their_hint_and_show_the_destination_misconfigured(start_worker, source, sandbox):
    destination = zendesk(source, sandbox, credentials={**AGENT, "api_token": "not-the-token"})
    start_worker()

    send(source, "track", checkout_failed(1))

    wait_until(lambda: statuses(destination).get("failed") == 1, 15, "the delivery failed")
    delivery = Delivery.objects.get(destination=destination)
    assert (delivery.attempts, delivery.error_code) == (1, "invalid_credentials")
    assert delivery.error_message == "HTTP 401: Couldn't authenticate you"
    assert delivery.hint == Zendesk.hints["invalid_credentials"]
    destination.refresh_from_db()
    assert destination.misconfigured
    assert destination.last_error_hint == delivery.hint
    assert sandbox.zendesk_tickets() == []
    assert sandbox.counters["zendesk_401"] == 1


def test_no_email_token_or_basic_header_reaches_any_attempt(start_worker, source, sandbox):
    tickets = zendesk(source, sandbox)
    wrong = {"email": "other-agent@example.com", "api_token": "wrong-token-4x9"}
    users = zendesk(source, sandbox, "user", credentials=wrong)
    start_worker()

    send(source, "track", checkout_failed(1))
    send(source, "identify", identify(firstName="Ada"))
    wait_until(
        lambda: statuses(tickets).get("delivered") == 1 and statuses(users).get("failed") == 1, 15, "both settled"
    )

    secrets = [*AGENT.values(), *wrong.values()]
    secrets += [base64.b64encode(f"{c['email']}/token:{c['api_token']}".encode()).decode() for c in (AGENT, wrong)]
    recorded = json.dumps(list(Attempt.objects.values("exchanges", "error_message", "hint")))
    recorded += json.dumps(list(Delivery.objects.values("error_message", "hint")))
    assert [secret for secret in secrets if secret in recorded] == []
    headers = [e["request"]["headers"] for a in Attempt.objects.all() for e in a.exchanges]
    assert [h["Authorization"] for h in headers] == ["[REDACTED]", "[REDACTED]"]

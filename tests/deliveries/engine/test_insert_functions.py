"""Insert functions in the engine (django-q2 in sync mode: a kick runs its drain inline) against a real local HTTP
receiver: a destination's own JavaScript runs on each event before its vendor, and changes the event, drops it with
a reason, or asks for a retry; what it logged and fetched comes first on the attempt."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deliveries.engine.slots import kick
from deliveries.models import Attempt, Delivery
from integrations.functions import runtime
from integrations.models import Destination, Function, Source
from tests import factories
from tests.receiver import Receiver

EXAMPLES = Path(__file__).resolve().parents[3] / "integrations" / "functions" / "examples"
PLAN_TIER = (EXAMPLES / "add_plan_tier.js").read_text(encoding="utf-8")
DECLARED = [
    {"name": "internalDomain", "type": "string"},
    {"name": "tiers", "type": "text_map"},
    {"name": "lookupUrl", "type": "string"},
    {"name": "lookupKey", "type": "string", "sensitive": True},
]
LOOKUP_KEY = "lk_live_5a1d9e33c7"


@pytest.fixture(autouse=True)
def cold_contexts() -> Iterator[None]:
    """No warm context outlives a test: "insert:1" is a different destination in the next test."""
    runtime.drop_all()
    yield
    runtime.drop_all()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def with_insert(source: Source, url: str, code: str = PLAN_TIER, **settings: Any) -> Destination:
    """A webhook destination posting to `url`, with the insert function `code` and these plain settings."""
    function = Function(name="Insert", slug="insert-fn", kind="insert", code=code, settings=DECLARED)
    function.full_clean()
    function.save()
    destination = Destination(
        name="Hook",
        slug="hook",
        vendor="webhook",
        config={"url": url},
        insert_function=function,
        insert_settings=settings,
        insert_secrets={"lookupKey": LOOKUP_KEY},
        timeout=5.0,
    )
    destination.full_clean()
    destination.save()
    destination.sources.add(source)
    return destination


def track(source: Source, destination: Destination, **properties: Any) -> Delivery:
    event = factories.make_typed_event(source, "track", "Signed Up", {"plan": "pro", **properties})
    return factories.make_delivery(destination, event)


def test_the_destination_receives_the_event_as_the_insert_function_changed_it(db, source, receiver):
    destination = with_insert(source, receiver.url)
    delivery = track(source, destination)

    kick(destination.id)

    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.DELIVERED
    [request] = receiver.requests
    assert request.body["context"]["planTier"] == "sales-assisted"
    assert request.body["messageId"] == delivery.event.message_id
    assert request.body["properties"] == {"plan": "pro"}
    assert "planTier" not in delivery.event.payload.get("context", {})  # the stored event is left as it came


def test_the_insert_functions_settings_reach_it(db, source, receiver):
    destination = with_insert(source, receiver.url, tiers={"pro": "gold"})
    track(source, destination)

    kick(destination.id)

    assert receiver.requests[0].body["context"]["planTier"] == "gold"


def test_drop_event_filters_the_delivery_with_the_reason_and_sends_nothing(db, source, receiver):
    destination = with_insert(source, receiver.url, internalDomain="internal.example")
    delivery = track(source, destination, email="qa@internal.example")

    kick(destination.id)

    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FILTERED
    assert delivery.error_code == "insert_dropped"
    assert delivery.error_message == (
        "Dropped by insert function insert-fn: DropEvent: internal account qa@internal.example "
        "(at enrich (function.js:14:11))"
    )
    attempt = delivery.attempt_log.get()
    assert (attempt.outcome, attempt.exchanges) == (Attempt.Outcome.FILTERED, [])
    assert receiver.requests == []
    destination.refresh_from_db()
    assert destination.last_error == ""  # a drop is the function's decision, not an error of the destination


def test_an_event_type_the_insert_function_has_no_handler_for_is_filtered(db, source, receiver):
    destination = with_insert(source, receiver.url)
    event = factories.make_typed_event(source, "page", "Pricing")
    delivery = factories.make_delivery(destination, event)

    kick(destination.id)

    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FILTERED
    assert delivery.error_code == "insert_filtered"
    assert delivery.error_message == "Filtered at insert function insert-fn: it has no onPage for this event"
    assert receiver.requests == []


def test_a_handler_that_returns_no_event_filters_it_and_says_to_return_the_event(db, source, receiver):
    destination = with_insert(source, receiver.url, "async function onTrack(event) { event.checked = true; }")
    delivery = track(source, destination)

    kick(destination.id)

    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FILTERED
    assert delivery.error_message == (
        "Filtered at insert function insert-fn: onTrack returned no event (return the event)"
    )
    assert receiver.requests == []


def test_a_retry_error_in_the_insert_function_retries_the_delivery(db, source, receiver):
    code = "async function onTrack(event) { throw new RetryError('the enrichment API is down'); }"
    destination = with_insert(source, receiver.url, code)
    delivery = track(source, destination)

    kick(destination.id)

    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.RETRYING
    assert (delivery.attempts, delivery.error_code) == (1, "function_retry")
    assert delivery.error_message.startswith("Insert function insert-fn: RetryError: the enrichment API is down")
    assert receiver.requests == []


def test_any_other_throw_fails_the_delivery_with_the_line(db, source, receiver):
    destination = with_insert(source, receiver.url, "async function onTrack(event) {\n  return event.traits.email;\n}")
    delivery = track(source, destination)

    kick(destination.id)

    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED
    assert delivery.error_code == "insert_function_error"
    assert delivery.error_message == (
        "Insert function insert-fn: TypeError: Cannot read properties of undefined (reading 'email') "
        "(at onTrack (function.js:2:23))"
    )
    assert receiver.requests == []


def test_dropped_and_changed_events_of_one_drain_each_get_their_own_outcome(db, source, receiver):
    destination = with_insert(source, receiver.url, internalDomain="internal.example")
    kept = track(source, destination, email="ada@example.com")
    dropped = track(source, destination, email="qa@internal.example")
    also_kept = track(source, destination, email="bob@example.com", plan="enterprise")

    kick(destination.id)

    for delivery in (kept, dropped, also_kept):
        delivery.refresh_from_db()
    assert [d.status for d in (kept, dropped, also_kept)] == [
        Delivery.Status.DELIVERED,
        Delivery.Status.FILTERED,
        Delivery.Status.DELIVERED,
    ]
    sent = {r.body["messageId"]: r.body["context"]["planTier"] for r in receiver.requests}
    assert sent == {kept.event.message_id: "sales-assisted", also_kept.event.message_id: "key-account"}


ENRICH = """async function onTrack(event, settings) {
  console.log('looking up', event.userId, 'with', settings.lookupKey);
  const response = await fetch(settings.lookupUrl + '?user=' + event.userId, {headers: {'X-Key': settings.lookupKey}});
  event.context = {...event.context, segment: (await response.json()).segment};
  return event;
}"""


def test_the_insert_functions_console_and_fetches_come_before_the_vendors_on_the_attempt(db, source, receiver):
    with Receiver(path="/lookup") as lookup:
        lookup.answer(200, {"segment": "vip"})
        destination = with_insert(source, receiver.url, ENRICH, lookupUrl=lookup.url)
        delivery = track(source, destination)

        kick(destination.id)

        assert lookup.requests[0].headers["x-key"] == LOOKUP_KEY
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.DELIVERED
    assert receiver.requests[0].body["context"]["segment"] == "vip"
    attempt = delivery.attempt_log.get()
    assert attempt.logs == [{"level": "log", "message": "looking up u1 with [REDACTED]", "from": "insert function"}]
    enrich, send = attempt.exchanges
    assert enrich["request"]["url"] == f"{lookup.url}?user=u1"
    assert enrich["request"]["headers"]["x-key"] == "[REDACTED]"
    assert enrich["response"]["status"] == 200
    assert enrich["note"] == "(insert function)"
    assert send["request"]["url"] == receiver.url
    assert LOOKUP_KEY not in str(attempt.exchanges)

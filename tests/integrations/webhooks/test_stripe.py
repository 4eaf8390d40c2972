"""Stripe webhooks: Stripe's own signature scheme, and each recorded event mapped to its Segment-spec events."""

from __future__ import annotations

import hmac
import json
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest
from django.utils.datastructures import CaseInsensitiveMapping

from deliveries.ingest.normalisation import normalise
from integrations.webhooks.base import Incoming, WebhookError
from integrations.webhooks.stripe import Stripe

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "stripe"
SECRET = "whsec_8Qb3kZrT1m6WvN0xYp4sLc7dGh2JfA9e"
RECEIVED_AT = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
NOW = int(RECEIVED_AT.timestamp())
CONTEXT = {"integration": {"name": "stripe"}}


def generate_signature_header(payload: str, secret: str, timestamp: int, scheme: str = "v1") -> str:
    """stripe-python's WebhookSignature.generate_signature_header (with its _compute_signature), not our code."""
    signed_payload = f"{timestamp}.{payload}"
    signature = hmac.new(secret.encode("utf-8"), msg=signed_payload.encode("utf-8"), digestmod=sha256).hexdigest()
    return f"t={timestamp},{scheme}={signature}"


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def request(body: bytes, signature: str | None = None, *, header: str = "Stripe-Signature") -> Incoming:
    headers = {header: signature} if signature is not None else {}
    # Django's request.headers: case-insensitive
    return Incoming(body, CaseInsensitiveMapping(headers), json.loads(body), RECEIVED_AT)


def signed(body: bytes, *, secret: str = SECRET, timestamp: int = NOW) -> Incoming:
    return request(body, generate_signature_header(body.decode(), secret, timestamp))


def function(secret: str = SECRET, **config: Any) -> Stripe:
    return Stripe(config, {"signing_secret": secret})


def mapped(name: str) -> list[dict[str, Any]]:
    """Verify the signed fixture as the webhook view does, then return its events."""
    stripe = function()
    incoming = signed(fixture(name))
    stripe.verify(incoming)
    return stripe.events(incoming)


def edited(name: str, **changes: Any) -> Incoming:
    """The fixture with top-level fields or data.object fields (given as object__field) changed, unsigned."""
    event = json.loads(fixture(name))
    for key, value in changes.items():
        if key.startswith("object__"):
            event["data"]["object"][key.removeprefix("object__")] = value
        else:
            event[key] = value
    return request(json.dumps(event).encode())


def refusal(stripe: Stripe, incoming: Incoming, step: str = "verify") -> WebhookError:
    with pytest.raises(WebhookError) as caught:
        getattr(stripe, step)(incoming)
    return caught.value


# fixture: the (type, name, identity) of each event it makes
EXPECTED = {
    "customer.created": [
        ("identify", None, {"userId": "cus_QOm8cTzpS2oYzE"}),
        ("track", "Customer Created", {"userId": "cus_QOm8cTzpS2oYzE"}),
    ],
    "customer.updated": [
        ("identify", None, {"userId": "cus_QOm8cTzpS2oYzE"}),
        ("track", "Customer Updated", {"userId": "cus_QOm8cTzpS2oYzE"}),
    ],
    "customer.subscription.created": [("track", "Subscription Created", {"userId": "cus_QOm8cTzpS2oYzE"})],
    "customer.subscription.updated": [("track", "Subscription Updated", {"userId": "cus_QOm8cTzpS2oYzE"})],
    "customer.subscription.deleted": [("track", "Subscription Canceled", {"userId": "cus_QOm8cTzpS2oYzE"})],
    "customer.subscription.trial_will_end": [("track", "Subscription Trial Ending", {"userId": "cus_QOm8cTzpS2oYzE"})],
    "checkout.session.completed": [("track", "Checkout Completed", {"userId": "cus_QOm8cTzpS2oYzE"})],
    "checkout.session.completed.guest": [("track", "Checkout Completed", {"anonymousId": "grace.hopper@example.com"})],
    "invoice.paid": [("track", "Invoice Paid", {"userId": "cus_QOm8cTzpS2oYzE"})],
    "invoice.payment_succeeded": [("track", "Invoice Paid", {"userId": "cus_QOm8cTzpS2oYzE"})],
    "invoice.payment_failed": [("track", "Invoice Payment Failed", {"userId": "cus_QOm8cTzpS2oYzE"})],
    "payment_intent.succeeded": [("track", "Payment Succeeded", {"userId": "cus_QRt7Lm2Zp9WcXa"})],
    "charge.refunded": [("track", "Charge Refunded", {"userId": "cus_QOm8cTzpS2oYzE"})],
}


def test_every_fixture_has_an_expectation() -> None:
    assert sorted(EXPECTED) == sorted(path.stem for path in FIXTURES.glob("*.json"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_signed_fixture_maps_to_its_named_events_for_the_stripe_customer(name: str) -> None:
    events = mapped(name)

    assert [
        (e["type"], e.get("event"), {k: e[k] for k in ("userId", "anonymousId") if k in e}) for e in events
    ] == EXPECTED[name]
    stripe_event = json.loads(fixture(name))
    for event in events:
        assert event["context"]["integration"] == {"name": "stripe"}
        assert event["messageId"].startswith((stripe_event["id"], "in_"))
        assert event["timestamp"] == datetime.fromtimestamp(stripe_event["created"], UTC).isoformat(
            timespec="milliseconds"
        ).replace("+00:00", "Z")
        if event["type"] == "track":
            assert event["properties"]["stripeEventId"] == stripe_event["id"]
            assert event["properties"]["livemode"] is False
        normalise(event, event["type"], RECEIVED_AT)  # the Tracking API accepts it as it is


def test_a_new_customer_becomes_an_identify_with_its_traits_and_a_customer_created_track() -> None:
    assert mapped("customer.created") == [
        {
            "type": "identify",
            "userId": "cus_QOm8cTzpS2oYzE",
            "traits": {
                "email": "ada.lovelace@example.com",
                "name": "Ada Lovelace",
                "phone": "+33 4 72 00 00 00",
                "description": "Signed up from the pricing page",
                "createdAt": "2024-05-31T16:08:36.000Z",
                "address": {
                    "street": "12 rue de la République, Bâtiment B",
                    "city": "Lyon",
                    "postalCode": "69002",
                    "country": "FR",
                },
            },
            "context": {**CONTEXT, "traits": {"email": "ada.lovelace@example.com"}},
            "timestamp": "2024-05-31T16:08:37.000Z",
            "messageId": "evt_1PXhJ2LkdIwHu7ixa0W8nB3c-identify",
        },
        {
            "type": "track",
            "event": "Customer Created",
            "userId": "cus_QOm8cTzpS2oYzE",
            "properties": {
                "customerId": "cus_QOm8cTzpS2oYzE",
                "stripeEventId": "evt_1PXhJ2LkdIwHu7ixa0W8nB3c",
                "stripeType": "customer.created",
                "livemode": False,
            },
            "context": {**CONTEXT, "traits": {"email": "ada.lovelace@example.com"}},
            "timestamp": "2024-05-31T16:08:37.000Z",
            "messageId": "evt_1PXhJ2LkdIwHu7ixa0W8nB3c",
        },
    ]


def test_a_subscription_update_carries_the_plan_its_price_per_interval_and_what_changed() -> None:
    assert mapped("customer.subscription.updated") == [
        {
            "type": "track",
            "event": "Subscription Updated",
            "userId": "cus_QOm8cTzpS2oYzE",
            "properties": {
                "subscriptionId": "sub_1PXhN4LkdIwHu7ixK3pQm8Zs",
                "status": "active",
                "planId": "price_1PXhAbLkdIwHu7ixTeam0M",
                "planName": "Team monthly",
                "priceIds": ["price_1PXhAbLkdIwHu7ixTeam0M"],
                "productId": "prod_QOmAq1Wc3Tm0Zr",
                "amount": 145.0,  # 5 seats at 29.00
                "currency": "EUR",
                "interval": "month",
                "quantity": 5,
                "trialEnd": "2024-06-14T16:08:37.000Z",
                "cancelAtPeriodEnd": False,
                "previous": {"items": {"data": [{"quantity": 3}]}, "quantity": 3, "status": "trialing"},
                "stripeEventId": "evt_1PbRr9LkdIwHu7ixDq0Jc4Wn",
                "stripeType": "customer.subscription.updated",
                "livemode": False,
            },
            "context": CONTEXT,
            "timestamp": "2024-06-14T16:08:40.000Z",
            "messageId": "evt_1PbRr9LkdIwHu7ixDq0Jc4Wn",
        }
    ]


def test_a_guest_checkout_is_anonymous_under_the_buyers_lower_cased_email() -> None:
    assert mapped("checkout.session.completed.guest") == [
        {
            "type": "track",
            "event": "Checkout Completed",
            "anonymousId": "grace.hopper@example.com",
            "properties": {
                "sessionId": "cs_test_b2Lr4AqX8oZc3Su6Yd9We1Mn",
                "amount": 34.5,
                "currency": "EUR",
                "mode": "payment",
                "paymentStatus": "paid",
                "stripeEventId": "evt_1PYa2bLkdIwHu7ixC5dE6fGh",
                "stripeType": "checkout.session.completed",
                "livemode": False,
            },
            "context": {**CONTEXT, "traits": {"email": "Grace.Hopper@Example.com"}},
            "timestamp": "2024-06-04T11:20:00.000Z",
            "messageId": "evt_1PYa2bLkdIwHu7ixC5dE6fGh",
        }
    ]


def test_a_failed_invoice_payment_says_when_stripe_retries_and_where_to_pay() -> None:
    assert mapped("invoice.payment_failed") == [
        {
            "type": "track",
            "event": "Invoice Payment Failed",
            "userId": "cus_QOm8cTzpS2oYzE",
            "properties": {
                "invoiceId": "in_1PjWp9LkdIwHu7ixQ8rTz0Ab",
                "number": "8C2F1A0B-0003",
                "amountDue": 145.0,
                "amountPaid": 0.0,
                "currency": "EUR",
                "status": "open",
                "billingReason": "subscription_cycle",
                "hostedInvoiceUrl": "https://invoice.stripe.com/i/acct_1Ks9/test_YWNjdF8x",
                "subscriptionId": "sub_1PXhN4LkdIwHu7ixK3pQm8Zs",
                "attemptCount": 2,
                "nextPaymentAttempt": "2024-07-17T16:08:20.000Z",
                "stripeEventId": "evt_1PjWpCLkdIwHu7ixS3qA9bXc",
                "stripeType": "invoice.payment_failed",
                "livemode": False,
            },
            "context": {**CONTEXT, "traits": {"email": "ada@analytical-engines.example"}},
            "timestamp": "2024-07-14T16:08:22.000Z",
            "messageId": "evt_1PjWpCLkdIwHu7ixS3qA9bXc",
        }
    ]


def test_a_payment_in_yen_keeps_its_amount_as_yen_have_no_minor_unit() -> None:
    assert mapped("payment_intent.succeeded") == [
        {
            "type": "track",
            "event": "Payment Succeeded",
            "userId": "cus_QRt7Lm2Zp9WcXa",
            "properties": {
                "paymentIntentId": "pi_3PcT1xLkdIwHu7ix1aB2c3D4",
                "amount": 4500,
                "currency": "JPY",
                "status": "succeeded",
                "description": "Gift card",
                "stripeEventId": "evt_3PcT1yLkdIwHu7ix0Gh4Jk5L",
                "stripeType": "payment_intent.succeeded",
                "livemode": False,
            },
            "context": {**CONTEXT, "traits": {"email": "hokusai@example.jp"}},
            "timestamp": "2024-06-18T08:40:02.000Z",
            "messageId": "evt_3PcT1yLkdIwHu7ix0Gh4Jk5L",
        }
    ]


def test_an_unmapped_type_is_kept_and_named_after_its_type_in_title_case() -> None:
    assert mapped("charge.refunded") == [
        {
            "type": "track",
            "event": "Charge Refunded",
            "userId": "cus_QOm8cTzpS2oYzE",
            "properties": {
                "objectId": "ch_3PbRrBLkdIwHu7ix0Fq7Wd2K",
                "objectType": "charge",
                "status": "succeeded",
                "amount": 145.0,
                "currency": "EUR",
                "previous": {"amount_refunded": 0, "refunded": False},
                "stripeEventId": "evt_3PbRrBLkdIwHu7ix1Np6Qr7S",
                "stripeType": "charge.refunded",
                "livemode": False,
            },
            "context": CONTEXT,
            "timestamp": "2024-06-20T16:13:20.000Z",
            "messageId": "evt_3PbRrBLkdIwHu7ix1Np6Qr7S",
        }
    ]
    incoming = edited("charge.refunded", type="radar.early_fraud_warning.created")
    assert function().events(incoming)[0]["event"] == "Radar Early Fraud Warning Created"


@pytest.mark.parametrize(
    ("stripe_type", "name"),
    [
        ("customer.subscription.paused", "Subscription Paused"),
        ("customer.subscription.resumed", "Subscription Resumed"),
        ("customer.subscription.pending_update_applied", "Customer Subscription Pending Update Applied"),
    ],
)
def test_each_subscription_type_has_its_name(stripe_type: str, name: str) -> None:
    (event,) = function().events(edited("customer.subscription.updated", type=stripe_type))

    assert event["event"] == name
    assert event["properties"]["stripeType"] == stripe_type


@pytest.mark.parametrize(
    ("stripe_type", "name"),
    [
        ("invoice.created", "Invoice Created"),
        ("invoice.finalized", "Invoice Finalized"),
        ("invoice.upcoming", "Invoice Upcoming"),
        ("invoice.payment_action_required", "Invoice Payment Action Required"),
    ],
)
def test_each_invoice_type_has_its_name(stripe_type: str, name: str) -> None:
    (event,) = function().events(edited("invoice.payment_failed", type=stripe_type))

    assert event["event"] == name
    assert event["messageId"] == "evt_1PjWpCLkdIwHu7ixS3qA9bXc"


def test_a_deleted_customer_is_a_track_without_an_identify() -> None:
    (event,) = function().events(edited("customer.created", type="customer.deleted"))

    assert (event["type"], event["event"], event["userId"]) == ("track", "Customer Deleted", "cus_QOm8cTzpS2oYzE")


def test_invoice_paid_and_payment_succeeded_for_one_invoice_are_stored_once() -> None:
    (paid,) = mapped("invoice.paid")
    (succeeded,) = mapped("invoice.payment_succeeded")

    assert paid["messageId"] == succeeded["messageId"] == "in_1PbRrALkdIwHu7ixM4nQ2cVt-paid"
    assert paid["properties"]["stripeEventId"] != succeeded["properties"]["stripeEventId"]


def test_a_failed_payment_carries_stripes_decline_reason() -> None:
    error = {
        "code": "card_declined",
        "decline_code": "insufficient_funds",
        "message": "Your card has insufficient funds.",
    }
    incoming = edited(
        "payment_intent.succeeded",
        type="payment_intent.payment_failed",
        object__status="requires_payment_method",
        object__last_payment_error=error,
    )

    (event,) = function().events(incoming)

    assert event["event"] == "Payment Failed"
    assert event["properties"]["errorCode"] == "insufficient_funds"
    assert event["properties"]["errorMessage"] == "Your card has insufficient funds."


@pytest.mark.parametrize(
    ("currency", "cents", "amount"),
    [("eur", 1999, 19.99), ("usd", 5, 0.05), ("jpy", 500, 500), ("krw", 12000, 12000), ("kwd", 5120, 5.12)],
)
def test_amounts_are_in_major_units_by_stripes_decimal_rules(currency: str, cents: int, amount: float) -> None:
    incoming = edited("payment_intent.succeeded", object__currency=currency, object__amount=cents)

    (event,) = function().events(incoming)

    assert event["properties"]["amount"] == amount
    assert event["properties"]["currency"] == currency.upper()


def test_an_object_without_customer_or_email_is_anonymous_under_its_own_id() -> None:
    incoming = edited("payment_intent.succeeded", object__customer=None, object__receipt_email=None)

    (event,) = function().events(incoming)

    assert event["anonymousId"] == "pi_3PcT1xLkdIwHu7ix1aB2c3D4"
    assert "userId" not in event
    assert event["context"] == CONTEXT


def test_an_expanded_customer_object_gives_its_id() -> None:
    incoming = edited("invoice.paid", object__customer={"id": "cus_QOm8cTzpS2oYzE", "object": "customer"})

    assert function().events(incoming)[0]["userId"] == "cus_QOm8cTzpS2oYzE"


def test_an_invoice_of_a_recent_api_version_finds_its_subscription_under_parent() -> None:
    parent = {"subscription_details": {"subscription": "sub_1PXhN4LkdIwHu7ixK3pQm8Zs"}, "type": "subscription_details"}
    incoming = edited("invoice.paid", object__subscription=None, object__parent=parent)

    assert function().events(incoming)[0]["properties"]["subscriptionId"] == "sub_1PXhN4LkdIwHu7ixK3pQm8Zs"


# Signatures ---------------------------------------------------------------------------------------------------


def test_a_request_signed_with_the_endpoint_secret_is_accepted_whatever_the_header_case() -> None:
    body = fixture("invoice.paid")

    function().verify(request(body, generate_signature_header(body.decode(), SECRET, NOW), header="stripe-signature"))


def test_a_request_without_stripe_signature_is_refused() -> None:
    error = refusal(function(), request(fixture("invoice.paid")))

    assert (error.status, error.code) == (401, "missing_signature")
    assert "Stripe-Signature" in error.message


def test_a_request_signed_with_another_secret_is_refused_with_where_to_find_the_right_one() -> None:
    error = refusal(function(), signed(fixture("invoice.paid"), secret="whsec_someone_elses_endpoint"))

    assert (error.status, error.code) == (401, "invalid_signature")
    assert "Stripe → Developers → Webhooks" in error.message


def test_a_body_changed_after_signing_is_refused() -> None:
    body = fixture("invoice.paid")
    header = generate_signature_header(body.decode(), SECRET, NOW)
    altered = body.replace(b'"amount_paid": 14500', b'"amount_paid": 99500')

    error = refusal(function(), request(altered, header))

    assert (error.status, error.code) == (401, "invalid_signature")


@pytest.mark.parametrize("right_first", [True, False])
def test_during_a_secret_roll_one_matching_v1_among_several_is_enough(right_first: bool) -> None:
    body = fixture("invoice.paid")
    right = generate_signature_header(body.decode(), SECRET, NOW).split(",")[1]
    wrong = generate_signature_header(body.decode(), "whsec_the_expired_secret", NOW).split(",")[1]
    signatures = [right, wrong] if right_first else [wrong, right]

    function().verify(request(body, ",".join([f"t={NOW}", *signatures])))


def test_a_signature_in_the_old_v0_scheme_only_is_refused() -> None:
    body = fixture("invoice.paid")

    error = refusal(function(), request(body, generate_signature_header(body.decode(), SECRET, NOW, scheme="v0")))

    assert (error.status, error.code) == (401, "invalid_signature_header")


@pytest.mark.parametrize(
    "header", ["v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd", "t=1717243200"]
)
def test_a_header_without_a_timestamp_or_without_a_v1_signature_is_refused(header: str) -> None:
    error = refusal(function(), request(fixture("invoice.paid"), header))

    assert (error.status, error.code) == (401, "invalid_signature_header")
    assert "t=" in error.message
    assert "v1=" in error.message


@pytest.mark.parametrize("age", [301, -301, 86_400])
def test_a_signature_more_than_the_tolerance_old_or_ahead_is_refused_as_stale(age: int) -> None:
    error = refusal(function(), signed(fixture("invoice.paid"), timestamp=NOW - age))

    assert (error.status, error.code) == (401, "stale_signature")
    assert "clock" in error.message
    assert "replay" in error.message


@pytest.mark.parametrize("age", [0, 300, -300])
def test_a_signature_within_the_tolerance_is_accepted(age: int) -> None:
    function().verify(signed(fixture("invoice.paid"), timestamp=NOW - age))


def test_the_tolerance_is_configurable_and_zero_turns_the_timestamp_check_off() -> None:
    function(tolerance=600).verify(signed(fixture("invoice.paid"), timestamp=NOW - 500))
    function(tolerance=0).verify(signed(fixture("invoice.paid"), timestamp=NOW - 30 * 86_400))


def test_a_wrong_signature_is_reported_as_such_even_when_its_timestamp_is_also_old() -> None:
    error = refusal(function(), signed(fixture("invoice.paid"), secret="whsec_other", timestamp=NOW - 3600))

    assert error.code == "invalid_signature"


def test_without_a_signing_secret_requests_are_not_verified_and_still_mapped() -> None:
    stripe = Stripe({}, {})
    incoming = request(fixture("invoice.paid"))

    assert stripe.verifies is False
    stripe.verify(incoming)
    assert stripe.events(incoming)[0]["event"] == "Invoice Paid"


# Payloads and settings ----------------------------------------------------------------------------------------


def test_a_body_that_is_not_an_object_is_refused() -> None:
    error = refusal(function(), request(b'[{"id": "evt_1"}]'), "events")

    assert (error.status, error.code) == (400, "invalid_payload")
    assert "JSON object" in error.message


@pytest.mark.parametrize(
    ("payload", "missing"),
    [
        ({"type": "invoice.paid", "data": {"object": {}}}, "id"),
        ({"id": "evt_1", "data": {"object": {}}}, "type"),
        ({"id": "evt_1", "type": "invoice.paid", "data": {"previous_attributes": {}}}, "data.object"),
        ({"id": "evt_1", "type": "invoice.paid", "data": {"object": "in_1"}}, "data.object"),
        ({"hello": "world"}, "id, type, data.object"),
    ],
)
def test_a_body_that_is_not_a_stripe_event_is_refused_with_what_it_lacks(payload: dict[str, Any], missing: str) -> None:
    error = refusal(function(), request(json.dumps(payload).encode()), "events")

    assert (error.status, error.code) == (400, "invalid_payload")
    assert f"it has no {missing}." in error.message


def test_a_thin_event_is_refused_with_how_to_get_a_snapshot_event() -> None:
    thin = {"id": "evt_test_65R", "object": "v2.core.event", "type": "v1.billing.meter.error_report_triggered"}

    error = refusal(function(), request(json.dumps(thin).encode()), "events")

    assert (error.status, error.code) == (400, "invalid_payload")
    assert "Snapshot" in error.message


def test_good_settings_validate_without_messages() -> None:
    assert Stripe.validate({}, {}) == []
    assert Stripe.validate({"tolerance": 0}, {"signing_secret": SECRET}) == []


@pytest.mark.parametrize(
    ("config", "secrets", "messages"),
    [
        (
            {"tolerance": -1},
            {},
            ["config.tolerance: must be 0 or more seconds (300 is Stripe's default, 0 turns the check off)"],
        ),
        ({"tolerance": "300"}, {}, ["config.tolerance: must be a whole number, not a string"]),
        ({"tolerence": 300}, {}, ["config.tolerence: unknown setting"]),
        (
            {},
            {"signing_secret": "sk_live_51Hx"},
            [
                "settings.signing_secret: this is a Stripe API key; paste the endpoint's signing secret (whsec_…) "
                "from Stripe → Developers → Webhooks → your endpoint → Signing secret"
            ],
        ),
    ],
)
def test_bad_settings_are_each_explained(config: Any, secrets: Any, messages: list[str]) -> None:
    assert Stripe.validate(config, secrets) == messages


def test_a_source_with_bad_settings_refuses_requests_until_they_are_fixed() -> None:
    with pytest.raises(WebhookError) as caught:
        Stripe({"tolerance": -5}, {"signing_secret": SECRET})

    assert (caught.value.status, caught.value.code) == (503, "source_misconfigured")


# Found by the fuzz tests (tests/fuzz/test_webhook_fuzz.py): odd values where Stripe sends an object or a string.


@pytest.mark.parametrize(
    "changes",
    [
        {"object__object": ["subscription"]},  # the object's type as a list: was a TypeError (unhashable)
        {"object__plan": "plan_basic", "object__items": {"data": ["si_1", 7]}},  # ids where objects belong
        {"object__items": {"data": [{"price": "price_1", "quantity": 2}]}},
    ],
)
def test_odd_values_where_stripe_nests_objects_map_without_those_fields(changes: dict[str, Any]) -> None:
    (track,) = function("").events(edited("customer.subscription.created", **changes))

    assert (track["event"], track["userId"]) == ("Subscription Created", "cus_QOm8cTzpS2oYzE")


@pytest.mark.parametrize("created", [1e300, -1e300, 253402300800])
def test_a_created_time_past_the_calendar_leaves_the_timestamp_to_the_hub(created: float) -> None:
    events = function("").events(edited("customer.created", created=created))

    assert all("timestamp" not in event for event in events)


def test_an_address_line_that_is_not_text_is_left_out_of_the_street() -> None:
    address = {"line1": "1 Main St", "line2": ["Suite", 4], "city": "Springfield"}
    identify, _ = function("").events(edited("customer.created", object__address=address))

    assert identify["traits"]["address"] == {"street": "1 Main St", "city": "Springfield"}

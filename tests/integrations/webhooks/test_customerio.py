"""Customer.io reporting webhooks: Customer.io's own signature, and each recorded payload mapped to its track event."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils.datastructures import CaseInsensitiveMapping

from deliveries.ingest.normalisation import normalise
from integrations.webhooks.base import Incoming, WebhookError
from integrations.webhooks.customerio import CustomerIo

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "customerio"
SIGNING_KEY = "3f1c9a2e7b5d4c8a9e0f1b2c3d4e5f60"
RECEIVED_AT = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
NOW = str(int(RECEIVED_AT.timestamp()))


def cio_signature(key: str, timestamp: str, body: bytes) -> str:
    """Sign the way Customer.io does (vendor-contracts.md §3.2), without the code under test."""
    return hmac.new(key.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def request(body: bytes, *, key: str = SIGNING_KEY, timestamp: str = NOW, **headers: str) -> Incoming:
    signed = {"X-CIO-Timestamp": timestamp, "X-CIO-Signature": cio_signature(key, timestamp, body)}
    # Django's request.headers: case-insensitive
    return Incoming(body, CaseInsensitiveMapping({**signed, **headers}), json.loads(body), RECEIVED_AT)


def function(secret: str = SIGNING_KEY, **config: Any) -> CustomerIo:
    return CustomerIo(config, {"signing_secret": secret})


def mapped(name: str, **config: Any) -> dict[str, Any]:
    """Verify the signed fixture as the webhook view does, then return its one event."""
    cio = function(**config)
    incoming = request(fixture(name))
    cio.verify(incoming)
    (event,) = cio.events(incoming)
    return event


def refusal(cio: CustomerIo, incoming: Incoming, step: str = "events") -> WebhookError:
    with pytest.raises(WebhookError) as caught:
        getattr(cio, step)(incoming)
    return caught.value


def unsigned(payload: Any) -> Incoming:
    return Incoming(json.dumps(payload).encode(), CaseInsensitiveMapping({}), payload, RECEIVED_AT)


NAMES = {
    "email_delivered": ("Email Delivered", "customerio:email_delivered"),
    "email_opened": ("Email Opened", "customerio:email_opened"),
    "email_clicked": ("Email Link Clicked", "customerio:email_clicked"),
    "email_bounced": ("Email Bounced", "customerio:email_bounced"),
    "email_spammed": ("Email Marked as Spam", "customerio:email_spammed"),
    "email_unsubscribed": ("Email Unsubscribed", "customerio:email_unsubscribed"),
    "email_delivered_without_customer_id": ("Email Delivered", "customerio:email_delivered"),
    "customer_subscribed": ("Customer Subscribed", "customerio:customer_subscribed"),
    "customer_unsubscribed": ("Customer Unsubscribed", "customerio:customer_unsubscribed"),
    "sms_delivered": ("SMS Delivered", "customerio:sms_delivered"),
    "push_opened": ("Push Opened", "customerio:push_opened"),
    "legacy_email_delivered": ("Email Delivered", "customerio:email_delivered"),
    "legacy_email_clicked": ("Email Link Clicked", "customerio:email_clicked"),
    "unknown_metric": ("Unknown Event", "customerio:email_suppressed"),
}


def test_every_fixture_has_its_expected_names() -> None:
    assert sorted(path.stem for path in FIXTURES.glob("*.json")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_each_signed_fixture_becomes_one_track_event_named_as_segments_source_names_it(name: str) -> None:
    event = mapped(name)
    assert (event["type"], event["event"]) == ("track", NAMES[name][0])
    assert event["messageId"] == event["properties"]["eventId"] == json.loads(fixture(name))["event_id"]


@pytest.mark.parametrize("name", NAMES)
def test_the_customerio_naming_keeps_customerios_own_object_type_and_metric(name: str) -> None:
    event = mapped(name, naming="customerio")
    assert event["event"] == NAMES[name][1]
    assert "eventType" not in event["properties"]  # the name says it already


@pytest.mark.parametrize("name", NAMES)
def test_each_event_is_accepted_by_the_tracking_api_with_customerios_time(name: str) -> None:
    event = mapped(name)
    stored = normalise(event, event["type"], RECEIVED_AT)
    sent_at = datetime.fromtimestamp(json.loads(fixture(name))["timestamp"], UTC)
    assert stored["timestamp"] == sent_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_a_delivered_email_maps_ids_subject_and_the_persons_email() -> None:
    assert mapped("email_delivered") == {
        "type": "track",
        "event": "Email Delivered",
        "messageId": "01ER4R5WB62QWCNREKFB4DYXGR",
        "userId": "user-123",
        "properties": {
            "eventId": "01ER4R5WB62QWCNREKFB4DYXGR",
            "deliveryId": "REAC4wUAAYYJgQgkyRqwwEPeOA6Nfv==",
            "campaignId": 7,
            "actionId": 41,
            "emailSubject": "Thanks for signing up",
        },
        "context": {
            "traits": {"email": "ada@example.com", "cioId": "7ef807109981"},
            "integration": {"name": "customerio"},
        },
        "timestamp": "2023-01-31T20:26:59.000Z",
    }


def test_a_clicked_email_carries_the_link_url_and_id() -> None:
    assert mapped("email_clicked") == {
        "type": "track",
        "event": "Email Link Clicked",
        "messageId": "01E4C8BES5XT87ZWRJFTB35YJ3",
        "userId": "0200102",
        "properties": {
            "eventId": "01E4C8BES5XT87ZWRJFTB35YJ3",
            "deliveryId": "RPILAgABcRhIBqSp7kiPekGBIeVh",
            "actionId": 36,
            "broadcastId": 9,
            "emailSubject": "Spring is here",
            "link": {"url": "https://shop.example.com/spring?utm_source=customerio", "id": 1},
        },
        "context": {"traits": {"email": "test@example.com"}, "integration": {"name": "customerio"}},
        "timestamp": "2020-03-26T20:25:48.000Z",
    }


def test_a_bounced_email_gives_the_failure_message_as_the_reason() -> None:
    assert mapped("email_bounced") == {
        "type": "track",
        "event": "Email Bounced",
        "messageId": "01E4C4HDQ7P1X9KTKF0ZX7PWHF",
        "userId": "0200102",
        "properties": {
            "eventId": "01E4C4HDQ7P1X9KTKF0ZX7PWHF",
            "deliveryId": "RMehBAAAAXE7r_ONUGXly9DBGkpq1JS31=",
            "newsletterId": 736,
            "contentId": 1146,
            "emailSubject": "Thanks for joining!",
            "reason": "550 5.5.0 Requested action not taken: mailbox unavailable",
        },
        "context": {"traits": {"email": "test@example.com"}, "integration": {"name": "customerio"}},
        "timestamp": "2020-03-26T19:19:10.000Z",
    }


def test_a_customer_unsubscribe_takes_the_email_from_email_address() -> None:
    assert mapped("customer_unsubscribed") == {
        "type": "track",
        "event": "Customer Unsubscribed",
        "messageId": "01E4C4C6P79C12J5A6KPE6XNFD",
        "userId": "0200102",
        "properties": {"eventId": "01E4C4C6P79C12J5A6KPE6XNFD"},
        "context": {"traits": {"email": "test@example.com"}, "integration": {"name": "customerio"}},
        "timestamp": "2020-03-26T19:16:19.000Z",
    }


def test_an_sms_recipient_is_the_phone_number_not_the_email() -> None:
    assert mapped("sms_delivered") == {
        "type": "track",
        "event": "SMS Delivered",
        "messageId": "01E4XXPN42JDF4B1ATQKTZ8WHW",
        "userId": "0200102",
        "properties": {
            "eventId": "01E4XXPN42JDF4B1ATQKTZ8WHW",
            "deliveryId": "RPILAgIBcRh6qzHz-8gKvscP2UZa",
            "actionId": 38,
            "broadcastId": 9,
        },
        "context": {
            "traits": {"email": "test@example.com", "phone": "+18008675309"},
            "integration": {"name": "customerio"},
        },
        "timestamp": "2020-04-02T17:05:00.000Z",
    }


def test_a_push_event_keeps_the_devices_it_went_to() -> None:
    event = mapped("push_opened")
    assert event["properties"]["recipients"] == [
        {
            "device_id": json.loads(fixture("push_opened"))["data"]["recipients"][0]["device_id"],
            "device_platform": "android",
        }
    ]
    assert event["context"] == {"integration": {"name": "customerio"}}  # no email: a device token is not one


def test_a_legacy_click_is_read_like_the_current_format() -> None:
    assert mapped("legacy_email_clicked") == {
        "type": "track",
        "event": "Email Link Clicked",
        "messageId": "5b68360d2bf711479353",
        "userId": "568",
        "properties": {
            "eventId": "5b68360d2bf711479353",
            "campaignId": "33",
            "emailSubject": "Why haven't you visited lately?",
            "emailId": "34",
            "campaignName": "Inactivity Teaser",
            "templateId": "12",
            "link": {"url": "http://example.com/come-back", "id": "2"},
        },
        "context": {"traits": {"email": "customer@example.com"}, "integration": {"name": "customerio"}},
        "timestamp": "2012-11-04T05:15:12.000Z",
    }


def test_an_unknown_metric_is_kept_as_unknown_event_with_its_original_type() -> None:
    assert mapped("unknown_metric") == {
        "type": "track",
        "event": "Unknown Event",
        "messageId": "01H8Z3K4M5N6P7Q8R9S0T1V2W3",
        "userId": "user-123",
        "properties": {
            "eventId": "01H8Z3K4M5N6P7Q8R9S0T1V2W3",
            "eventType": "email.suppressed",
            "deliveryId": "REAC4wUAAYYJgQgkyRqwwEPeOA6Nfw==",
            "campaignId": 7,
            "actionId": 41,
            "reason": "Address is on the suppression list",
        },
        "context": {
            "traits": {"email": "ada@example.com", "cioId": "7ef807109981"},
            "integration": {"name": "customerio"},
        },
        "timestamp": "2023-08-22T10:26:40.000Z",
    }


def test_an_email_without_a_customer_id_uses_the_email_as_anonymous_id() -> None:
    assert mapped("email_delivered_without_customer_id") == {
        "type": "track",
        "event": "Email Delivered",
        "messageId": "01HB6V4XQ2YV0N6ZG6F4K8M1PQ",
        "anonymousId": "lead@example.com",
        "properties": {
            "eventId": "01HB6V4XQ2YV0N6ZG6F4K8M1PQ",
            "deliveryId": "RAECAAGHfCmhxNy9p1a5pOUIvjk=",
            "transactionalMessageId": 2,
            "emailSubject": "Your receipt",
        },
        "context": {
            "traits": {"email": "lead@example.com", "cioId": "d1e2f3a4b5c6"},
            "integration": {"name": "customerio"},
        },
        "timestamp": "2023-09-27T07:33:20.000Z",
    }


# vendor-contracts.md §3.5, row by row
TABLE = [
    *[("email", m, f"Email {m.capitalize()}") for m in ("sent", "delivered", "opened", "bounced", "dropped")],
    *[("email", m, f"Email {m.capitalize()}") for m in ("failed", "deferred", "unsubscribed", "subscribed")],
    *[("email", m, f"Email {m.capitalize()}") for m in ("converted", "attempted", "drafted")],
    ("email", "clicked", "Email Link Clicked"),
    ("email", "spammed", "Email Marked as Spam"),
    ("customer", "subscribed", "Customer Subscribed"),
    ("customer", "unsubscribed", "Customer Unsubscribed"),
    *[("sms", m, f"SMS {m.capitalize()}") for m in ("sent", "delivered", "bounced", "failed", "converted")],
    *[("sms", m, f"SMS {m.capitalize()}") for m in ("attempted", "drafted")],
    ("sms", "clicked", "SMS Link Clicked"),
    *[("push", m, f"Push {m.capitalize()}") for m in ("sent", "delivered", "opened", "bounced", "dropped")],
    *[("push", m, f"Push {m.capitalize()}") for m in ("failed", "converted", "attempted", "drafted")],
    ("push", "clicked", "Push Link Clicked"),
    *[("slack", m, f"Slack Message {m.capitalize()}") for m in ("sent", "failed", "attempted", "drafted")],
    ("slack", "clicked", "Slack Message Link Clicked"),
    *[("webhook", m, f"Webhook Message {m.capitalize()}") for m in ("sent", "failed", "attempted", "drafted")],
    ("webhook", "clicked", "Webhook Message Link Clicked"),
    ("in_app", "opened", "Unknown Event"),
    ("customer", "cio_subscription_preferences_changed", "Unknown Event"),
    ("slack", "delivered", "Unknown Event"),
    ("sms", "opened", "Unknown Event"),
]


def payload(**fields: Any) -> dict[str, Any]:
    return {"event_id": "01HZZZ", "timestamp": 1700000000, "data": {"customer_id": "42"}, **fields}


@pytest.mark.parametrize(("object_type", "metric", "name"), TABLE)
def test_every_object_type_and_metric_gets_the_contracts_segment_name(object_type: str, metric: str, name: str) -> None:
    (event,) = function("").events(unsigned(payload(object_type=object_type, metric=metric)))
    assert event["event"] == name
    assert event["properties"].get("eventType") == (f"{object_type}.{metric}" if name == "Unknown Event" else None)


def test_a_legacy_event_type_is_split_at_the_first_underscore() -> None:
    (event,) = function("").events(unsigned(payload(event_type="customer_unsubscribed")))
    assert event["event"] == "Customer Unsubscribed"


def test_an_unknown_legacy_event_type_is_kept_with_its_original_name() -> None:
    cio = function("")
    (event,) = cio.events(unsigned(payload(event_type="email_converted_twice")))
    assert (event["event"], event["properties"]["eventType"]) == ("Unknown Event", "email_converted_twice")
    (event,) = function("", naming="customerio").events(unsigned(payload(event_type="newsletter")))
    assert event["event"] == "customerio:newsletter"


def test_numeric_ids_become_strings_and_a_missing_timestamp_is_left_to_the_tracking_api() -> None:
    body = payload(object_type="email", metric="sent", event_id=918273, data={"customer_id": 42}, timestamp="soon")
    (event,) = function("").events(unsigned(body))
    assert (event["messageId"], event["userId"]) == ("918273", "42")
    assert "timestamp" not in event


def test_a_person_known_only_by_cio_id_is_kept_as_anonymous() -> None:
    body = payload(object_type="push", metric="sent", data={"identifiers": {"cio_id": "a0b1c2"}})
    (event,) = function("").events(unsigned(body))
    assert event["anonymousId"] == "a0b1c2"
    assert "userId" not in event


# Signatures -------------------------------------------------------------------------------------------


def test_a_source_without_a_signing_secret_accepts_unsigned_requests() -> None:
    cio = function("")
    assert cio.verifies is False
    assert function().verifies is True
    (event,) = cio.events(unsigned(json.loads(fixture("email_opened"))))
    assert event["event"] == "Email Opened"


@pytest.mark.parametrize("missing", ["X-CIO-Timestamp", "X-CIO-Signature"])
def test_a_request_without_the_signature_headers_is_refused(missing: str) -> None:
    incoming = request(fixture("email_delivered"))
    headers = {k: v for k, v in incoming.headers.items() if k != missing}
    error = refusal(function(), Incoming(incoming.body, headers, incoming.payload, RECEIVED_AT), "verify")
    assert (error.status, error.code) == (401, "missing_signature")
    assert missing in error.message


def test_a_request_signed_with_another_key_tells_the_marketer_which_key_to_copy() -> None:
    error = refusal(function(), request(fixture("email_delivered"), key="the-track-api-key"), "verify")
    assert (error.status, error.code) == (401, "invalid_signature")
    assert "reporting webhook's settings and copy its signing key (not the Track API key)" in error.message
    assert "signing secret" in error.message


def test_a_body_changed_by_one_byte_fails_the_signature() -> None:
    good = request(fixture("email_delivered"))
    body = good.body.replace(b'"campaign_id": 7', b'"campaign_id": 8')
    assert len(body) == len(good.body)
    assert body != good.body
    error = refusal(function(), Incoming(body, good.headers, json.loads(body), RECEIVED_AT), "verify")
    assert error.code == "invalid_signature"


def test_a_base64_signature_is_refused_because_customerio_sends_hex() -> None:
    body = fixture("email_delivered")
    digest = hmac.new(SIGNING_KEY.encode(), b"v0:" + NOW.encode() + b":" + body, hashlib.sha256).digest()
    error = refusal(function(), request(body, **{"X-CIO-Signature": base64.b64encode(digest).decode()}), "verify")
    assert error.code == "invalid_signature"


def test_a_signature_cannot_be_moved_to_another_timestamp() -> None:
    body = fixture("email_delivered")
    moved = request(body, **{"X-CIO-Timestamp": str(int(NOW) + 1)})
    assert refusal(function(), moved, "verify").code == "invalid_signature"


def test_a_signature_in_upper_case_hex_is_accepted() -> None:
    body = fixture("email_delivered")
    function().verify(request(body, **{"X-CIO-Signature": cio_signature(SIGNING_KEY, NOW, body).upper()}))


def test_an_old_timestamp_is_accepted_when_no_tolerance_is_set() -> None:
    week_ago = str(int((RECEIVED_AT - timedelta(days=7)).timestamp()))
    function().verify(request(fixture("email_delivered"), timestamp=week_ago))


@pytest.mark.parametrize("offset", [-301, 301])
def test_a_timestamp_outside_the_tolerance_is_refused(offset: int) -> None:
    incoming = request(fixture("email_delivered"), timestamp=str(int(NOW) + offset))
    error = refusal(function(timestamp_tolerance=300), incoming, "verify")
    assert (error.status, error.code) == (401, "stale_signature")
    assert "more than 300 seconds" in error.message
    assert "timestamp_tolerance" in error.message


def test_a_timestamp_inside_the_tolerance_is_accepted() -> None:
    function(timestamp_tolerance=300).verify(request(fixture("email_delivered"), timestamp=str(int(NOW) - 299)))


def test_a_timestamp_that_is_not_a_number_is_stale_when_a_tolerance_is_set() -> None:
    error = refusal(function(timestamp_tolerance=300), request(fixture("email_delivered"), timestamp="nan"), "verify")
    assert error.code == "stale_signature"


# Payloads that cannot be mapped -----------------------------------------------------------------------


def test_a_list_of_events_is_refused_because_customerio_posts_one_object() -> None:
    error = refusal(function(""), unsigned([json.loads(fixture("email_delivered"))]))
    assert (error.status, error.code) == (400, "invalid_payload")
    assert error.message == "A Customer.io reporting webhook posts one JSON object per event, not a list."


def test_a_payload_without_event_id_is_refused() -> None:
    body = json.loads(fixture("email_delivered"))
    del body["event_id"]
    error = refusal(function(""), unsigned(body))
    assert (error.status, error.code) == (400, "missing_event_id")
    assert "no event_id" in error.message


def test_a_payload_without_object_type_names_what_is_missing() -> None:
    body = json.loads(fixture("email_delivered"))
    del body["object_type"]
    error = refusal(function(""), unsigned(body))
    assert (error.status, error.code) == (400, "missing_event_type")
    assert error.message.startswith("The payload has no object_type: ")


def test_a_payload_with_no_event_type_at_all_names_both_fields_and_the_legacy_one() -> None:
    error = refusal(function(""), unsigned({"event_id": "01HZZZ", "data": {"customer_id": "42"}}))
    assert error.message.startswith("The payload has no object_type and no metric: ")
    assert "legacy event_type" in error.message


def test_a_payload_naming_no_person_is_refused() -> None:
    body = payload(object_type="webhook", metric="sent", data={"recipient": "https://hooks.example.com"})
    error = refusal(function(""), unsigned(body))
    assert (error.status, error.code) == (400, "missing_identity")
    assert "01HZZZ names no person" in error.message
    assert "data.customer_id" in error.message


# Settings ---------------------------------------------------------------------------------------------


def test_good_settings_validate_without_messages() -> None:
    config = {"naming": "customerio", "timestamp_tolerance": 300}
    assert CustomerIo.validate(config, {"signing_secret": SIGNING_KEY}) == []
    assert CustomerIo.validate({}, {}) == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"naming": "rudderstack"}, "config.naming: must be one of 'segment', 'customerio', not 'rudderstack'"),
        ({"timestamp_tolerance": "300"}, "config.timestamp_tolerance: must be a whole number, not a string"),
        (
            {"timestamp_tolerance": 0},
            "config.timestamp_tolerance: must be a positive number of seconds, or null to accept any timestamp",
        ),
        ({"tolerance": 300}, "config.tolerance: unknown setting"),
    ],
)
def test_bad_settings_get_one_clear_message_each(config: dict[str, Any], message: str) -> None:
    assert CustomerIo.validate(config, {}) == [message]


def test_a_signing_secret_that_is_not_text_is_reported() -> None:
    assert CustomerIo.validate({}, {"signing_secret": 123}) == [
        "settings.signing_secret: must be a string, not a number"
    ]


def test_a_source_built_with_bad_settings_asks_for_a_fix_in_the_admin() -> None:
    with pytest.raises(WebhookError) as caught:
        CustomerIo({"naming": "rudderstack"}, {})
    assert (caught.value.status, caught.value.code) == (503, "source_misconfigured")

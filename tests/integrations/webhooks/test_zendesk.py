"""Zendesk webhooks: Zendesk's own signature, event-subscription payloads and trigger bodies mapped to track events."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.utils.datastructures import CaseInsensitiveMapping

from deliveries.ingest.normalisation import normalise
from integrations.webhooks.base import Incoming, WebhookError
from integrations.webhooks.zendesk import Zendesk

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "zendesk"
SECRET = "dGhpcyBpcyBhIHplbmRlc2sgd2ViaG9vayBzZWNyZXQ="
RECEIVED_AT = datetime(2025, 1, 8, 16, 45, 21, tzinfo=UTC)
TIMESTAMP = "2025-01-08T16:45:21Z"
CONTEXT = {"integration": {"name": "zendesk"}}


def zendesk_signature(secret: str, timestamp: str, body: bytes) -> str:
    """Sign the way Zendesk does (vendor-contracts.md §4.2), without the code under test."""
    return base64.b64encode(hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()).decode()


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def request(body: bytes, **headers: str) -> Incoming:
    # Django's request.headers: case-insensitive
    return Incoming(body, CaseInsensitiveMapping(headers), json.loads(body), RECEIVED_AT)


def signed(body: bytes, *, secret: str = SECRET, timestamp: str = TIMESTAMP, **headers: str) -> Incoming:
    return request(
        body,
        **{
            "X-Zendesk-Webhook-Signature": zendesk_signature(secret, timestamp, body),
            "X-Zendesk-Webhook-Signature-Timestamp": timestamp,
            **headers,
        },
    )


def function(secret: str = SECRET) -> Zendesk:
    return Zendesk({}, {"signing_secret": secret})


def mapped(name: str, **headers: str) -> dict[str, Any]:
    """Verify the signed fixture as the webhook view does, then return its one event."""
    zendesk = function()
    incoming = signed(fixture(name), **headers)
    zendesk.verify(incoming)
    (event,) = zendesk.events(incoming)
    return event


def events_of(payload: Any, **headers: str) -> list[dict[str, Any]]:
    return Zendesk({}, {}).events(request(json.dumps(payload).encode(), **headers))


def refusal(zendesk: Zendesk, incoming: Incoming, step: str = "verify") -> WebhookError:
    with pytest.raises(WebhookError) as caught:
        getattr(zendesk, step)(incoming)
    return caught.value


EXPECTED = {
    "ticket.created": ("Ticket Created", {"userId": "8447388090494"}),
    "ticket.status_changed": ("Ticket Status Changed", {"userId": "8447388090494"}),
    "ticket.comment_added": ("Ticket Comment Added", {"userId": "8447388090494"}),
    "trigger.ticket": ("Ticket Created", {"userId": "20978392"}),
    "trigger.flat": ("Ticket Solved", {"anonymousId": "margaret.hamilton@example.com"}),
}


def test_every_fixture_has_an_expectation() -> None:
    assert sorted(EXPECTED) == sorted(path.stem for path in FIXTURES.glob("*.json"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_signed_fixture_maps_to_its_named_track_event(name: str) -> None:
    event = mapped(name)

    assert (event["event"], {k: event[k] for k in ("userId", "anonymousId") if k in event}) == EXPECTED[name]
    assert event["type"] == "track"
    assert event["context"]["integration"] == {"name": "zendesk"}
    normalise(event, "track", RECEIVED_AT)  # the Tracking API accepts it as it is


def test_a_ticket_created_event_belongs_to_the_requester_and_carries_the_ticket() -> None:
    assert mapped("ticket.created") == {
        "type": "track",
        "event": "Ticket Created",
        "userId": "8447388090494",
        "properties": {
            "ticketId": "5158",
            "subject": "Cannot log in to the mobile app",
            "status": "new",
            "priority": "high",
            "type": "problem",
            "tags": ["mobile", "login"],
            "via": "web_form",
            "assigneeId": "8447388090495",
            "groupId": "8447320466430",
            "brandId": "8447346621310",
            "organizationId": "8447346622462",
        },
        "timestamp": "2025-01-08T10:12:07.672Z",
        "messageId": "cbe4028c-7239-495d-b020-f22348516046",
        "context": CONTEXT,
    }


def test_a_status_change_carries_the_previous_and_current_status() -> None:
    assert mapped("ticket.status_changed") == {
        "type": "track",
        "event": "Ticket Status Changed",
        "userId": "8447388090494",
        "properties": {
            "ticketId": "5158",
            "subject": "Cannot log in to the mobile app",
            "status": "solved",
            "priority": "high",
            "type": "problem",
            "tags": ["mobile", "login", "password_reset"],
            "via": "web_form",
            "assigneeId": "8447388090495",
            "groupId": "8447320466430",
            "brandId": "8447346621310",
            "organizationId": "8447346622462",
            "previous": "open",
            "current": "solved",
        },
        "timestamp": "2025-01-08T16:45:20.987Z",
        "messageId": "a8b9c1d2-3e4f-5a6b-7c8d-9e0f1a2b3c4d",
        "context": CONTEXT,
    }


def test_a_comment_event_carries_the_comment_as_zendesk_sent_it() -> None:
    comment = json.loads(fixture("ticket.comment_added"))["event"]["comment"]

    properties = mapped("ticket.comment_added")["properties"]

    assert properties["comment"] == comment
    assert "meta" not in properties


def test_a_trigger_body_keeps_every_field_the_admin_wrote_and_knows_the_requester() -> None:
    assert mapped("trigger.ticket", **{"X-Zendesk-Webhook-Invocation-Id": "8350205582"}) == {
        "type": "track",
        "event": "Ticket Created",
        "userId": "20978392",
        "properties": {
            "account": "acme",
            "ticketId": 35436,
            "subject": "Refund for a double charge",
            "status": "open",
            "priority": "urgent",
            "type": "incident",
            "tags": ["billing", "vip"],
            "via": "Web Form",
            "url": "acme.zendesk.com/agent/tickets/35436",
            "groupId": 98738,
            "updated_at": "2025-02-03T09:14:55Z",
            "latest_comment": "I was charged twice for my March invoice.",
        },
        "timestamp": "2025-02-03T09:14:55.000Z",
        "messageId": "zendesk-invocation-8350205582",
        "context": {**CONTEXT, "traits": {"email": "Grace.Hopper@Example.com", "name": "Grace Hopper"}},
    }


def test_a_flat_trigger_body_without_a_requester_id_is_anonymous_under_the_requesters_email() -> None:
    body = fixture("trigger.flat")

    assert mapped("trigger.flat") == {
        "type": "track",
        "event": "Ticket Solved",
        "anonymousId": "margaret.hamilton@example.com",
        "properties": {
            "ticketId": "35437",
            "subject": "Where is my order?",
            "status": "pending",
            "priority": "normal",
            "order_number": "A-10442",
        },
        "messageId": "zendesk-" + hashlib.sha256(body).hexdigest()[:40],
        "context": {
            **CONTEXT,
            "traits": {"email": "margaret.hamilton@example.com", "name": "Margaret Hamilton"},
        },
    }


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("ticket.created", "Ticket Created"),
        ("ticket_solved", "Ticket Solved"),
        ("Ticket Escalated", "Ticket Escalated"),
        ("priority_changed", "Ticket Priority Changed"),
        ("zen:event-type:ticket.status_changed", "Ticket Status Changed"),
        ("ticket", "Ticket Updated"),
        ("", "Ticket Updated"),
        (None, "Ticket Updated"),
    ],
)
def test_a_trigger_body_names_its_event_in_event_or_is_a_ticket_update(value: Any, name: str) -> None:
    (event,) = events_of({"event": value, "ticket": {"id": 1, "requester": {"id": 2}}})

    assert event["event"] == name


@pytest.mark.parametrize(
    ("requester", "identity"),
    [
        ({"requester": {"id": 7, "email": "a@example.com"}}, {"userId": "7"}),
        ({"requester_id": "7", "requester_email": "a@example.com"}, {"userId": "7"}),
        ({"requester": {"id": "{{ticket.requester.id}}", "email": "A@Example.com "}}, {"anonymousId": "a@example.com"}),
        ({"requester_id": "", "requester_email": "{{ticket.requester.email}}"}, {"anonymousId": "zen:ticket:35436"}),
    ],
)
def test_the_requester_id_is_the_user_then_their_email_then_the_ticket(
    requester: dict[str, Any], identity: dict[str, str]
) -> None:
    (event,) = events_of({"ticket": {"id": 35436, "status": "open", **requester}})

    assert {k: event[k] for k in ("userId", "anonymousId") if k in event} == identity
    assert "requester" not in event["properties"]
    assert "requester_id" not in event["properties"]


def test_a_subscribed_ticket_event_without_a_requester_is_anonymous_under_the_ticket() -> None:
    payload = json.loads(fixture("ticket.status_changed"))
    del payload["detail"]["requester_id"]

    (event,) = events_of(payload)

    assert event["anonymousId"] == "zen:ticket:5158"
    assert "userId" not in event


def test_other_subscribed_events_are_kept_under_a_zendesk_name() -> None:
    user = {
        "type": "zen:event-type:user.active_changed",
        "account_id": 12514403,
        "id": "2b24ef10-19d4-4740-93cf-8f98ec4776c0",
        "time": "2099-07-04T05:33:18Z",
        "subject": "zen:user:6596848315901",
        "detail": {"id": "6596848315901", "email": "jane@example.com", "role": "end-user"},
        "event": {"current": False, "previous": True},
    }
    organization = {**user, "type": "zen:event-type:organization.created", "subject": "zen:organization:77"}
    organization["detail"] = {"id": "77", "name": "Acme"}
    organization["event"] = {}

    (user_event,) = events_of(user)
    (organization_event,) = events_of(organization)

    assert (user_event["event"], user_event["userId"]) == ("Zendesk User Active Changed", "6596848315901")
    assert user_event["properties"] == {**user["detail"], "current": False, "previous": True}
    assert (organization_event["event"], organization_event["anonymousId"]) == (
        "Zendesk Organization Created",
        "zen:organization:77",
    )


def test_a_body_without_a_ticket_is_kept_whole_as_a_zendesk_webhook() -> None:
    payload = {"requester_email": "ops@example.com", "satisfaction": "good", "score": 9}

    (event,) = events_of(payload)

    assert event["event"] == "Zendesk Webhook"
    assert event["anonymousId"] == "ops@example.com"
    assert event["properties"] == payload


def test_a_body_without_requester_or_ticket_is_refused_with_the_fields_to_add() -> None:
    error = refusal(Zendesk({}, {}), request(b'{"message": "hello", "ticket": {"status": "open"}}'), "events")

    assert (error.status, error.code) == (400, "missing_identity")
    assert '"id": "{{ticket.id}}"' in error.message
    assert '"id": "{{ticket.requester.id}}"' in error.message


def test_a_body_that_is_not_an_object_is_refused() -> None:
    error = refusal(Zendesk({}, {}), request(b'["5158"]'), "events")

    assert (error.status, error.code) == (400, "invalid_payload")


def test_a_retried_trigger_delivery_keeps_its_message_id_and_another_invocation_gets_another() -> None:
    body = {"ticket": {"id": 1, "status": "open", "requester": {"id": 2}}}

    first = events_of(body, **{"X-Zendesk-Webhook-Invocation-Id": "8350205582"})[0]["messageId"]
    retry = events_of(body, **{"x-zendesk-webhook-invocation-id": "8350205582"})[0]["messageId"]
    other = events_of(body, **{"X-Zendesk-Webhook-Invocation-Id": "8350205583"})[0]["messageId"]

    assert first == retry == "zendesk-invocation-8350205582"
    assert other != first


def test_without_an_invocation_id_the_message_id_is_a_hash_of_the_body() -> None:
    open_ticket = events_of({"ticket": {"id": 1, "status": "open", "requester": {"id": 2}}})[0]["messageId"]
    solved_ticket = events_of({"ticket": {"id": 1, "status": "solved", "requester": {"id": 2}}})[0]["messageId"]

    assert open_ticket == events_of({"ticket": {"id": 1, "status": "open", "requester": {"id": 2}}})[0]["messageId"]
    assert open_ticket != solved_ticket


# Signatures ---------------------------------------------------------------------------------------------------


def test_a_request_signed_with_the_webhook_secret_is_accepted_whatever_the_header_case() -> None:
    body = fixture("ticket.created")
    headers = {
        "x-zendesk-webhook-signature": zendesk_signature(SECRET, TIMESTAMP, body),
        "x-zendesk-webhook-signature-timestamp": TIMESTAMP,
    }

    function().verify(request(body, **headers))


@pytest.mark.parametrize("missing", ["X-Zendesk-Webhook-Signature", "X-Zendesk-Webhook-Signature-Timestamp"])
def test_a_request_without_either_signature_header_is_refused(missing: str) -> None:
    incoming = signed(fixture("ticket.created"))
    headers = {key: value for key, value in incoming.headers.items() if key != missing}

    error = refusal(function(), request(incoming.body, **headers))

    assert (error.status, error.code) == (401, "missing_signature")
    assert missing in error.message


def test_a_request_signed_with_another_secret_is_refused_with_where_to_find_the_right_one() -> None:
    error = refusal(function(), signed(fixture("ticket.created"), secret="another webhook's secret"))

    assert (error.status, error.code) == (401, "invalid_signature")
    assert "Reveal secret" in error.message


def test_a_body_or_timestamp_changed_after_signing_is_refused() -> None:
    body = fixture("ticket.created")
    signature = zendesk_signature(SECRET, TIMESTAMP, body)
    altered = body.replace(b'"priority": "HIGH"', b'"priority": "LOW"')
    later = {"X-Zendesk-Webhook-Signature": signature, "X-Zendesk-Webhook-Signature-Timestamp": "2025-01-09T00:00:00Z"}

    for incoming in (
        request(
            altered, **{"X-Zendesk-Webhook-Signature": signature, "X-Zendesk-Webhook-Signature-Timestamp": TIMESTAMP}
        ),
        request(body, **later),
    ):
        assert refusal(function(), incoming).code == "invalid_signature"


def test_a_signature_over_timestamp_dot_body_or_in_hex_is_refused() -> None:
    body = fixture("ticket.created")
    digest = hmac.new(SECRET.encode(), TIMESTAMP.encode() + body, hashlib.sha256)
    dotted = zendesk_signature(SECRET, TIMESTAMP + ".", body)

    for signature in (dotted, digest.hexdigest()):
        headers = {"X-Zendesk-Webhook-Signature": signature, "X-Zendesk-Webhook-Signature-Timestamp": TIMESTAMP}
        assert refusal(function(), request(body, **headers)).code == "invalid_signature"


def test_without_a_signing_secret_requests_are_not_verified_and_still_mapped() -> None:
    zendesk = Zendesk({}, {})
    incoming = request(fixture("ticket.created"))

    assert zendesk.verifies is False
    zendesk.verify(incoming)
    assert zendesk.events(incoming)[0]["event"] == "Ticket Created"


def test_settings_validate_with_a_message_per_bad_setting() -> None:
    assert Zendesk.validate({}, {"signing_secret": SECRET}) == []
    assert Zendesk.validate(None, None) == []
    assert Zendesk.validate({"tolerance": 300}, {"signing_secret": 5}) == [
        "config.tolerance: unknown setting",
        "settings.signing_secret: must be a string, not a number",
    ]


@pytest.mark.parametrize("time", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_a_time_at_the_calendars_edge_leaves_the_timestamp_to_the_hub(time: str) -> None:
    """Found by the fuzz tests: converting such a time to UTC overflowed (a server error)."""
    (event,) = events_of({"ticket": {"id": 7, "updated_at": time}, "requester_id": 42})

    assert "timestamp" not in event
    assert event["userId"] == "42"

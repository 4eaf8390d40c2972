"""The webhook vendor: the whole outgoing request, its Standard Webhooks signature, batching, mapping, validation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
import responses

from integrations.vendors import VENDORS
from integrations.vendors.contract import DeliveryError, Vendor
from integrations.vendors.http import REDACTED, USER_AGENT
from integrations.vendors.webhook import Webhook

URL = "https://hooks.example.com/cdp/events"
KEY = b"standard-webhooks-test-key-32byte"
SIGNING_SECRET = "whsec_" + base64.b64encode(KEY).decode()
API_KEY = "key_live_6b1f0e9d2a"


def make_event(n: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": f"user-{n}",
        "properties": {"revenue": 49.0, "currency": "EUR", "items": [{"sku": "A-1", "qty": 2}]},
        "context": {"traits": {"email": f"ada{n}@example.com"}, "locale": "fr-FR"},
        "messageId": f"msg-webhook-{n}",
        "timestamp": "2024-05-01T10:00:00.000Z",
        **extra,
    }


def webhook(config: dict[str, Any] | None = None, credentials: dict[str, Any] | None = None, mapping: Any = None):
    return Webhook({"url": URL, **(config or {})}, credentials or {}, mapping)


def verify(secret_key: bytes, headers: Any, body: bytes) -> None:
    """Check a Standard Webhooks signature the way a receiver would, without the code under test."""
    message_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    expected = hmac.new(secret_key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    version, _, signature = headers["webhook-signature"].partition(",")
    assert version == "v1"
    assert hmac.compare_digest(base64.b64decode(signature), expected), "the signature does not verify"
    assert abs(int(timestamp) - time.time()) < 10


def test_the_webhook_vendor_is_registered_under_its_key() -> None:
    assert VENDORS["webhook"] is Webhook
    assert Webhook.label == "Webhook"


def test_it_posts_the_event_as_json_with_the_configured_headers(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, json={"ok": True})
    event = make_event()

    [result] = webhook({"headers": {"X-Team": "growth"}}).deliver([event])

    assert result.outcome == "delivered"
    assert result.status_code == 200
    [call] = mocked.calls
    request = call.request
    assert request.method == "POST"
    assert request.url == URL
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == USER_AGENT
    assert request.headers["X-Team"] == "growth"
    assert json.loads(request.body) == event
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature", "Authorization"):
        assert name not in request.headers, f"{name} is sent only when configured"


def test_it_signs_the_body_the_standard_webhooks_way_with_a_whsec_secret(mocked: responses.RequestsMock) -> None:
    mocked.post(URL)
    event = make_event()

    webhook(credentials={"signing_secret": SIGNING_SECRET}).deliver([event])

    request = mocked.calls[0].request
    assert request.headers["webhook-id"] == "msg-webhook-1"
    verify(KEY, request.headers, request.body)


def test_a_secret_without_the_whsec_prefix_is_used_as_raw_bytes(mocked: responses.RequestsMock) -> None:
    mocked.post(URL)

    webhook(credentials={"signing_secret": "plain-shared-secret"}).deliver([make_event()])

    request = mocked.calls[0].request
    verify(b"plain-shared-secret", request.headers, request.body)


def test_it_sends_by_put_when_configured(mocked: responses.RequestsMock) -> None:
    mocked.put(URL, status=204)

    [result] = webhook({"method": "PUT"}).deliver([make_event()])

    assert result.outcome == "delivered"
    assert mocked.calls[0].request.method == "PUT"
    assert result.exchanges[0]["request"]["method"] == "PUT"


def test_secret_headers_are_sent_but_redacted_in_the_exchange(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, json={"ok": True})

    [result] = webhook(
        {"headers": {"X-Team": "growth"}},
        {"signing_secret": SIGNING_SECRET, "headers": {"X-Api-Key": API_KEY}},
    ).deliver([make_event()])

    sent = mocked.calls[0].request.headers
    assert sent["X-Api-Key"] == API_KEY
    recorded = result.exchanges[0]["request"]["headers"]
    assert recorded["X-Api-Key"] == REDACTED
    assert recorded["webhook-signature"] == REDACTED
    assert recorded["X-Team"] == "growth"
    assert recorded["webhook-id"] == "msg-webhook-1"
    log = json.dumps(result.exchanges)
    for secret in (API_KEY, SIGNING_SECRET, sent["webhook-signature"]):
        assert secret not in log


def test_a_batch_of_three_goes_in_one_signed_request_and_all_three_are_delivered(
    mocked: responses.RequestsMock,
) -> None:
    mocked.post(URL, json={"ok": True})
    events = [make_event(n) for n in (1, 2, 3)]
    vendor = webhook({"batch_size": 3}, {"signing_secret": SIGNING_SECRET})
    assert vendor.max_batch == 3

    results = vendor.deliver(events)

    assert [r.outcome for r in results] == ["delivered"] * 3
    [call] = mocked.calls
    assert json.loads(call.request.body) == {"batch": events}
    assert call.request.headers["webhook-id"].startswith("batch_")
    verify(KEY, call.request.headers, call.request.body)
    assert all(len(r.exchanges) == 1 for r in results)


def test_the_batch_id_is_the_same_when_the_same_batch_is_retried(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, status=503)
    mocked.post(URL, status=200)
    events = [make_event(n) for n in (1, 2, 3)]
    vendor = webhook({"batch_size": 3}, {"signing_secret": SIGNING_SECRET})

    first = vendor.deliver(events)
    second = vendor.deliver(events)

    assert [r.outcome for r in first] == ["retry"] * 3
    assert [r.outcome for r in second] == ["delivered"] * 3
    ids = [call.request.headers["webhook-id"] for call in mocked.calls]
    assert ids[0] == ids[1], "receivers dedupe retries on webhook-id"


def test_a_batch_that_fails_fails_for_every_event_in_it(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, status=422, json={"error": "email is required"})

    results = webhook({"batch_size": 3}).deliver([make_event(n) for n in (1, 2, 3)])

    assert [r.outcome for r in results] == ["failed"] * 3
    assert all(r.error_message == "HTTP 422: email is required" for r in results)


def test_the_mapping_shapes_the_body(mocked: responses.RequestsMock) -> None:
    mocked.post(URL)
    event = make_event(traits={"email": "grace@example.com"})

    webhook(mapping={"email": "traits.email", "name": "event"}).deliver([event])

    assert json.loads(mocked.calls[0].request.body) == {"email": "grace@example.com", "name": "Order Completed"}


def test_the_mapping_shapes_each_item_of_a_batch(mocked: responses.RequestsMock) -> None:
    mocked.post(URL)
    events = [make_event(n, traits={"email": f"u{n}@example.com"}) for n in (1, 2)]

    webhook({"batch_size": 2}, mapping={"email": "traits.email", "name": "event"}).deliver(events)

    assert json.loads(mocked.calls[0].request.body) == {
        "batch": [
            {"email": "u1@example.com", "name": "Order Completed"},
            {"email": "u2@example.com", "name": "Order Completed"},
        ]
    }


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"method": "POST"}, "config.url: required"),
        ({"url": URL, "method": "GET"}, "config.method: must be one of 'POST', 'PUT', not 'GET'"),
        ({"url": URL, "batch_size": 0}, "config.batch_size: must be between 1 and 500"),
        ({"url": URL, "batch_size": 501}, "config.batch_size: must be between 1 and 500"),
        ({"url": URL, "batch_size": "3"}, "config.batch_size: must be a whole number, not a string"),
        ({"url": URL, "batch_size": True}, "config.batch_size: must be a whole number, not a boolean"),
        ({"url": URL, "headers": ["X-Team: growth"]}, "config.headers: must be an object of strings, not a list"),
        ({"url": URL, "headers": {"X-Count": 3}}, "config.headers: must be an object of strings"),
        ({"url": URL, "retries": 3}, "config.retries: unknown setting"),
        ({"url": "hooks.example.com/cdp"}, "config.url: must start with http:// or https://"),
        ({"url": 42}, "config.url: must be a string, not a number"),
        ("https://hooks.example.com", "config: must be an object"),
    ],
)
def test_validate_names_each_bad_config_field(config: Any, message: str) -> None:
    assert Webhook.validate(config, {}) == [message]


def test_validate_reports_every_bad_field_at_once() -> None:
    problems = Webhook.validate({"method": "GET", "colour": "red"}, {"signing_secret": 7, "token": "x"})

    assert sorted(problems) == [
        "config.colour: unknown setting",
        "config.method: must be one of 'POST', 'PUT', not 'GET'",
        "config.url: required",
        "credentials.signing_secret: must be a string, not a number",
        "credentials.token: unknown setting",
    ]


def test_validate_accepts_a_complete_config_and_checks_the_mapping() -> None:
    config = {"url": URL, "method": "PUT", "headers": {"X-Team": "growth"}, "batch_size": 50}
    credentials = {"signing_secret": SIGNING_SECRET, "headers": {"X-Api-Key": API_KEY}}

    assert Webhook.validate(config, credentials, {"email": "traits.email"}) == []
    assert Webhook.validate(config, credentials, {"email": "traits.["})[0].startswith("mapping.email: ")
    assert Webhook.validate(config, credentials, ["traits.email"]) == ["mapping: must be an object"]


def test_building_a_webhook_with_bad_settings_raises_a_clear_error() -> None:
    with pytest.raises(DeliveryError) as caught:
        Webhook({"url": URL, "method": "GET"}, {})

    assert caught.value.code == "invalid_settings"
    assert "config.method" in caught.value.message
    assert not caught.value.retryable


def test_it_is_a_vendor() -> None:
    assert issubclass(Webhook, Vendor)


@pytest.mark.parametrize("secret", ["whsec_…", "whsec_not base64!", "whsec_a"])
def test_a_whsec_secret_that_is_not_base64_is_refused_when_saved(secret: str) -> None:
    problems = Webhook.validate({"url": "https://hooks.example.com/in"}, {"signing_secret": secret})
    assert problems == [
        "credentials.signing_secret: a whsec_ secret is whsec_ followed by base64 (as Standard Webhooks issues it); "
        "paste it whole, or use a secret without the whsec_ prefix"
    ]

"""The Segment vendor: POST /v1/batch with Basic auth, batches under 500 KB, events over 32 KB refused alone."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
import responses

from integrations.vendors import VENDORS
from integrations.vendors.contract import DeliveryError
from integrations.vendors.http import REDACTED, USER_AGENT
from integrations.vendors.segment import MAX_BATCH_BYTES, Segment
from tests.vendor_kit import body_of

WRITE_KEY = "wk_live_5Qx8r2Lm0Zt"
US_URL = "https://api.segment.io/v1/batch"
EU_URL = "https://events.eu1.segmentapis.com/v1/batch"
SEGMENT_REQUEST_LIMIT = 500 * 1024  # §5.3: 500 KB per batch request


def make_event(n: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": f"user-{n}",
        "anonymousId": f"anon-{n}",
        "properties": {"revenue": 49.0, "currency": "USD"},
        "context": {"ip": "203.0.113.7", "traits": {"email": f"ada{n}@example.com"}},
        "integrations": {"All": True, "Salesforce": False},
        "messageId": f"msg-segment-{n}",
        "timestamp": "2024-05-01T10:00:00.000Z",
        "originalTimestamp": "2024-05-01T10:00:00.000Z",
        "receivedAt": "2024-05-01T10:00:01.300Z",
        "sentAt": "2024-05-01T10:00:01.250Z",
        "writeKey": "wk_cdphub_source",
        **extra,
    }


def forwarded(event: dict[str, Any]) -> dict[str, Any]:
    """The item Segment gets: Segment sets receivedAt itself, sentAt is per request, the source key stays home."""
    return {k: v for k, v in event.items() if k not in ("receivedAt", "sentAt", "writeKey")}


def segment(config: dict[str, Any] | None = None) -> Segment:
    return Segment(config or {}, {"write_key": WRITE_KEY})


def test_the_segment_vendor_is_registered_under_its_key() -> None:
    assert VENDORS["segment"] is Segment
    assert Segment.max_batch == 100


def test_it_posts_a_batch_with_basic_auth_and_the_exact_body(mocked: responses.RequestsMock) -> None:
    mocked.post(US_URL, json={"success": True})
    events = [make_event(1), make_event(2, type="identify", traits={"plan": "pro"})]
    before = datetime.now(UTC)

    results = segment().deliver(events)

    assert [r.outcome for r in results] == ["delivered", "delivered"]
    [call] = mocked.calls
    request = call.request
    assert request.method == "POST"
    assert request.url == US_URL
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == USER_AGENT
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    body = body_of(call)
    assert set(body) == {"batch", "sentAt"}
    assert body["batch"] == [forwarded(e) for e in events]
    assert body["sentAt"].endswith("Z")
    sent_at = datetime.fromisoformat(body["sentAt"].replace("Z", "+00:00"))
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= sent_at <= datetime.now(UTC)


def test_it_keeps_message_id_and_timestamp_so_segment_can_dedupe_retries(mocked: responses.RequestsMock) -> None:
    mocked.post(US_URL, json={"success": True})

    segment().deliver([make_event()])

    [item] = body_of(mocked.calls[0])["batch"]
    assert item["messageId"] == "msg-segment-1"
    assert item["timestamp"] == "2024-05-01T10:00:00.000Z"
    assert "writeKey" not in item


def test_the_write_key_is_redacted_in_the_exchange(mocked: responses.RequestsMock) -> None:
    mocked.post(US_URL, json={"success": True})

    [result] = segment().deliver([make_event()])

    exchange = result.exchanges[0]
    assert exchange["request"]["headers"]["Authorization"] == REDACTED
    assert exchange["request"]["url"] == US_URL
    assert exchange["response"] == {
        "status": 200,
        "headers": {"Content-Type": "application/json"},
        "body": '{"success":true}',
    }
    assert WRITE_KEY not in json.dumps(result.exchanges)


def test_an_eu_base_url_is_honoured(mocked: responses.RequestsMock) -> None:
    mocked.post(EU_URL, json={"success": True})

    [result] = segment({"base_url": "https://events.eu1.segmentapis.com/"}).deliver([make_event()])

    assert result.outcome == "delivered"
    assert mocked.calls[0].request.url == EU_URL


def many_properties_event(n: int) -> dict[str, Any]:
    """About 10 KB of many small properties: the shape where JSON spacing and escaping add the most."""
    return make_event(n, properties={f"p{i}": i for i in range(800)} | {"name": "Zoë Ünal — café"})


def test_it_splits_a_batch_over_475_000_bytes_into_two_requests_under_segments_limit(
    mocked: responses.RequestsMock,
) -> None:
    mocked.post(US_URL, json={"success": True})
    events = [many_properties_event(n) for n in range(60)]
    assert sum(len(json.dumps(forwarded(e), separators=(",", ":"))) for e in events) > MAX_BATCH_BYTES

    results = segment().deliver(events)

    assert [r.outcome for r in results] == ["delivered"] * 60
    assert len(mocked.calls) == 2
    batches = [body_of(call)["batch"] for call in mocked.calls]
    assert [item["messageId"] for batch in batches for item in batch] == [e["messageId"] for e in events]
    for call in mocked.calls:
        assert len(call.request.body) <= SEGMENT_REQUEST_LIMIT, "each request must stay under Segment's 500 KB"
    assert len(mocked.calls[0].request.body) <= MAX_BATCH_BYTES + 100
    assert results[0].exchanges is not results[-1].exchanges
    assert results[0].exchanges[0]["request"]["body"] != results[-1].exchanges[0]["request"]["body"]


def test_each_split_request_decides_the_fate_of_its_own_events(mocked: responses.RequestsMock) -> None:
    mocked.post(US_URL, json={"success": True})
    mocked.post(US_URL, status=503, json={"message": "try later"})
    events = [many_properties_event(n) for n in range(60)]

    results = segment().deliver(events)

    outcomes = [r.outcome for r in results]
    first = len(body_of(mocked.calls[0])["batch"])
    assert outcomes == ["delivered"] * first + ["retry"] * (60 - first)


def test_an_event_over_32_kb_fails_alone_and_the_others_are_sent(mocked: responses.RequestsMock) -> None:
    mocked.post(US_URL, json={"success": True})
    huge = make_event(2, properties={"notes": "x" * 40_000})
    events = [make_event(1), huge, make_event(3)]

    results = segment().deliver(events)

    assert [r.outcome for r in results] == ["delivered", "failed", "delivered"]
    assert results[1].error_code == "event_too_large"
    assert "32 KB" in results[1].error_message
    assert not results[1].status_code
    [call] = mocked.calls
    assert [item["messageId"] for item in body_of(call)["batch"]] == ["msg-segment-1", "msg-segment-3"]


def test_a_lone_event_over_32_kb_sends_nothing(mocked: responses.RequestsMock) -> None:
    [result] = segment().deliver([make_event(properties={"notes": "x" * 40_000})])

    assert result.outcome == "failed"
    assert result.error_code == "event_too_large"
    assert len(mocked.calls) == 0


def test_a_bad_write_key_is_permanent(mocked: responses.RequestsMock) -> None:
    mocked.post(US_URL, status=401, json={"code": "unauthorized", "message": "Invalid write key"})

    [result] = segment().deliver([make_event()])

    assert result.outcome == "failed"
    assert result.error_code == "http_401"
    assert result.error_message == "HTTP 401: Invalid write key"


def test_a_payload_too_large_answer_is_permanent(mocked: responses.RequestsMock) -> None:
    mocked.post(US_URL, status=400, json={"code": "invalid_request", "message": "Payload too large"})

    [result] = segment().deliver([make_event()])

    assert result.outcome == "failed"
    assert "Payload too large" in result.error_message


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
def test_segments_transient_answers_are_retried(status: int, mocked: responses.RequestsMock) -> None:
    mocked.post(US_URL, status=status, headers={"Retry-After": "30"})

    [result] = segment().deliver([make_event()])

    assert result.outcome == ("throttled" if status == 429 else "retry")  # a 429 waits without counting
    assert result.retry_after == 30.0


def test_the_default_mapping_forwards_the_event_unchanged_and_a_mapping_can_reshape_it(
    mocked: responses.RequestsMock,
) -> None:
    mocked.post(US_URL, json={"success": True})
    mocked.post(US_URL, json={"success": True})
    event = make_event()

    segment().deliver([event])
    Segment(
        {},
        {"write_key": WRITE_KEY},
        {"type": "type", "event": "event", "userId": "userId", "properties": {"email": "context.traits.email"}},
    ).deliver([event])

    assert body_of(mocked.calls[0])["batch"] == [forwarded(event)]
    assert body_of(mocked.calls[1])["batch"] == [
        {"type": "track", "event": "Order Completed", "userId": "user-1", "properties": {"email": "ada1@example.com"}}
    ]


@pytest.mark.parametrize(
    ("config", "credentials", "message"),
    [
        ({}, {}, "credentials.write_key: required"),
        ({}, {"write_key": 12345}, "credentials.write_key: must be a string, not a number"),
        ({"base_url": "api.segment.io"}, {"write_key": WRITE_KEY}, "config.base_url: must be an http(s) URL"),
        (
            {"base_url": ["https://api.segment.io"]},
            {"write_key": WRITE_KEY},
            "config.base_url: must be a string, not a list",
        ),
        ({"region": "eu"}, {"write_key": WRITE_KEY}, "config.region: unknown setting"),
        ({}, {"write_key": WRITE_KEY, "password": "x"}, "credentials.password: unknown setting"),
        ({}, "wk_live", "credentials: must be an object"),
    ],
)
def test_validate_names_each_bad_field(config: Any, credentials: Any, message: str) -> None:
    assert Segment.validate(config, credentials) == [message]


def test_validate_accepts_the_defaults_and_an_eu_base_url() -> None:
    assert Segment.validate({}, {"write_key": WRITE_KEY}) == []
    assert Segment.validate({"base_url": "https://events.eu1.segmentapis.com"}, {"write_key": WRITE_KEY}) == []


def test_building_it_without_a_write_key_raises_a_clear_error() -> None:
    with pytest.raises(DeliveryError, match=r"credentials\.write_key: required"):
        Segment({}, {})

"""The real Segment and RudderStack Python SDKs against a live hub: every event type, once, with corrected times.

How each SDK sends (read from the installed sources; this is the wire contract that must keep working):

* segment-analytics-python 2.4 (`segment/analytics/request.py`): `POST {host}/v1/batch`, Content-Type
  application/json, `Authorization: Basic base64("<write key>:")` (with the colon), and the write key again
  as `writeKey` in the body. gzip only when `gzip=True` (default off). Body: `{"batch": [...], "sentAt":
  ..., "writeKey": ...}`; `sentAt` is batch-level only, the device clock at send time with microseconds and
  `+00:00`. Each item carries `timestamp` (the caller's, or now) to the millisecond and no
  `originalTimestamp`; `messageId` is a uuid4 unless given. Sync mode posts one event per request and
  raises on failure; the background consumer batches up to `upload_size` and reports via `on_error`.
* rudder-sdk-python 2.1 (`rudderstack/analytics/request.py`): `POST {host}/v1/batch`, Content-Type
  application/json, `Content-Encoding: gzip` by default, `requests`' HTTPBasicAuth(write_key, "") which is
  also `Basic base64("<write key>:")`; no `writeKey` in the body. Body: `{"batch": [...], "sentAt": ...}`,
  `sentAt` batch-level with microseconds. Items carry `timestamp` via `isoformat()` (microseconds when the
  datetime has them), `"channel": "server"`, `integrations` defaulting to `{"All": true}`, and an identify
  call puts its traits in `context.traits` only (not at the top level).
"""

from __future__ import annotations

import atexit
import base64
import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import patch

import pytest
import rudderstack.analytics.request as rudder_request
import segment.analytics.request as segment_request
from rudderstack.analytics.client import Client as RudderClient
from segment.analytics.client import Client as SegmentClient

from deliveries.models import Event

pytestmark = [pytest.mark.e2e, pytest.mark.one_database]

WRITE_KEY = "wk_test_website"
# Explicit client timestamps in the past, on whole milliseconds (the hub keeps milliseconds, as Segment does).
PAST = datetime(2024, 3, 1, 9, 30, 15, 123000, tzinfo=UTC)
# Both SDKs send sentAt with microseconds; the hub cuts every time to milliseconds before the arithmetic, so
# the stored fields obey the rule exactly.
SLACK_MS = 0


@dataclass(frozen=True)
class Sdk:
    name: str
    client_class: type
    request_module: Any
    gzip: bool
    body_write_key: bool


SDKS = {
    "segment": Sdk("segment", SegmentClient, segment_request, gzip=False, body_write_key=True),
    "segment-gzip": Sdk("segment-gzip", SegmentClient, segment_request, gzip=True, body_write_key=True),
    "rudderstack": Sdk("rudderstack", RudderClient, rudder_request, gzip=True, body_write_key=False),
}


@dataclass
class Wire:
    """What actually went over HTTP: the prepared requests and the hub's answers."""

    requests: list[Any] = field(default_factory=list)
    responses: list[Any] = field(default_factory=list)

    def bodies(self) -> list[dict[str, Any]]:
        out = []
        for request in self.requests:
            raw = request.body if isinstance(request.body, bytes) else request.body.encode()
            if request.headers.get("Content-Encoding") == "gzip":
                raw = gzip.decompress(raw)
            out.append(json.loads(raw))
        return out


@dataclass
class Harness:
    sdk: Sdk
    host: str
    wire: Wire
    errors: list[tuple[Exception, list[Any]]]
    clients: list[Any] = field(default_factory=list)

    def client(self, write_key: str = WRITE_KEY, **options: Any) -> Any:
        options = {
            "host": self.host,
            "gzip": self.sdk.gzip,
            "max_retries": 0,  # a failure surfaces at once instead of backing off
            "timeout": 5,
            "upload_interval": 0.05,
            "upload_size": 100,
            "on_error": lambda error, batch: self.errors.append((error, batch)),
            **options,
        }
        client = self.sdk.client_class(write_key, **options)
        self.clients.append(client)
        return client


@pytest.fixture(params=list(SDKS))
def sdk(request: pytest.FixtureRequest, live_server, source) -> Iterator[Harness]:
    """A harness for one SDK pointed at the live hub, recording every request; no thread outlives the test."""
    chosen = SDKS[request.param]
    wire = Wire()
    session = chosen.request_module._session
    real_post = session.post

    def spy(*args: Any, **kwargs: Any) -> Any:
        response = real_post(*args, **kwargs)
        wire.requests.append(response.request)
        wire.responses.append(response)
        return response

    harness = Harness(chosen, live_server.url, wire, errors=[])
    with patch.object(session, "post", side_effect=spy):
        yield harness
        for client in harness.clients:
            if client.consumers:
                client.shutdown()  # flush, then stop and join the consumer threads
                atexit.unregister(client.join)
                assert not any(consumer.is_alive() for consumer in client.consumers)
    session.close()  # no keep-alive connection to the live server outlives the test
    assert harness.errors == []


def at(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, value
    return parsed


def ms(dt: datetime) -> int:
    """Whole milliseconds since the epoch (exact integer arithmetic, no float rounding)."""
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def assert_timestamps(payload: dict[str, Any], passed: datetime | None = None, slack_ms: int = SLACK_MS) -> None:
    """The hub's rule: timestamp = receivedAt - (sentAt - originalTimestamp), from the stored strings, in ms."""
    received, sent = at(payload["receivedAt"]), at(payload["sentAt"])
    original, timestamp = at(payload["originalTimestamp"]), at(payload["timestamp"])
    expected = ms(received) - (ms(sent) - ms(original))
    assert abs(ms(timestamp) - expected) <= slack_ms, (expected, payload)
    if passed is not None:
        assert original == passed


def only_event(message_id: str) -> Event:
    rows = list(Event.objects.filter(message_id=message_id))
    assert len(rows) == 1, f"{message_id} stored {len(rows)} times"
    assert rows[0].status == Event.Status.ACCEPTED, rows[0].reject_reason
    return rows[0]


def calls(prefix: str) -> list[dict[str, Any]]:
    """One call of every type, each with a known message id, identity, payload and past timestamp."""
    user, anon = f"{prefix}-user-1", f"{prefix}-anon-1"
    return [
        {
            "method": "identify",
            "message_id": f"{prefix}-identify-1",
            "user_id": user,
            "anonymous_id": anon,
            "traits": {"email": "ada@example.com", "plan": "pro", "logins": 3, "tags": ["a", "b"]},
        },
        {
            "method": "track",
            "message_id": f"{prefix}-track-1",
            "user_id": user,
            "event": "Order Completed",
            "properties": {"order_id": "o-1", "revenue": 42.5, "currency": "EUR", "products": [{"sku": "S-1"}]},
        },
        {
            "method": "page",
            "message_id": f"{prefix}-page-1",
            "anonymous_id": anon,
            "category": "Docs",
            "name": "Pricing",
            "properties": {"path": "/pricing", "referrer": "https://example.org/"},
        },
        {
            "method": "screen",
            "message_id": f"{prefix}-screen-1",
            "user_id": user,
            "category": "App",
            "name": "Home",
            "properties": {"tab": "feed", "badge": None},
        },
        {
            "method": "group",
            "message_id": f"{prefix}-group-1",
            "user_id": user,
            "group_id": "acme",
            "traits": {"name": "Acme Inc", "employees": 50},
        },
        {"method": "alias", "message_id": f"{prefix}-alias-1", "previous_id": anon, "user_id": user},
    ]


def send(client: Any, call: dict[str, Any], timestamp: datetime) -> None:
    kwargs = {k: v for k, v in call.items() if k != "method"}
    getattr(client, call["method"])(timestamp=timestamp, **kwargs)


def assert_wire_format(harness: Harness) -> None:
    """Each request is a gzip-or-not JSON batch to /v1/batch with `Basic base64("key:")` and a batch-level sentAt."""
    assert harness.wire.requests
    expected_auth = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    for request, body, response in zip(
        harness.wire.requests, harness.wire.bodies(), harness.wire.responses, strict=True
    ):
        assert request.method == "POST"
        assert request.url == f"{harness.host}/v1/batch"
        assert request.headers["Authorization"] == expected_auth
        assert request.headers["Content-Type"] == "application/json"
        assert (request.headers.get("Content-Encoding") == "gzip") is harness.sdk.gzip
        assert set(body) == ({"batch", "sentAt", "writeKey"} if harness.sdk.body_write_key else {"batch", "sentAt"})
        assert all("sentAt" not in item and "originalTimestamp" not in item for item in body["batch"])
        assert response.status_code == 200, response.text
        assert response.json()["success"] is True


def test_every_event_type_is_stored_once_with_its_fields_and_corrected_timestamp(sdk: Harness) -> None:
    client = sdk.client()  # the background consumer, batching
    sent = calls(sdk.sdk.name)
    for index, call in enumerate(sent):
        send(client, call, PAST + timedelta(minutes=index))
    client.flush()
    assert sdk.errors == []
    assert_wire_format(sdk)
    assert sum(len(body["batch"]) for body in sdk.wire.bodies()) == len(sent)

    assert Event.objects.count() == len(sent)
    for index, call in enumerate(sent):
        row = only_event(call["message_id"])
        payload = row.payload
        assert row.type == payload["type"] == call["method"]
        assert payload["messageId"] == call["message_id"]
        assert row.user_id == call.get("user_id", "")
        assert row.anonymous_id == call.get("anonymous_id", "")
        assert row.event == call.get("event", "")
        for arg, key in (
            ("event", "event"),
            ("properties", "properties"),
            ("group_id", "groupId"),
            ("previous_id", "previousId"),
            ("name", "name"),
            ("category", "category"),
        ):
            if arg in call:
                assert payload[key] == call[arg], key
        if "traits" in call:
            # RudderStack's identify sends traits in context.traits; the hub copies them up.
            traits_at = payload["traits"]
            assert traits_at == call["traits"]
        assert payload["context"]["library"]["name"] == "analytics-python"
        passed = PAST + timedelta(minutes=index)
        assert_timestamps(payload, passed)
        # Same machine, same clock: the corrected time is the passed one, give or take the send delay.
        assert abs(at(payload["timestamp"]) - passed) < timedelta(seconds=5)
        assert ms(row.timestamp) == ms(at(payload["timestamp"]))
        assert row.received_at == at(payload["receivedAt"])


def test_a_resent_message_id_is_stored_once(sdk: Harness) -> None:
    client = sdk.client()
    first = {
        "method": "track",
        "message_id": f"{sdk.sdk.name}-dup-1",
        "user_id": "u-dup",
        "event": "Signed Up",
        "properties": {"attempt": 1},
    }
    send(client, first, PAST)
    client.flush()
    send(client, {**first, "properties": {"attempt": 2}}, PAST)  # the SDK retrying with the same messageId
    client.flush()

    assert_wire_format(sdk)
    assert [len(body["batch"]) for body in sdk.wire.bodies()] == [1, 1]
    assert [r.json() for r in sdk.wire.responses] == [{"success": True}, {"success": True, "duplicates": 1}]
    row = only_event(first["message_id"])
    assert row.payload["properties"] == {"attempt": 1}  # the first copy is kept, not overwritten
    assert Event.objects.count() == 1


def test_sync_mode_sends_each_call_as_its_own_batch(sdk: Harness) -> None:
    client = sdk.client(sync_mode=True)
    sent = calls(f"{sdk.sdk.name}-sync")
    for index, call in enumerate(sent):
        send(client, call, PAST - timedelta(days=index))
    assert_wire_format(sdk)
    assert [len(body["batch"]) for body in sdk.wire.bodies()] == [1] * len(sent)
    for index, call in enumerate(sent):
        assert_timestamps(only_event(call["message_id"]).payload, PAST - timedelta(days=index))
    send(client, sent[1], PAST)  # a resend in sync mode: acknowledged, not stored again
    assert sdk.wire.responses[-1].json() == {"success": True, "duplicates": 1}
    assert Event.objects.count() == len(sent)


def test_a_refused_batch_surfaces_through_on_error(sdk: Harness) -> None:
    """The error plumbing the other tests rely on: an unknown write key reaches on_error (or raises in sync mode)."""
    refused: list[Any] = []
    client = sdk.client("wk_nobody_has_this", on_error=lambda error, batch: refused.append((error, batch)))
    client.track(user_id="u-1", event="Lost", message_id="refused-1")
    client.flush()
    [(error, batch)] = refused
    assert (error.status, error.code) == (401, "invalid_write_key")
    assert [item["messageId"] for item in batch] == ["refused-1"]

    sync = sdk.client("wk_nobody_has_this", sync_mode=True)
    with pytest.raises(sdk.sdk.request_module.APIError) as raised:
        sync.track(user_id="u-1", event="Lost", message_id="refused-2")
    assert raised.value.status == 401
    assert not Event.objects.exists()


class FastClock(datetime):
    """The device clock, two hours fast."""

    SKEW = timedelta(hours=2)

    @classmethod
    def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
        return datetime.now(tz) + cls.SKEW


def test_a_device_clock_that_is_wrong_is_corrected_by_sent_at(sdk: Harness) -> None:
    client = sdk.client(sync_mode=True)
    happened = datetime.now(UTC) - timedelta(seconds=30)
    device_time = happened + FastClock.SKEW
    device_time = device_time.replace(microsecond=device_time.microsecond // 1000 * 1000)
    with patch.object(sdk.sdk.request_module, "datetime", FastClock):  # sentAt comes from the device clock
        send(
            client,
            {"method": "track", "message_id": f"{sdk.sdk.name}-skew", "user_id": "u-skew", "event": "Clock Test"},
            device_time,
        )
    payload = only_event(f"{sdk.sdk.name}-skew").payload
    assert at(payload["sentAt"]) - at(payload["receivedAt"]) > FastClock.SKEW - timedelta(seconds=5)
    assert_timestamps(payload, device_time)
    assert abs(at(payload["timestamp"]) - happened) < timedelta(seconds=5)


def test_stored_times_obey_the_rule_exactly(sdk: Harness) -> None:
    client = sdk.client(sync_mode=True)
    sent = calls(f"{sdk.sdk.name}-exact")
    for call in sent:
        send(client, call, PAST)
    for call in sent:
        row = only_event(call["message_id"])
        assert_timestamps(row.payload, PAST, slack_ms=0)
        assert row.timestamp == at(row.payload["timestamp"])  # the column and the payload agree


def test_rudderstack_identify_traits_reach_the_top_level(live_server, source) -> None:
    errors: list[Any] = []
    client = RudderClient(
        WRITE_KEY, host=live_server.url, sync_mode=True, max_retries=0, on_error=lambda e, batch: errors.append(e)
    )
    client.identify(user_id="u-traits", traits={"email": "ada@example.com"}, message_id="rudder-traits")
    assert errors == []
    # Destinations map `traits.email` (the design's default mappings); RudderStack puts identify traits in
    # context.traits, so without lifting them the mapping finds nothing.
    assert only_event("rudder-traits").payload["traits"] == {"email": "ada@example.com"}

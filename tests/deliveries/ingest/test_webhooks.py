"""POST /v1/webhooks/<write key>: reading, verifying, mapping and storing a tool's webhook, and every way a
request is refused (each recorded for the Debugger and the source page). A small source function stands in
for the real ones, which have their own tests under tests/integrations/webhooks/."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from django.test import Client

from deliveries.models import Delivery, Event
from integrations import webhooks
from integrations.models import Destination, Source
from integrations.webhooks.base import Incoming, SourceFunction, WebhookError, header, same

SECRET = "whsec-test-0123456789"


@dataclass
class ToyConfig:
    event_name: str = "Toy Happened"


class Toy(SourceFunction):
    """Signed with a hex HMAC of the body in X-Toy-Signature; each item of `items` is one track event."""

    kind = "generic"
    label = "Toy"
    config_class = ToyConfig

    def verify(self, incoming: Incoming) -> None:
        given = header(incoming, "X-Toy-Signature")
        expected = hmac.new(self.secrets.signing_secret.encode(), incoming.body, hashlib.sha256).hexdigest()
        if not same(expected, given):
            raise WebhookError(401, "invalid_signature", "The signature does not match the signing secret.")

    def events(self, incoming: Incoming) -> list[dict[str, Any]]:
        payload = incoming.payload
        if not isinstance(payload, dict) or "items" not in payload:
            raise WebhookError(400, "missing_items", "The payload has no items.")
        if payload.get("explode"):
            raise ZeroDivisionError
        return [
            {"type": "track", "event": self.config.event_name, "messageId": f"toy-{item['id']}", **item.get("who", {})}
            for item in payload["items"]
        ]


@pytest.fixture(autouse=True)
def toy(monkeypatch):
    monkeypatch.setitem(webhooks.FUNCTIONS, "generic", Toy)


@pytest.fixture
def hook_source(db) -> Source:
    return Source.objects.create(
        name="Toy tool", slug="toy", kind="generic", write_key="wk_toy", settings={"signing_secret": SECRET}
    )


def post(source: Source | str, body: Any, *, sign: bool = True, raw: bytes | None = None, **headers: str):
    data = raw if raw is not None else orjson.dumps(body)
    if sign:
        headers["HTTP_X_TOY_SIGNATURE"] = hmac.new(SECRET.encode(), data, hashlib.sha256).hexdigest()
    key = source if isinstance(source, str) else source.write_key
    return Client().post(f"/v1/webhooks/{key}", data, content_type="application/json", **headers)


def items(*ids: int) -> dict[str, Any]:
    return {"items": [{"id": i, "who": {"userId": f"user-{i}"}} for i in ids]}


def test_a_signed_webhook_becomes_events_routed_like_any_other(hook_source):
    destination = Destination.objects.create(
        name="Hook", slug="hook", vendor="webhook", config={"url": "https://example.com/in"}, paused=True
    )
    destination.sources.add(hook_source)

    response = post(hook_source, items(1, 2))

    assert response.status_code == 200
    assert response.json() == {"success": True, "events": 2}
    events = Event.objects.filter(source=hook_source, status="accepted").order_by("message_id")
    assert [(e.message_id, e.type, e.event, e.user_id) for e in events] == [
        ("toy-1", "track", "Toy Happened", "user-1"),
        ("toy-2", "track", "Toy Happened", "user-2"),
    ]
    assert events[0].payload["receivedAt"]
    assert Delivery.objects.filter(destination=destination, status="pending").count() == 2
    hook_source.refresh_from_db()
    assert (hook_source.last_request_status, hook_source.last_request_result) == (200, "2 event(s) stored")


def test_a_retried_webhook_is_acknowledged_and_stored_once(hook_source):
    assert post(hook_source, items(1)).json() == {"success": True, "events": 1}

    again = post(hook_source, items(1))

    assert again.status_code == 200
    assert again.json() == {"success": True, "events": 0, "duplicates": 1}
    assert Event.objects.filter(source=hook_source).count() == 1
    hook_source.refresh_from_db()
    assert hook_source.last_request_result == "0 event(s) stored, 1 duplicate(s) already stored"


@pytest.mark.parametrize(
    ("headers", "code"),
    [({}, "missing_signature"), ({"HTTP_X_TOY_SIGNATURE": "0" * 64}, "invalid_signature")],
)
def test_a_bad_or_missing_signature_is_refused_with_401_and_recorded(hook_source, headers, code):
    response = post(hook_source, items(1), sign=False, **headers)

    assert response.status_code == 401
    assert response.json()["code"] == code
    assert not Event.objects.filter(status="accepted").exists()
    rejected = Event.objects.get(source=hook_source, status="rejected")
    assert rejected.reject_reason.startswith(f"{code}: ")
    assert '"items"' in rejected.payload["raw"]  # what was sent, for the Debugger
    hook_source.refresh_from_db()
    assert hook_source.last_request_status == 401
    assert hook_source.last_request_result.startswith(code)


def test_without_a_signing_secret_requests_are_not_verified(hook_source):
    hook_source.settings = {}
    hook_source.save()  # saving forgets what ingest remembered of the source
    assert post(hook_source, items(3), sign=False).status_code == 200


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"", 400, "invalid_json"),
        (b"event=signup&user=1", 400, "invalid_json"),
        (b'{"no": "items"}', 400, "missing_items"),
        (b"[" + b" " * (512 * 1024) + b"]", 413, "payload_too_large"),
    ],
)
def test_bad_input_gets_a_clear_error_and_is_recorded(hook_source, raw, status, code):
    response = post(hook_source, None, raw=raw)

    assert response.status_code == status
    assert response.json()["code"] == code
    assert response.json()["message"]
    assert Event.objects.get(source=hook_source, status="rejected").reject_reason.startswith(code)


def test_an_event_the_tracking_api_would_refuse_is_refused_alone(hook_source):
    body = {"items": [{"id": 1, "who": {"userId": "user-1"}}, {"id": 2, "who": {}}]}  # the second has no identity

    response = post(hook_source, body)

    assert response.status_code == 200
    data = response.json()
    assert (data["events"], data["rejected"][0]["index"], data["rejected"][0]["messageId"]) == (1, 1, "toy-2")
    assert Event.objects.filter(source=hook_source, status="accepted").count() == 1
    assert Event.objects.filter(source=hook_source, status="rejected").count() == 1


@pytest.mark.parametrize("depth", [65, 300, 1000])
def test_an_event_nested_deeper_than_the_tracking_api_takes_is_refused_alone(hook_source, depth):
    """Found by the fuzz tests: orjson writes no more than 254 levels and Python's JSON ~1,000, so such an event
    (a tool's payload passed on as properties) was a 500 on storing it, accepted or refused."""
    deep = b'{"a":' * depth + b"1" + b"}" * depth
    body = b'{"items": [{"id": 1, "who": {"userId": "u1"}}, {"id": 2, "who": {"userId": "u2", "properties": %s}}]}'

    response = post(hook_source, None, raw=body % deep)

    assert response.status_code == 200, response.content
    assert (response.json()["events"], response.json()["rejected"][0]["code"]) == (1, "too_deep")
    rejected = Event.objects.get(source=hook_source, status="rejected")
    assert (rejected.type, rejected.reject_reason) == (
        "track",
        "too_deep: The event is nested more than 64 levels deep.",
    )


@pytest.mark.parametrize(
    ("kind", "enabled", "key", "status", "code"),
    [
        ("generic", True, "wk_nope", 404, "invalid_write_key"),
        ("generic", False, "wk_toy", 403, "source_disabled"),
        ("http", True, "wk_toy", 400, "not_a_webhook_source"),
    ],
)
def test_the_write_key_must_name_an_enabled_webhook_source(hook_source, kind, enabled, key, status, code):
    hook_source.kind, hook_source.enabled = kind, enabled
    hook_source.save()

    response = post(key, items(1))

    assert (response.status_code, response.json()["code"]) == (status, code)
    assert not Event.objects.filter(status="accepted").exists()


def test_a_source_set_up_wrong_answers_503_so_the_tool_retries_once_it_is_fixed(hook_source):
    hook_source.config = {"event_name": 7}
    hook_source.save()

    response = post(hook_source, items(1))

    assert response.status_code == 503
    assert response.json()["code"] == "source_misconfigured"
    assert "config.event_name: must be a string" in response.json()["message"]


def test_a_crash_in_a_source_function_is_a_500_the_tool_retries_and_the_debugger_shows(hook_source):
    response = post(hook_source, {"items": [], "explode": True})

    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
    assert "ZeroDivisionError" in response.json()["message"]
    assert Event.objects.filter(source=hook_source, status="rejected").exists()


def test_only_post_is_accepted(hook_source):
    assert Client().get(f"/v1/webhooks/{hook_source.write_key}").status_code == 405

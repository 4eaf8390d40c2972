"""NUL characters on every database: PostgreSQL's jsonb refuses \\u0000 and its text columns refuse NUL bytes, where
SQLite stores both, so the fuzz tests (SQLite only) cannot see what these check on PostgreSQL too: every way a NUL
reaches ingest (a \\u0000 escape in the Tracking API's JSON or a webhook's, a raw NUL byte in a body that is then
refused and kept as an excerpt, a NUL a JavaScript source function makes, in its events or in its error) is
answered without a server error and stored as U+FFFD. Not `one_database`: `make test` runs them on both."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from django.test import Client

from deliveries.models import Event
from integrations.models import Function, Source
from tests.conftest import basic_auth

pytestmark = pytest.mark.django_db

WRITE_KEY = "wk_nul_site"
NUL_FUNCTION = """
async function onRequest(request, settings) {
  const body = request.json();
  if (body.fail) throw new Error('bad\\u0000input');
  Segment.track({userId: 'u\\u0000' + body.n, event: 'Made\\u0000', properties: {k: 'v\\u0000', 'k\\u0000': 1},
                 messageId: 'fn\\u0000' + body.n});
}
"""


@pytest.fixture
def sources(db) -> dict[str, Source]:
    Function.objects.create(name="Nul maker", slug="nul-maker", kind="source", code=NUL_FUNCTION)
    return {
        "http": Source.objects.create(name="Site", slug="site", write_key=WRITE_KEY),
        "generic": Source.objects.create(
            name="Any", slug="any", kind="generic", write_key="wk_nul_any", config={"events": "events"}
        ),
        "function": Source.objects.create(
            name="Fn", slug="fn", kind="function", write_key="wk_nul_fn", config={"function": "nul-maker"}
        ),
    }


def track(client: Client, endpoint: str, body: bytes) -> Any:
    return client.post(
        f"/v1/{endpoint}", body, content_type="application/json", HTTP_AUTHORIZATION=basic_auth(WRITE_KEY)
    )


def assert_stored_without_nul() -> None:
    """Every text the requests wrote holds U+FFFD where a NUL was sent, and no NUL."""
    for event in Event.objects.all():
        texts = [event.message_id, event.event, event.user_id, event.anonymous_id, event.email, event.reject_reason]
        texts.append(json.dumps(event.payload, ensure_ascii=False))
        assert not any("\x00" in text or "\\u0000" in text for text in texts), texts
    for source in Source.objects.all():
        assert "\x00" not in (source.last_request_body or "") + (source.last_request_result or "")


def test_u0000_in_a_tracked_event_is_stored_as_u_fffd(client, sources):
    body = b'{"userId": "u\\u0000", "event": "Bought\\u0000", "messageId": "m\\u00001",'
    body += b' "properties": {"note": "a\\u0000b", "\\u0000key": ["\\u0000"]}}'

    response = track(client, "track", body)

    assert response.status_code == 200, response.content
    event = Event.objects.get(status="accepted")
    assert (event.message_id, event.user_id, event.event) == ("m\ufffd1", "u\ufffd", "Bought\ufffd")
    assert event.payload["properties"] == {"note": "a\ufffdb", "\ufffdkey": ["\ufffd"]}
    assert_stored_without_nul()


def test_an_escaped_backslash_before_u0000_is_kept_as_the_text_sent(client, sources):
    response = track(client, "track", b'{"userId": "u", "event": "E", "properties": {"path": "C:\\\\u0000"}}')

    assert response.status_code == 200, response.content
    assert Event.objects.get().payload["properties"] == {"path": "C:\\u0000"}


def test_a_batch_with_nul_in_accepted_and_refused_items_stores_neither_with_nul(client, sources):
    good = {"type": "track", "userId": "u\x00", "event": "E", "messageId": "b1"}
    bad = {"type": "track", "userId": "u", "event": "E", "timestamp": "not\x00a time", "messageId": "b2"}

    response = track(client, "batch", orjson.dumps({"batch": [good, bad]}))

    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == 1
    assert Event.objects.filter(status="rejected").count() == 1
    assert_stored_without_nul()


@pytest.mark.parametrize("endpoint", ["track", "batch"])
def test_a_raw_nul_byte_is_refused_and_its_excerpt_kept_without_it(client, sources, endpoint):
    response = track(client, endpoint, b'{"userId": "u\x00", "event": "E"}')

    assert response.status_code == 400
    rejected = Event.objects.get(status="rejected")
    assert "\ufffd" in rejected.payload["raw"]
    assert_stored_without_nul()


def test_u0000_in_a_webhook_is_stored_as_u_fffd(client, sources):
    body = b'{"events": [{"type": "track", "userId": "u\\u0000", "event": "E\\u0000", "messageId": "w\\u0000",'
    body += b' "properties": {"\\u0000": "\\u0000"}}]}'
    sources["generic"].config = {"events": "events", "mapping": {"type": "type", "userId": "userId",
                                 "event": "event", "messageId": "messageId", "properties": "properties"}}  # fmt: skip
    sources["generic"].save()

    response = client.post("/v1/webhooks/wk_nul_any", body, content_type="application/json")

    assert response.status_code == 200, response.content
    event = Event.objects.get(status="accepted")
    assert (event.user_id, event.message_id, event.payload["properties"]) == (
        "u\ufffd",
        "w\ufffd",
        {"\ufffd": "\ufffd"},
    )
    assert_stored_without_nul()


@pytest.mark.parametrize("key", ["wk_nul_any", "wk_nul_fn"])
def test_a_webhook_body_with_nul_bytes_is_kept_without_them(client, sources, key):
    response = client.post(f"/v1/webhooks/{key}", b"not json \x00\x00", content_type="text/plain")

    assert response.status_code < 500, response.content
    assert_stored_without_nul()
    assert "\ufffd" in Source.objects.get(write_key=key).last_request_body


def test_nul_made_by_a_javascript_source_function_is_stored_as_u_fffd(client, sources):
    made = client.post("/v1/webhooks/wk_nul_fn", b'{"n": 1}', content_type="application/json")
    failed = client.post("/v1/webhooks/wk_nul_fn", b'{"fail": true}', content_type="application/json")

    assert made.status_code == 200, made.content
    event = Event.objects.get(status="accepted")
    assert (event.user_id, event.event, event.message_id) == ("u\ufffd1", "Made\ufffd", "fn\ufffd1")
    assert event.payload["properties"] == {"k": "v\ufffd", "k\ufffd": 1}
    assert failed.status_code == 422
    assert "bad\ufffdinput" in Event.objects.get(status="rejected").reject_reason
    assert_stored_without_nul()

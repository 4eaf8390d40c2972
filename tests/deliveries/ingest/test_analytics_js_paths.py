"""analytics.js 2.0 posts to short paths (`/t`, `/i`, … `/b` when batching) as text/plain, the key in the body."""

from __future__ import annotations

import orjson
import pytest

from deliveries.models import Event

pytestmark = pytest.mark.django_db

WRITE_KEY = "wk_test_website"


def browser_post(client, path: str, body: dict):
    """What analytics-next's fetch dispatcher sends: no Authorization, text/plain to skip the CORS preflight."""
    return client.post(
        f"/v1/{path}", data=orjson.dumps(body), content_type="text/plain", HTTP_ORIGIN="https://shop.example"
    )


@pytest.mark.parametrize(
    ("path", "body", "type_"),
    [
        ("t", {"type": "track", "event": "Product Viewed", "anonymousId": "a-1"}, "track"),
        ("i", {"type": "identify", "userId": "u-1", "traits": {"email": "jane@example.com"}}, "identify"),
        ("p", {"type": "page", "name": "Home", "anonymousId": "a-1"}, "page"),
        ("s", {"type": "screen", "name": "Home", "anonymousId": "a-1"}, "screen"),
        ("g", {"type": "group", "groupId": "g-1", "userId": "u-1"}, "group"),
        ("a", {"type": "alias", "previousId": "a-1", "userId": "u-1"}, "alias"),
    ],
)
def test_each_short_path_stores_its_event_type(client, source, path, body, type_):
    response = browser_post(client, path, {**body, "writeKey": WRITE_KEY, "messageId": f"ajs-{path}"})

    assert response.status_code == 200, response.content
    assert response.json() == {"success": True}
    assert response["Access-Control-Allow-Origin"] in ("*", "https://shop.example")
    event = Event.objects.get(message_id=f"ajs-{path}")
    assert (event.type, event.status) == (type_, Event.Status.ACCEPTED)


def test_the_batching_path_accepts_a_batch_with_the_key_beside_it(client, source):
    batch = [
        {"type": "track", "event": "Added to Cart", "anonymousId": "a-1", "messageId": "ajs-b1"},
        {"type": "page", "name": "Cart", "anonymousId": "a-1", "messageId": "ajs-b2"},
    ]
    response = browser_post(client, "b", {"writeKey": WRITE_KEY, "batch": batch, "sentAt": "2026-11-30T10:00:00Z"})

    assert response.status_code == 200, response.content
    assert sorted(Event.objects.values_list("message_id", "type")) == [("ajs-b1", "track"), ("ajs-b2", "page")]


def test_a_short_path_refuses_a_wrong_key_like_the_long_one(client, source):
    response = browser_post(client, "t", {"type": "track", "event": "X", "userId": "u", "writeKey": "wk_nope"})

    assert response.status_code == 401
    assert response.json()["success"] is False
    assert not Event.objects.filter(status=Event.Status.ACCEPTED).exists()


def test_a_short_path_answers_the_cors_preflight(client, source):
    response = client.options("/v1/t", HTTP_ORIGIN="https://shop.example", HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST")

    assert response.status_code in (200, 204)
    assert "POST" in response["Access-Control-Allow-Methods"]

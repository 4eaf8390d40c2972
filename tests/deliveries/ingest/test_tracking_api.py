"""The Tracking API over HTTP: auth, limits, validation, bad input, dedupe, batches and CORS."""

from __future__ import annotations

import gzip
import uuid
from typing import Any
from unittest.mock import ANY, patch

import orjson
import pytest

from deliveries.models import Event
from integrations.models import Source
from tests.conftest import basic_auth

pytestmark = pytest.mark.django_db

WRITE_KEY = "wk_test_website"
SINGLE_ENDPOINTS = ("identify", "track", "page", "screen", "group", "alias")
BATCH_ENDPOINTS = ("batch", "import")
OK = {"success": True}


def post(
    client,
    endpoint: str,
    body: Any,
    *,
    key: str | None = WRITE_KEY,
    content_type: str = "application/json",
    **extra: Any,
):
    """POST a body (a dict/list is sent as JSON, bytes and str as they are) to /v1/<endpoint>."""
    data = body if isinstance(body, bytes | str) else orjson.dumps(body)
    if key is not None:
        extra.setdefault("HTTP_AUTHORIZATION", basic_auth(key))
    return client.post(f"/v1/{endpoint}", data=data, content_type=content_type, **extra)


def error(code: str, message: str) -> dict[str, Any]:
    return {"success": False, "code": code, "message": message}


def accepted() -> list[Event]:
    return list(Event.objects.filter(status=Event.Status.ACCEPTED).order_by("id"))


def rejected() -> list[Event]:
    return list(Event.objects.filter(status=Event.Status.REJECTED).order_by("id"))


def track(message_id: str | None = None, **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "track", "userId": "user-42", "event": "Order Completed", **fields}
    if message_id is not None:
        event["messageId"] = message_id
    return event


def one_of_each_type() -> list[dict[str, Any]]:
    return [
        {"type": "identify", "userId": "u1", "traits": {"email": "ada@example.com"}, "messageId": "m-identify"},
        {"type": "track", "userId": "u1", "event": "Signed Up", "messageId": "m-track"},
        {"type": "page", "anonymousId": "a1", "name": "Home", "messageId": "m-page"},
        {"type": "screen", "anonymousId": "a1", "name": "Settings", "messageId": "m-screen"},
        {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"plan": "pro"}, "messageId": "m-group"},
        {"type": "alias", "previousId": "a1", "userId": "u1", "messageId": "m-alias"},
    ]


# --- auth -------------------------------------------------------------------------------------------


def test_it_accepts_basic_auth_with_the_write_key_and_a_trailing_colon(client, source):
    response = post(client, "track", track("m1"), HTTP_AUTHORIZATION=basic_auth(WRITE_KEY, colon=True))

    assert response.status_code == 200
    assert response.json() == OK
    assert [(e.source, e.message_id) for e in accepted()] == [(source, "m1")]


def test_it_accepts_basic_auth_without_the_trailing_colon(client, source):
    response = post(client, "track", track("m1"), HTTP_AUTHORIZATION=basic_auth(WRITE_KEY, colon=False))

    assert response.status_code == 200
    assert response.json() == OK
    assert [(e.source, e.message_id) for e in accepted()] == [(source, "m1")]


def test_it_ignores_a_password_given_with_the_write_key(client, source):
    response = post(client, "track", track("m1"), HTTP_AUTHORIZATION=basic_auth(f"{WRITE_KEY}:anything", colon=False))

    assert response.status_code == 200
    assert len(accepted()) == 1


def test_it_accepts_the_write_key_in_the_json_body(client, source):
    response = post(client, "track", {**track("m1"), "writeKey": WRITE_KEY}, key=None)

    assert response.status_code == 200
    assert response.json() == OK
    assert [(e.source, e.message_id) for e in accepted()] == [(source, "m1")]


def test_it_accepts_the_write_key_in_the_body_of_a_batch(client, source):
    response = post(client, "batch", {"batch": [track("m1"), track("m2")], "writeKey": WRITE_KEY}, key=None)

    assert response.status_code == 200
    assert response.json() == OK
    assert [e.message_id for e in accepted()] == ["m1", "m2"]


def test_it_accepts_basic_auth_and_the_same_key_in_the_body_as_analytics_python_sends(client, source):
    response = post(client, "track", {**track("m1"), "writeKey": WRITE_KEY})

    assert response.status_code == 200
    assert len(accepted()) == 1


def test_it_refuses_an_unknown_write_key_in_the_header_with_a_json_401(client, source):
    response = post(client, "track", track("m1"), key="wk_nobody")

    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response.json() == error("invalid_write_key", "Unknown write key.")
    assert Event.objects.count() == 0


def test_it_refuses_an_unknown_write_key_in_the_body_with_a_json_401(client, source):
    response = post(client, "track", {**track("m1"), "writeKey": "wk_nobody"}, key=None)

    assert response.status_code == 401
    assert response.json() == error("invalid_write_key", "Unknown write key.")
    assert Event.objects.count() == 0


def test_it_refuses_an_unknown_header_key_even_when_the_body_holds_a_good_one(client, source):
    response = post(client, "track", {**track("m1"), "writeKey": WRITE_KEY}, key="wk_nobody")

    assert response.status_code == 401
    assert response.json() == error("invalid_write_key", "Unknown write key.")
    assert Event.objects.count() == 0


@pytest.mark.parametrize("in_body", [False, True], ids=["header", "body"])
def test_it_refuses_a_disabled_source_with_a_json_401(client, source, in_body):
    Source.objects.filter(pk=source.pk).update(enabled=False)
    body = {**track("m1"), "writeKey": WRITE_KEY} if in_body else track("m1")

    response = post(client, "track", body, key=None if in_body else WRITE_KEY)

    assert response.status_code == 401
    assert response.json() == error("source_disabled", "The source with this write key is disabled.")
    assert Event.objects.count() == 0


@pytest.mark.parametrize("endpoint", ["track", "batch"])
def test_it_refuses_a_request_without_a_write_key(client, source, endpoint):
    body = {"batch": [track("m1")]} if endpoint == "batch" else track("m1")

    response = post(client, endpoint, body, key=None)

    assert response.status_code == 401
    assert response.json() == error(
        "missing_write_key", "No write key: send it as the Basic auth username or as writeKey in the body."
    )
    assert Event.objects.count() == 0


def test_it_refuses_a_write_key_in_the_body_that_is_not_a_string(client, source):
    response = post(client, "track", {**track("m1"), "writeKey": {"key": WRITE_KEY}}, key=None)

    assert response.status_code == 401
    assert response.json()["code"] == "missing_write_key"


def test_it_refuses_basic_auth_with_an_empty_username(client, source):
    response = post(client, "track", track("m1"), HTTP_AUTHORIZATION=basic_auth(""))

    assert response.status_code == 401
    assert response.json()["code"] == "missing_write_key"


SCHEME_MESSAGE = "Use HTTP Basic auth with the write key as the username, or writeKey in the body."
DECODE_MESSAGE = "The Authorization header is not valid Basic auth."


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (f"Bearer {WRITE_KEY}", SCHEME_MESSAGE),
        ("Basic", SCHEME_MESSAGE),
        ("Basic    ", SCHEME_MESSAGE),
        (WRITE_KEY, SCHEME_MESSAGE),
        ("Basic not*base64!", DECODE_MESSAGE),
        ("Basic d2tfdGVzdF93ZWJzaXRlOg", DECODE_MESSAGE),  # padding cut off
        ("Basic //79", DECODE_MESSAGE),  # base64 of bytes that are not UTF-8
    ],
    ids=["bearer", "basic-alone", "basic-blank", "no-scheme", "not-base64", "bad-padding", "not-utf8"],
)
def test_it_refuses_a_malformed_authorization_header_with_a_json_401(client, source, header, message):
    response = post(client, "track", {**track("m1"), "writeKey": WRITE_KEY}, HTTP_AUTHORIZATION=header)

    assert response.status_code == 401
    assert response.json() == error("invalid_auth", message)
    assert Event.objects.count() == 0


# --- limits -----------------------------------------------------------------------------------------


def padded_track(size: int, message_id: str = "m-big") -> bytes:
    """A track event serialised to exactly `size` bytes."""
    body = track(message_id, properties={"pad": ""})
    room = size - len(orjson.dumps(body))
    body["properties"]["pad"] = "x" * room
    raw = orjson.dumps(body)
    assert len(raw) == size
    return raw


def test_it_accepts_a_single_event_of_exactly_32_kb(client, source):
    response = post(client, "track", padded_track(32 * 1024))

    assert response.status_code == 200
    assert [e.message_id for e in accepted()] == ["m-big"]


def test_it_refuses_a_single_event_over_32_kb_with_a_json_413_naming_the_limit(client, source):
    response = post(client, "track", padded_track(32 * 1024 + 1))

    assert response.status_code == 413
    assert response.json() == error("payload_too_large", "The event is over the 32 KB limit for a single event.")
    assert accepted() == []
    [row] = rejected()
    assert row.reject_reason == "payload_too_large: The event is over the 32 KB limit for a single event."
    assert row.type == Event.Type.INVALID


def test_it_refuses_a_batch_over_500_kb_with_a_json_413_naming_the_limit(client, source):
    items = [track(f"m{i}", properties={"pad": "x" * 10_000}) for i in range(52)]
    body = orjson.dumps({"batch": items})
    assert len(body) > 500 * 1024

    response = post(client, "batch", body)

    assert response.status_code == 413
    assert response.json() == error("payload_too_large", "The request is over the 500 KB limit for a batch.")
    assert accepted() == []
    assert [r.reject_reason for r in rejected()] == [
        "payload_too_large: The request is over the 500 KB limit for a batch."
    ]


def test_it_refuses_a_batch_of_2501_events_naming_the_2500_limit(client, source):
    items = [{"type": "track", "userId": "u", "event": "E", "messageId": f"m{i}"} for i in range(2501)]

    response = post(client, "batch", {"batch": items})

    assert response.status_code == 400
    assert response.json() == error("too_many_events", "A batch holds at most 2500 events; this one has 2501.")
    assert accepted() == []
    assert [r.reject_reason for r in rejected()] == [
        "too_many_events: A batch holds at most 2500 events; this one has 2501."
    ]


def test_it_accepts_a_batch_of_exactly_2500_events(client, source):
    items = [{"type": "track", "userId": "u", "event": "E", "messageId": f"m{i}"} for i in range(2500)]

    response = post(client, "batch", {"batch": items})

    assert response.status_code == 200
    assert response.json() == OK
    assert Event.objects.filter(status=Event.Status.ACCEPTED).count() == 2500
    assert rejected() == []


def test_it_rejects_an_item_over_32_kb_inside_a_batch_alone_and_accepts_the_others(client, source):
    big = track("m-big", properties={"pad": "x" * (32 * 1024)})
    batch = [track("m-before"), big, track("m-after")]

    response = post(client, "batch", {"batch": batch})

    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "accepted": 2,
        "rejected": [
            {
                "index": 1,
                "messageId": "m-big",
                "code": "event_too_large",
                "reason": "The event is over the 32 KB limit for one event.",
            }
        ],
    }
    assert [e.message_id for e in accepted()] == ["m-before", "m-after"]
    [row] = rejected()
    assert row.message_id == "m-big"
    assert row.reject_reason == "event_too_large: The event is over the 32 KB limit for one event."
    # The Debugger keeps an excerpt of an oversized item, not all of it.
    assert row.payload["truncated"] is True
    assert len(row.payload["raw"]) == 2048


# --- validation per type ----------------------------------------------------------------------------

NO_IDENTITY = ("missing_identity", "Every event needs a userId or an anonymousId.")

VALIDATION_CASES = [
    ("identify", {"traits": {"email": "a@example.com"}}, *NO_IDENTITY),
    ("track", {"event": "Signed Up"}, *NO_IDENTITY),
    ("page", {"name": "Home"}, *NO_IDENTITY),
    ("screen", {"name": "Home"}, *NO_IDENTITY),
    ("group", {"groupId": "g1"}, *NO_IDENTITY),
    ("track", {"event": "Signed Up", "userId": "", "anonymousId": None}, *NO_IDENTITY),
    ("track", {"userId": "u1"}, "missing_field", "A track call needs an event name (the event field)."),
    ("track", {"userId": "u1", "event": ""}, "missing_field", "A track call needs an event name (the event field)."),
    ("track", {"userId": "u1", "event": "  "}, "missing_field", "A track call needs an event name (the event field)."),
    ("group", {"userId": "u1"}, "missing_field", "A group call needs a groupId."),
    ("group", {"userId": "u1", "groupId": ""}, "missing_field", "A group call needs a groupId."),
    ("alias", {"userId": "u1"}, "missing_field", "An alias needs both previousId and userId."),
    ("alias", {"previousId": "a1", "anonymousId": "a1"}, "missing_field", "An alias needs both previousId and userId."),
    ("alias", {}, "missing_field", "An alias needs both previousId and userId."),
    ("identify", {"userId": {"id": 1}}, "invalid_type", "userId must be a string, not an object."),
    ("track", {"userId": True, "event": "E"}, "invalid_type", "userId must be a string, not a boolean."),
    ("page", {"anonymousId": ["a1"]}, "invalid_type", "anonymousId must be a string, not a list."),
    ("group", {"userId": "u1", "groupId": {"id": "g1"}}, "invalid_type", "groupId must be a string, not an object."),
    ("alias", {"userId": "u1", "previousId": ["a1"]}, "invalid_type", "previousId must be a string, not a list."),
    (
        "track",
        {"userId": "u1", "event": "E", "properties": [1, 2]},
        "invalid_type",
        "properties must be an object, not a list.",
    ),
    ("page", {"userId": "u1", "properties": "x"}, "invalid_type", "properties must be an object, not a string."),
    ("screen", {"userId": "u1", "properties": []}, "invalid_type", "properties must be an object, not a list."),
    ("identify", {"userId": "u1", "traits": ["a"]}, "invalid_type", "traits must be an object, not a list."),
    ("group", {"userId": "u1", "groupId": "g1", "traits": []}, "invalid_type", "traits must be an object, not a list."),
    ("identify", {"userId": "u1", "context": "web"}, "invalid_type", "context must be an object, not a string."),
    (
        "track",
        {"userId": "u1", "event": "E", "integrations": ["All"]},
        "invalid_type",
        "integrations must be an object, not a list.",
    ),
    (
        "track",
        {"userId": "u1", "event": "E", "messageId": 42},
        "invalid_type",
        "messageId must be a string, not a number.",
    ),
    ("track", {"userId": "u1", "event": 42}, "invalid_type", "event must be a string, not a number."),
    ("track", {"userId": "u1", "event": {"name": "E"}}, "invalid_type", "event must be a string, not an object."),
    ("page", {"userId": "u1", "name": {"n": 1}}, "invalid_type", "name must be a string, not an object."),
    ("screen", {"userId": "u1", "category": 3}, "invalid_type", "category must be a string, not a number."),
    ("identify", {"userId": "u" * 256}, "invalid_value", "userId is longer than 255 characters."),
    (
        "track",
        {"userId": "u1", "event": "E", "messageId": "m" * 256},
        "invalid_value",
        "messageId is longer than 255 characters.",
    ),
    (
        "track",
        {"userId": "u1", "event": "E", "timestamp": "yesterday"},
        "invalid_timestamp",
        "timestamp is not an ISO-8601 date-time: 'yesterday'.",
    ),
    (
        "identify",
        {"userId": "u1", "originalTimestamp": "2024-13-45T10:00:00Z"},
        "invalid_timestamp",
        "originalTimestamp is not an ISO-8601 date-time: '2024-13-45T10:00:00Z'.",
    ),
    (
        "identify",
        {"userId": "u1", "originalTimestamp": 1714557600000},
        "invalid_timestamp",
        "originalTimestamp must be an ISO-8601 date-time string, not a number.",
    ),
    (
        "page",
        {"userId": "u1", "timestamp": "2024-05-01T10:00:00Z", "sentAt": "soon"},
        "invalid_timestamp",
        "sentAt is not an ISO-8601 date-time: 'soon'.",
    ),
    (
        "page",
        {"userId": "u1", "sentAt": ["2024-05-01T10:00:00Z"]},
        "invalid_timestamp",
        "sentAt must be an ISO-8601 date-time string, not a list.",
    ),
    (
        "track",
        {"userId": "u1", "event": "E", "timestamp": "", "sentAt": "2024-05-01T10:00:00Z"},
        "invalid_timestamp",
        "timestamp is not an ISO-8601 date-time: ''.",
    ),
    (
        "track",
        {"userId": "u1", "event": "E", "timestamp": "0001-01-01T00:00:00Z", "sentAt": "9999-12-31T00:00:00Z"},
        "invalid_timestamp",
        "timestamp, sentAt and originalTimestamp are too far apart.",
    ),
    (
        "track",
        {"userId": "u1", "event": "E", "timestamp": "0001-01-01T00:00:00+05:00"},
        "invalid_timestamp",
        "timestamp, sentAt and originalTimestamp are too far apart.",
    ),
    (
        "track",
        {"userId": "u1", "event": "E", "timestamp": "0001-01-01T00:00:00+05:00", "sentAt": "0001-01-01T00:00:01+05:00"},
        "invalid_timestamp",
        "timestamp, sentAt and originalTimestamp are too far apart.",
    ),
    (
        "track",
        {"userId": "u1", "event": "E", "timestamp": "2024-05-01T10:00:00Z", "sentAt": "9999-12-31T23:59:59-05:00"},
        "invalid_timestamp",
        "timestamp, sentAt and originalTimestamp are too far apart.",
    ),
]


@pytest.mark.parametrize(("endpoint", "body", "code", "message"), VALIDATION_CASES)
def test_it_refuses_an_invalid_single_event_with_a_400_and_records_the_rejection(
    client, source, endpoint, body, code, message
):
    response = post(client, endpoint, body)

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json() == error(code, message)
    assert accepted() == []
    [row] = rejected()
    assert row.source == source
    assert row.reject_reason == f"{code}: {message}"
    assert row.type == endpoint
    assert row.payload == {**body, "type": endpoint}


def test_it_records_a_rejected_event_under_its_endpoints_type_with_what_the_debugger_shows(client, source):
    body = {"userId": "u1", "anonymousId": "a1", "event": "Signed Up", "messageId": "m-bad", "properties": []}

    post(client, "track", body)

    [row] = rejected()
    assert (row.message_id, row.type, row.event, row.user_id, row.anonymous_id) == (
        "m-bad",
        "track",
        "Signed Up",
        "u1",
        "a1",
    )
    assert row.payload == {**body, "type": "track"}
    assert row.received_at == row.timestamp


def test_it_refuses_a_track_without_an_event_name(client, source):
    response = post(client, "track", {"userId": "u1", "messageId": "m1"})

    assert response.status_code == 400
    assert response.json() == error("missing_field", "A track call needs an event name (the event field).")
    assert accepted() == []
    assert [(r.message_id, r.reject_reason) for r in rejected()] == [
        ("m1", "missing_field: A track call needs an event name (the event field).")
    ]


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("identify", {"anonymousId": "a1"}),
        ("track", {"userId": "u1", "event": "E"}),
        ("page", {"userId": "u1"}),
        ("screen", {"anonymousId": "a1", "name": "Home"}),
        ("group", {"userId": "u1", "groupId": "g1"}),
        ("alias", {"previousId": "a1", "userId": "u1"}),
        ("identify", {"userId": 42}),
        ("group", {"userId": "u1", "groupId": 7}),
        ("track", {"userId": "u1", "anonymousId": "a1", "event": "E", "properties": None, "context": None}),
    ],
)
def test_it_accepts_a_minimal_valid_event_of_each_type(client, source, endpoint, body):
    response = post(client, endpoint, body)

    assert response.status_code == 200
    assert response.json() == OK
    [row] = accepted()
    assert row.type == endpoint
    assert rejected() == []


# --- bad input --------------------------------------------------------------------------------------


def nested(levels: int) -> bytes:
    return b'{"userId":"u1","event":"E","properties":{"deep":' + b"[" * levels + b"]" * levels + b"}}"


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (b"", "invalid_json", "The body is empty; send a JSON object."),
        (b"  \n ", "invalid_json", "The body is empty; send a JSON object."),
        (b"[]", "invalid_json", "The body must be a JSON object."),
        (b'[{"type": "track", "userId": "u1", "event": "E"}]', "invalid_json", "The body must be a JSON object."),
        (b'"track"', "invalid_json", "The body must be a JSON object."),
        (b"42", "invalid_json", "The body must be a JSON object."),
        (b"null", "invalid_json", "The body must be a JSON object."),
        (nested(200), "too_deep", "The JSON is nested more than 64 levels deep."),
    ],
    ids=["empty", "blank", "empty-list", "list", "string", "number", "null", "200-levels"],
)
@pytest.mark.parametrize("endpoint", ["track", "batch"])
def test_it_refuses_a_body_that_is_not_a_usable_json_object_with_a_json_400(
    client, source, endpoint, body, code, message
):
    response = post(client, endpoint, body)

    assert response.status_code == 400
    assert response.json() == error(code, message)
    assert accepted() == []
    assert [r.reject_reason for r in rejected()] == [f"{code}: {message}"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"userId": "u1", "event": ',
        b"{'userId': 'u1'}",
        b'{"userId": "u1",}',
        b'{"userId": "u1", "n": NaN}',
        b'{"userId": "u1", "n": 1e400}',
        b'{"userId": "\\ud800"}',
        b'{"userId": "\xff\xfe"}',
        b'{"a": 1} trailing',
        nested(2_000),
    ],
    ids=[
        "truncated",
        "single-quotes",
        "trailing-comma",
        "nan",
        "infinity",
        "lone-surrogate",
        "not-utf8",
        "trailing-text",
        "too-deep-for-the-parser",
    ],
)
def test_it_refuses_invalid_json_with_a_json_400(client, source, body):
    response = post(client, "track", body)

    assert response.status_code == 400
    answer = response.json()
    assert answer["success"] is False
    assert answer["code"] == "invalid_json"
    assert answer["message"].startswith("The body is not valid JSON: ")
    assert accepted() == []
    [row] = rejected()
    assert row.reject_reason.startswith("invalid_json: The body is not valid JSON: ")
    assert row.type == Event.Type.INVALID
    assert row.payload["truncated"] is (len(body) > 2048)


def test_it_keeps_the_start_of_an_unreadable_body_for_the_debugger(client, source):
    post(client, "track", b'{"userId": "u1", "event": ')

    [row] = rejected()
    assert row.payload == {"raw": '{"userId": "u1", "event": ', "truncated": False}


def test_it_refuses_deep_nesting_without_a_header_key_and_records_nothing(client, source):
    body = b'{"writeKey": "wk_test_website", "p": ' + b"[" * 200 + b"]" * 200 + b"}"

    response = post(client, "track", body, key=None)

    assert response.status_code == 400
    assert response.json() == error("too_deep", "The JSON is nested more than 64 levels deep.")
    assert Event.objects.count() == 0


def test_it_accepts_nesting_of_exactly_64_levels(client, source):
    # The object itself is level 1, properties level 2, the lists the other 62.
    body = b'{"userId":"u1","event":"E","properties":{"deep":' + b"[" * 62 + b"]" * 62 + b"}}"

    response = post(client, "track", body)

    assert response.status_code == 200
    assert len(accepted()) == 1


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-www-form-urlencoded", "userId=u1&event=E"),
        ("multipart/form-data; boundary=xyz", "--xyz--"),
        ("application/xml", "<track/>"),
    ],
)
def test_it_refuses_a_body_that_is_not_json_with_415(client, source, content_type, body):
    response = post(client, "track", body, content_type=content_type)

    assert response.status_code == 415
    assert response.json() == error(
        "unsupported_media_type", "Send the body as JSON with Content-Type: application/json."
    )
    assert Event.objects.count() == 0


@pytest.mark.parametrize("content_type", ["text/plain", "text/plain;charset=UTF-8", "application/json; charset=utf-8"])
def test_it_accepts_json_sent_as_text_plain_or_with_a_charset(client, source, content_type):
    response = post(client, "track", track("m1"), content_type=content_type)

    assert response.status_code == 200
    assert response.json() == OK
    assert len(accepted()) == 1


@pytest.mark.parametrize("endpoint", ["track", "batch"])
def test_it_accepts_a_gzipped_body(client, source, endpoint):
    body = {"batch": [track("m1"), track("m2")]} if endpoint == "batch" else track("m1")

    response = post(client, endpoint, gzip.compress(orjson.dumps(body)), HTTP_CONTENT_ENCODING="gzip")

    assert response.status_code == 200
    assert response.json() == OK
    assert len(accepted()) == (2 if endpoint == "batch" else 1)


def test_it_refuses_a_body_that_is_not_gzip_with_a_json_400(client, source):
    response = post(client, "track", orjson.dumps(track("m1")), HTTP_CONTENT_ENCODING="gzip")

    assert response.status_code == 400
    assert response.json() == error("invalid_gzip", "The body is not valid gzip.")
    assert accepted() == []


def test_it_refuses_a_truncated_gzip_body_with_a_json_400(client, source):
    compressed = gzip.compress(orjson.dumps(track("m1", properties={"text": "lorem ipsum " * 50})))

    response = post(client, "track", compressed[: len(compressed) // 2], HTTP_CONTENT_ENCODING="gzip")

    assert response.status_code == 400
    assert response.json() == error("invalid_gzip", "The gzip body is truncated.")
    assert accepted() == []


def test_it_refuses_a_gzip_bomb_that_inflates_past_500_kb_with_413(client, source):
    inflated = b'{"batch": [], "pad": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    bomb = gzip.compress(inflated)
    assert len(bomb) < 20 * 1024

    response = post(client, "batch", bomb, HTTP_CONTENT_ENCODING="gzip")

    assert response.status_code == 413
    assert response.json() == error(
        "payload_too_large", "The request is over the 500 KB limit for a batch. (after gzip decompression)"
    )
    assert accepted() == []


@pytest.mark.parametrize("padding", [0, 600])
def test_it_reads_every_member_of_a_gzip_body_and_holds_the_limit_over_them_all(client, source, padding):
    """Concatenated gzip members are one body (RFC 1952): only the first was read, the events of the others
    dropped unsaid. With 600 members of 1 KB of spaces after the events, the whole inflates past 500 KB."""
    body = orjson.dumps({"batch": [track(f"m{n}") for n in range(4)]})
    packed = gzip.compress(body[:50]) + gzip.compress(body[50:]) + gzip.compress(b" " * 1024) * padding

    response = post(client, "batch", packed, HTTP_CONTENT_ENCODING="gzip")

    if padding:
        assert response.status_code == 413
        assert not accepted()
    else:
        assert response.status_code == 200, response.content
        assert [e.message_id for e in accepted()] == ["m0", "m1", "m2", "m3"]


def test_it_refuses_a_gzipped_single_event_that_inflates_past_32_kb_with_413(client, source):
    response = post(client, "track", gzip.compress(padded_track(32 * 1024 + 1)), HTTP_CONTENT_ENCODING="gzip")

    assert response.status_code == 413
    assert response.json() == error(
        "payload_too_large", "The event is over the 32 KB limit for a single event. (after gzip decompression)"
    )


def test_it_refuses_an_unsupported_content_encoding_with_415(client, source):
    response = post(client, "track", track("m1"), HTTP_CONTENT_ENCODING="br")

    assert response.status_code == 415
    assert response.json() == error("unsupported_encoding", "Content-Encoding must be gzip or absent.")


# --- dedupe -----------------------------------------------------------------------------------------


def test_it_stores_the_same_message_id_once_per_source_and_answers_200_both_times(client, source):
    first = post(client, "track", track("m1", properties={"n": 1}))
    second = post(client, "track", track("m1", properties={"n": 2}))

    assert first.status_code == 200
    assert first.json() == OK
    assert second.status_code == 200
    assert second.json() == {"success": True, "duplicate": True}
    [row] = accepted()
    assert row.payload["properties"] == {"n": 1}
    assert rejected() == []


def test_it_dedupes_on_message_id_across_types_and_endpoints(client, source):
    post(client, "identify", {"userId": "u1", "messageId": "m1"})

    response = post(client, "batch", {"batch": [track("m1")]})

    assert response.json() == {"success": True, "duplicates": 1}
    assert [e.type for e in accepted()] == ["identify"]


def test_it_stores_the_same_message_id_in_two_sources_twice(client, source):
    other = Source.objects.create(name="App", slug="app", write_key="wk_test_app")

    post(client, "track", track("m1"))
    response = post(client, "track", track("m1"), key="wk_test_app")

    assert response.json() == OK
    assert sorted((e.source.slug, e.message_id) for e in accepted()) == [("app", "m1"), ("website", "m1")]
    assert Event.objects.get(source=other).message_id == "m1"


def test_it_stores_a_message_id_repeated_inside_one_batch_once(client, source):
    batch = [track("m1", properties={"n": 1}), track("m2"), track("m1", properties={"n": 2})]

    response = post(client, "batch", {"batch": batch})

    assert response.status_code == 200
    assert response.json() == {"success": True, "duplicates": 1}
    assert [(e.message_id, e.payload["properties"]) for e in accepted()] == [("m1", {"n": 1}), ("m2", {})]


def test_it_skips_batch_items_already_stored_and_stores_the_rest(client, source):
    post(client, "track", track("m1"))

    response = post(client, "batch", {"batch": [track("m1"), track("m2"), track("m3")]})

    assert response.json() == {"success": True, "duplicates": 1}
    assert [e.message_id for e in accepted()] == ["m1", "m2", "m3"]


def test_it_answers_a_batch_of_only_duplicates_with_200(client, source):
    post(client, "batch", {"batch": [track("m1"), track("m2")]})

    response = post(client, "batch", {"batch": [track("m1"), track("m2")]})

    assert response.status_code == 200
    assert response.json() == {"success": True, "duplicates": 2}
    assert len(accepted()) == 2


def test_a_rejected_events_message_id_does_not_block_a_later_valid_event(client, source):
    refused = post(client, "track", {"userId": "u1", "messageId": "m1"})
    retried = post(client, "track", track("m1"))
    again = post(client, "track", track("m1"))

    assert refused.status_code == 400
    assert retried.json() == OK
    assert again.json() == {"success": True, "duplicate": True}
    assert [e.message_id for e in accepted()] == ["m1"]
    assert [e.message_id for e in rejected()] == ["m1"]


def test_a_rejected_batch_item_does_not_block_a_valid_item_with_the_same_message_id(client, source):
    response = post(client, "batch", {"batch": [{"type": "track", "userId": "u1", "messageId": "m1"}, track("m1")]})

    assert response.status_code == 200
    assert response.json()["accepted"] == 1
    assert [e.message_id for e in accepted()] == ["m1"]
    assert [e.message_id for e in rejected()] == ["m1"]


def test_a_batch_that_races_another_request_on_a_message_id_is_answered_not_refused(client, source):
    # Simulate a concurrent request committing "m1" between this batch's check and its insert (PostgreSQL).
    post(client, "track", track("m1"))
    real_filter = Event.objects.filter
    calls: list[int] = []

    def racing_filter(*args: Any, **kwargs: Any):
        calls.append(1)
        queryset = real_filter(*args, **kwargs)
        return queryset.none() if len(calls) == 1 else queryset

    with patch.object(Event.objects, "filter", side_effect=racing_filter):
        response = post(client, "batch", {"batch": [track("m1"), track("m2")]})

    assert response.status_code == 200
    assert response.json() == {"success": True, "duplicates": 1}
    assert [e.message_id for e in accepted()] == ["m1", "m2"]


# --- batches ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", BATCH_ENDPOINTS)
def test_it_accepts_the_valid_items_of_a_batch_and_lists_the_rejected_ones(client, source, endpoint):
    batch = [
        track("m-ok"),
        {"type": "track", "userId": "u1", "messageId": "m-no-event"},
        {"type": "identify", "traits": {}, "messageId": "m-no-identity"},
        "not an event",
        {"userId": "u1", "event": "E", "messageId": "m-no-type"},
        {"type": "purchase", "userId": "u1", "messageId": "m-bad-type"},
        {"type": "page", "anonymousId": "a1", "messageId": "m-page"},
    ]

    response = post(client, endpoint, {"batch": batch})

    assert response.status_code == 200
    body = response.json()
    assert body == {
        "success": True,
        "accepted": 2,
        "rejected": [
            {
                "index": 1,
                "messageId": "m-no-event",
                "code": "missing_field",
                "reason": "A track call needs an event name (the event field).",
            },
            {
                "index": 2,
                "messageId": "m-no-identity",
                "code": "missing_identity",
                "reason": "Every event needs a userId or an anonymousId.",
            },
            {
                "index": 3,
                "messageId": ANY,
                "code": "invalid_event",
                "reason": "An event must be a JSON object, not a string.",
            },
            {
                "index": 4,
                "messageId": "m-no-type",
                "code": "invalid_type",
                "reason": "Every event in a batch needs a type (identify, track, page, screen, group or alias).",
            },
            {
                "index": 5,
                "messageId": "m-bad-type",
                "code": "invalid_type",
                "reason": "type must be one of identify, track, page, screen, group, alias; got 'purchase'.",
            },
        ],
    }
    assert uuid.UUID(body["rejected"][2]["messageId"])
    assert [(e.type, e.message_id) for e in accepted()] == [("track", "m-ok"), ("page", "m-page")]
    assert [(e.message_id, e.reject_reason) for e in rejected()] == [
        (r["messageId"], f"{r['code']}: {r['reason']}") for r in body["rejected"]
    ]
    assert [e.type for e in rejected()] == ["track", "identify", "invalid", "invalid", "invalid"]
    assert rejected()[2].payload == {"raw": "not an event", "truncated": False}


@pytest.mark.parametrize("endpoint", BATCH_ENDPOINTS)
def test_it_refuses_a_batch_whose_items_are_all_rejected_with_400(client, source, endpoint):
    batch = [{"type": "track", "userId": "u1", "messageId": "m1"}, {"type": "alias", "userId": "u1", "messageId": "m2"}]

    response = post(client, endpoint, {"batch": batch})

    assert response.status_code == 400
    assert response.json() == {
        "success": False,
        "accepted": 0,
        "rejected": [
            {
                "index": 0,
                "messageId": "m1",
                "code": "missing_field",
                "reason": "A track call needs an event name (the event field).",
            },
            {
                "index": 1,
                "messageId": "m2",
                "code": "missing_field",
                "reason": "An alias needs both previousId and userId.",
            },
        ],
        "code": "invalid_batch",
        "message": "All 2 events in the batch were rejected.",
    }
    assert accepted() == []
    assert [e.message_id for e in rejected()] == ["m1", "m2"]


@pytest.mark.parametrize("endpoint", BATCH_ENDPOINTS)
def test_it_accepts_every_event_type_in_a_batch(client, source, endpoint):
    response = post(client, endpoint, {"batch": one_of_each_type()})

    assert response.status_code == 200
    assert response.json() == OK
    assert [(e.type, e.message_id) for e in accepted()] == [(t, f"m-{t}") for t in SINGLE_ENDPOINTS]


def test_it_answers_an_empty_batch_with_success(client, source):
    response = post(client, "batch", {"batch": []})

    assert response.status_code == 200
    assert response.json() == OK
    assert Event.objects.count() == 0


@pytest.mark.parametrize(
    "body",
    [{}, {"batch": None}, {"batch": {"type": "track"}}, {"batch": "[]"}],
    ids=["missing", "null", "object", "string"],
)
def test_it_refuses_a_batch_that_is_not_a_list(client, source, body):
    response = post(client, "batch", body)

    assert response.status_code == 400
    assert response.json() == error("invalid_batch", "batch must be a list of events.")
    assert [r.reject_reason for r in rejected()] == ["invalid_batch: batch must be a list of events."]


@pytest.mark.parametrize("field", ["context", "integrations"])
def test_it_refuses_a_batch_whose_shared_context_or_integrations_is_not_an_object(client, source, field):
    response = post(client, "batch", {"batch": [track("m1")], field: "web"})

    assert response.status_code == 400
    assert response.json() == error("invalid_type", "The batch's context and integrations must be objects.")
    assert accepted() == []


def test_it_uses_each_items_type_in_a_batch_not_the_endpoint(client, source):
    post(client, "import", {"batch": [{"type": "identify", "userId": "u1", "messageId": "m1"}]})

    assert [(e.type, e.payload["type"]) for e in accepted()] == [("identify", "identify")]


def test_it_uses_the_endpoint_as_the_type_of_a_single_event(client, source):
    post(client, "identify", {"type": "track", "userId": "u1", "messageId": "m1"})

    [row] = accepted()
    assert (row.type, row.payload["type"]) == ("identify", "identify")


@pytest.mark.parametrize("endpoint", [*SINGLE_ENDPOINTS, *BATCH_ENDPOINTS])
def test_it_answers_with_a_trailing_slash_too(client, source, endpoint):
    body = (
        {"batch": [track("m1")]}
        if endpoint in BATCH_ENDPOINTS
        else one_of_each_type()[SINGLE_ENDPOINTS.index(endpoint)]
    )

    response = client.post(
        f"/v1/{endpoint}/",
        data=orjson.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=basic_auth(WRITE_KEY),
    )

    assert response.status_code == 200
    assert response.json() == OK


# --- CORS -------------------------------------------------------------------------------------------

ORIGIN = "https://shop.example.com"


@pytest.mark.parametrize("endpoint", ["track", "batch", "import"])
def test_it_answers_a_cors_preflight_with_204(client, endpoint):
    response = client.options(
        f"/v1/{endpoint}",
        HTTP_ORIGIN=ORIGIN,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type, authorization, x-retry-count",
    )

    assert response.status_code == 204
    assert response.content == b""
    assert response["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in [m.strip() for m in response["Access-Control-Allow-Methods"].split(",")]
    assert response["Access-Control-Allow-Headers"] == "content-type, authorization, x-retry-count"
    assert int(response["Access-Control-Max-Age"]) > 0
    assert "Origin" in response["Vary"]


def test_it_allows_the_usual_headers_when_a_preflight_names_none(client):
    response = client.options("/v1/track", HTTP_ORIGIN=ORIGIN, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST")

    assert response.status_code == 204
    allowed = {h.strip().lower() for h in response["Access-Control-Allow-Headers"].split(",")}
    assert {"content-type", "authorization", "content-encoding"} <= allowed


def test_it_labels_a_successful_post_for_cors(client, source):
    response = post(client, "track", track("m1"), HTTP_ORIGIN=ORIGIN)

    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == ORIGIN


@pytest.mark.parametrize(
    ("endpoint", "body", "extra", "status"),
    [
        ("track", track("m1"), {"HTTP_AUTHORIZATION": basic_auth("wk_nobody")}, 401),
        ("track", {"userId": "u1"}, {}, 400),
        ("track", b"{", {}, 400),
        ("track", b"x" * (33 * 1024), {}, 413),
        ("track", "a=b", {"content_type": "application/x-www-form-urlencoded"}, 415),
        ("batch", {"batch": [{"type": "track"}]}, {}, 400),
    ],
    ids=["401", "400-validation", "400-json", "413", "415", "400-batch"],
)
def test_it_labels_error_answers_for_cors(client, source, endpoint, body, extra, status):
    response = post(client, endpoint, body, HTTP_ORIGIN=ORIGIN, **extra)

    assert response.status_code == status
    assert response["Access-Control-Allow-Origin"] == ORIGIN
    assert response.json()["success"] is False


def test_it_allows_any_origin_when_the_request_names_none(client, source):
    response = post(client, "track", track("m1"))

    assert response["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
def test_it_refuses_methods_other_than_post_with_a_json_405(client, source, method):
    response = getattr(client, method)("/v1/track", HTTP_ORIGIN=ORIGIN)

    assert response.status_code == 405
    assert response.json() == error("method_not_allowed", "Use POST.")
    assert response["Access-Control-Allow-Origin"] == ORIGIN
    assert Event.objects.count() == 0


@pytest.mark.parametrize(
    "text",
    ['{"writeKey": "wk_test_website", "x": 1', '{"writeKey":"wk_test_website"', '{"a": 1, "writeKey": "wk_test_we'],
)
def test_a_write_key_in_a_refused_bodys_excerpt_is_redacted_whole_or_cut_off(text: str) -> None:
    from deliveries.ingest.tracking import WRITE_KEY_IN_TEXT

    redacted = WRITE_KEY_IN_TEXT.sub(r'\1"[REDACTED]"', text)

    assert "wk_test" not in redacted
    assert '"[REDACTED]"' in redacted

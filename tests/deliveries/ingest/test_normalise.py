"""Normalisation on ingest: timestamps (exact arithmetic on a frozen clock), messageId, writeKey, merges, ip."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from unittest.mock import patch

import orjson
import pytest

from deliveries.ingest.normalisation import iso, normalise
from deliveries.models import Event
from tests.conftest import basic_auth

pytestmark = pytest.mark.django_db

WRITE_KEY = "wk_test_website"
RECEIVED = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@contextmanager
def server_clock(now: datetime) -> Iterator[None]:
    with patch("deliveries.ingest.tracking.timezone.now", return_value=now):
        yield


def post(
    client, endpoint: str, body: dict[str, Any], *, key: str | None = WRITE_KEY, now: datetime = RECEIVED, **extra: Any
):
    if key is not None:
        extra.setdefault("HTTP_AUTHORIZATION", basic_auth(key))
    with server_clock(now):
        response = client.post(f"/v1/{endpoint}", data=orjson.dumps(body), content_type="application/json", **extra)
    assert response.status_code == 200, response.content
    return response


def accepted() -> list[Event]:
    return list(Event.objects.filter(status=Event.Status.ACCEPTED).order_by("id"))


def only_payload() -> dict[str, Any]:
    [row] = accepted()
    return row.payload


def times(payload: dict[str, Any]) -> dict[str, str]:
    return {k: payload[k] for k in ("originalTimestamp", "sentAt", "timestamp", "receivedAt") if k in payload}


# --- timestamps -------------------------------------------------------------------------------------


def test_it_corrects_client_clock_skew_as_received_at_minus_the_send_delay(client, source):
    post(
        client,
        "track",
        {
            "userId": "u1",
            "event": "Order Completed",
            "messageId": "m1",
            "originalTimestamp": "2024-05-01T10:00:00.000Z",
            "sentAt": "2024-05-01T10:00:05.250Z",
        },
    )

    [row] = accepted()
    assert row.payload == {
        "type": "track",
        "userId": "u1",
        "event": "Order Completed",
        "properties": {},
        "messageId": "m1",
        "context": {"ip": "127.0.0.1"},
        "originalTimestamp": "2024-05-01T10:00:00.000Z",
        "sentAt": "2024-05-01T10:00:05.250Z",
        "timestamp": "2024-05-01T11:59:54.750Z",
        "receivedAt": "2024-05-01T12:00:00.000Z",
    }
    assert row.timestamp == datetime(2024, 5, 1, 11, 59, 54, 750000, tzinfo=UTC)
    assert row.received_at == RECEIVED


def test_it_copies_the_client_timestamp_into_original_timestamp_when_that_is_absent(client, source):
    post(
        client,
        "track",
        {
            "userId": "u1",
            "event": "E",
            "timestamp": "2024-05-01T10:00:00.000Z",
            "sentAt": "2024-05-01T10:00:05.250Z",
        },
    )

    assert times(only_payload()) == {
        "originalTimestamp": "2024-05-01T10:00:00.000Z",
        "sentAt": "2024-05-01T10:00:05.250Z",
        "timestamp": "2024-05-01T11:59:54.750Z",
        "receivedAt": "2024-05-01T12:00:00.000Z",
    }


def test_it_prefers_original_timestamp_to_the_client_timestamp(client, source):
    post(
        client,
        "track",
        {
            "userId": "u1",
            "event": "E",
            "originalTimestamp": "2024-05-01T10:00:00.000Z",
            "timestamp": "2024-05-01T09:00:00.000Z",
            "sentAt": "2024-05-01T10:00:01.000Z",
        },
    )

    assert times(only_payload()) == {
        "originalTimestamp": "2024-05-01T10:00:00.000Z",
        "sentAt": "2024-05-01T10:00:01.000Z",
        "timestamp": "2024-05-01T11:59:59.000Z",
        "receivedAt": "2024-05-01T12:00:00.000Z",
    }


def test_it_keeps_a_historical_timestamp_when_there_is_no_sent_at(client, source):
    post(client, "track", {"userId": "u1", "event": "E", "timestamp": "2023-11-30T08:15:30.125Z"})

    [row] = accepted()
    assert times(row.payload) == {
        "originalTimestamp": "2023-11-30T08:15:30.125Z",
        "timestamp": "2023-11-30T08:15:30.125Z",
        "receivedAt": "2024-05-01T12:00:00.000Z",
    }
    assert row.timestamp == datetime(2023, 11, 30, 8, 15, 30, 125000, tzinfo=UTC)


def test_it_uses_original_timestamp_as_the_timestamp_when_there_is_no_sent_at(client, source):
    post(client, "identify", {"userId": "u1", "originalTimestamp": "2024-05-01T11:00:00.000Z"})

    assert times(only_payload()) == {
        "originalTimestamp": "2024-05-01T11:00:00.000Z",
        "timestamp": "2024-05-01T11:00:00.000Z",
        "receivedAt": "2024-05-01T12:00:00.000Z",
    }


def test_it_uses_the_server_clock_for_every_timestamp_when_the_client_sends_none(client, source):
    post(client, "track", {"userId": "u1", "event": "E"})

    [row] = accepted()
    assert times(row.payload) == {
        "originalTimestamp": "2024-05-01T12:00:00.000Z",
        "timestamp": "2024-05-01T12:00:00.000Z",
        "receivedAt": "2024-05-01T12:00:00.000Z",
    }
    assert row.timestamp == row.received_at == RECEIVED


def test_it_keeps_sent_at_but_uses_the_server_clock_when_there_is_no_event_time(client, source):
    post(client, "track", {"userId": "u1", "event": "E", "sentAt": "2024-05-01T10:00:05.250Z"})

    assert times(only_payload()) == {
        "originalTimestamp": "2024-05-01T12:00:00.000Z",
        "sentAt": "2024-05-01T10:00:05.250Z",
        "timestamp": "2024-05-01T12:00:00.000Z",
        "receivedAt": "2024-05-01T12:00:00.000Z",
    }


def test_it_applies_the_batch_sent_at_to_every_item(client, source):
    post(
        client,
        "batch",
        {
            "sentAt": "2024-05-01T10:00:05.250Z",
            "batch": [
                {
                    "type": "track",
                    "userId": "u1",
                    "event": "A",
                    "messageId": "m1",
                    "timestamp": "2024-05-01T10:00:00.000Z",
                },
                {
                    "type": "track",
                    "userId": "u1",
                    "event": "B",
                    "messageId": "m2",
                    "timestamp": "2024-05-01T10:00:04.000Z",
                },
                {"type": "identify", "userId": "u1", "messageId": "m3"},
            ],
        },
    )

    assert [times(e.payload) for e in accepted()] == [
        {
            "originalTimestamp": "2024-05-01T10:00:00.000Z",
            "sentAt": "2024-05-01T10:00:05.250Z",
            "timestamp": "2024-05-01T11:59:54.750Z",
            "receivedAt": "2024-05-01T12:00:00.000Z",
        },
        {
            "originalTimestamp": "2024-05-01T10:00:04.000Z",
            "sentAt": "2024-05-01T10:00:05.250Z",
            "timestamp": "2024-05-01T11:59:58.750Z",
            "receivedAt": "2024-05-01T12:00:00.000Z",
        },
        {
            "originalTimestamp": "2024-05-01T12:00:00.000Z",
            "sentAt": "2024-05-01T10:00:05.250Z",
            "timestamp": "2024-05-01T12:00:00.000Z",
            "receivedAt": "2024-05-01T12:00:00.000Z",
        },
    ]
    assert [e.timestamp for e in accepted()] == [
        datetime(2024, 5, 1, 11, 59, 54, 750000, tzinfo=UTC),
        datetime(2024, 5, 1, 11, 59, 58, 750000, tzinfo=UTC),
        RECEIVED,
    ]


def test_an_items_own_sent_at_wins_over_the_batch_sent_at(client, source):
    post(
        client,
        "batch",
        {
            "sentAt": "2024-05-01T10:00:05.250Z",
            "batch": [
                {
                    "type": "track",
                    "userId": "u1",
                    "event": "A",
                    "timestamp": "2024-05-01T10:00:00.000Z",
                    "sentAt": "2024-05-01T10:00:00.500Z",
                }
            ],
        },
    )

    assert times(only_payload()) == {
        "originalTimestamp": "2024-05-01T10:00:00.000Z",
        "sentAt": "2024-05-01T10:00:00.500Z",
        "timestamp": "2024-05-01T11:59:59.500Z",
        "receivedAt": "2024-05-01T12:00:00.000Z",
    }


def test_it_converts_timezone_offsets_to_utc_with_a_z(client, source):
    post(
        client,
        "track",
        {
            "userId": "u1",
            "event": "E",
            "timestamp": "2024-05-01T12:00:00.000+02:00",
            "sentAt": "2024-05-01T05:00:05.250-05:00",
        },
    )

    [row] = accepted()
    assert times(row.payload) == {
        "originalTimestamp": "2024-05-01T10:00:00.000Z",
        "sentAt": "2024-05-01T10:00:05.250Z",
        "timestamp": "2024-05-01T11:59:54.750Z",
        "receivedAt": "2024-05-01T12:00:00.000Z",
    }
    assert row.timestamp == datetime(2024, 5, 1, 11, 59, 54, 750000, tzinfo=UTC)


def test_it_converts_an_offset_timestamp_without_sent_at_to_utc(client, source):
    post(client, "track", {"userId": "u1", "event": "E", "timestamp": "2024-05-01T14:30:00+02:00"})

    [row] = accepted()
    assert times(row.payload)["timestamp"] == "2024-05-01T12:30:00.000Z"
    assert times(row.payload)["originalTimestamp"] == "2024-05-01T12:30:00.000Z"
    assert row.timestamp == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


def test_it_reads_a_timestamp_without_an_offset_as_utc(client, source):
    post(
        client,
        "track",
        {"userId": "u1", "event": "E", "timestamp": "2024-05-01T10:00:00", "sentAt": "2024-05-01T10:00:02.000+00:00"},
    )

    assert times(only_payload()) == {
        "originalTimestamp": "2024-05-01T10:00:00.000Z",
        "sentAt": "2024-05-01T10:00:02.000Z",
        "timestamp": "2024-05-01T11:59:58.000Z",
        "receivedAt": "2024-05-01T12:00:00.000Z",
    }


def test_it_keeps_milliseconds_and_drops_finer_precision(client, source):
    server_now = datetime(2024, 5, 1, 12, 0, 0, 999999, tzinfo=UTC)

    post(
        client,
        "track",
        {
            "userId": "u1",
            "event": "E",
            "timestamp": "2024-05-01T10:00:00.123456Z",
            "sentAt": "2024-05-01T10:00:01.123456Z",
        },
        now=server_now,
    )

    [row] = accepted()
    assert times(row.payload) == {
        "originalTimestamp": "2024-05-01T10:00:00.123Z",
        "sentAt": "2024-05-01T10:00:01.123Z",
        "timestamp": "2024-05-01T11:59:59.999Z",
        "receivedAt": "2024-05-01T12:00:00.999Z",
    }
    assert row.received_at == datetime(2024, 5, 1, 12, 0, 0, 999000, tzinfo=UTC)
    assert iso(row.timestamp) == row.payload["timestamp"]


def test_it_corrects_a_device_clock_that_runs_hours_ahead(client, source):
    post(
        client,
        "track",
        {"userId": "u1", "event": "E", "timestamp": "2024-05-01T15:00:00.000Z", "sentAt": "2024-05-01T15:00:01.000Z"},
    )

    assert times(only_payload())["timestamp"] == "2024-05-01T11:59:59.000Z"


def test_it_corrects_across_a_leap_day_boundary(client, source):
    post(
        client,
        "track",
        {"userId": "u1", "event": "E", "timestamp": "2024-02-29T23:59:59.500Z", "sentAt": "2024-03-01T00:00:00.500Z"},
        now=datetime(2024, 3, 1, 0, 0, 0, 250000, tzinfo=UTC),
    )

    assert times(only_payload()) == {
        "originalTimestamp": "2024-02-29T23:59:59.500Z",
        "sentAt": "2024-03-01T00:00:00.500Z",
        "timestamp": "2024-02-29T23:59:59.250Z",
        "receivedAt": "2024-03-01T00:00:00.250Z",
    }


@pytest.mark.parametrize(
    "body",
    [
        {"timestamp": "2024-05-01T10:00:00.000Z", "sentAt": "2024-05-01T10:00:05.250Z"},
        {"timestamp": "2024-05-01T10:00:00.000+02:00"},
        {"originalTimestamp": "2019-01-01T00:00:00.001Z", "sentAt": "2024-05-01T11:59:59Z"},
        {},
    ],
)
def test_the_timestamp_column_equals_the_payload_timestamp(client, source, body):
    post(client, "page", {"anonymousId": "a1", **body})

    [row] = accepted()
    assert iso(row.timestamp) == row.payload["timestamp"]
    assert iso(row.received_at) == row.payload["receivedAt"]


# --- messageId --------------------------------------------------------------------------------------


@pytest.mark.parametrize("given", [{}, {"messageId": None}, {"messageId": ""}], ids=["absent", "null", "empty"])
def test_it_generates_a_uuid_message_id_when_the_client_sends_none(client, source, given):
    post(client, "track", {"userId": "u1", "event": "E", **given})

    [row] = accepted()
    assert uuid.UUID(row.payload["messageId"]).version == 7  # time-ordered: see ingest.new_message_id
    assert row.message_id == row.payload["messageId"]


def test_it_gives_each_event_without_a_message_id_its_own(client, source):
    post(client, "track", {"userId": "u1", "event": "E"})
    post(client, "track", {"userId": "u1", "event": "E"})
    post(client, "batch", {"batch": [{"type": "track", "userId": "u1", "event": "E"}] * 3})

    ids = [e.message_id for e in accepted()]
    assert len(ids) == len(set(ids)) == 5


def test_it_keeps_the_clients_message_id(client, source):
    post(client, "track", {"userId": "u1", "event": "E", "messageId": "ajs-next-1714557600000-abc"})

    [row] = accepted()
    assert row.message_id == row.payload["messageId"] == "ajs-next-1714557600000-abc"


# --- writeKey ---------------------------------------------------------------------------------------


def test_it_never_stores_the_write_key_of_a_single_event(client, source):
    post(client, "identify", {"userId": "u1", "writeKey": WRITE_KEY}, key=None)

    payload = only_payload()
    assert "writeKey" not in payload
    assert WRITE_KEY not in orjson.dumps(payload).decode()


def test_it_never_stores_the_write_key_of_a_batch_or_its_items(client, source):
    post(
        client,
        "batch",
        {
            "writeKey": WRITE_KEY,
            "batch": [
                {"type": "track", "userId": "u1", "event": "E", "writeKey": WRITE_KEY},
                {"type": "identify", "userId": "u1"},
            ],
        },
        key=None,
    )

    for row in accepted():
        assert WRITE_KEY not in orjson.dumps(row.payload).decode()


def test_it_never_stores_the_write_key_of_a_rejected_event(client, source):
    with server_clock(RECEIVED):
        response = client.post(
            "/v1/track", data=orjson.dumps({"userId": "u1", "writeKey": WRITE_KEY}), content_type="application/json"
        )
        batch_response = client.post(
            "/v1/batch",
            data=orjson.dumps({"writeKey": WRITE_KEY, "batch": [{"type": "track", "writeKey": WRITE_KEY}]}),
            content_type="application/json",
        )
        not_a_list = client.post(
            "/v1/batch", data=orjson.dumps({"writeKey": WRITE_KEY, "batch": "x"}), content_type="application/json"
        )

    assert (response.status_code, batch_response.status_code, not_a_list.status_code) == (400, 400, 400)
    rows = Event.objects.filter(status=Event.Status.REJECTED)
    assert rows.count() == 3
    for row in rows:
        assert WRITE_KEY not in orjson.dumps(row.payload).decode()


# --- batch context and integrations -----------------------------------------------------------------


def test_it_merges_the_batch_context_and_integrations_into_each_item_with_the_items_keys_winning(client, source):
    library = {"name": "analytics-python", "version": "2.3.3"}
    post(
        client,
        "batch",
        {
            "context": {"library": library, "locale": "en-GB", "ip": "198.51.100.1"},
            "integrations": {"All": False, "Salesforce Marketing Cloud": True},
            "batch": [
                {
                    "type": "track",
                    "userId": "u1",
                    "event": "A",
                    "messageId": "m1",
                    "context": {"locale": "fr-FR", "page": {"path": "/cart"}},
                    "integrations": {"All": True},
                },
                {"type": "identify", "userId": "u1", "messageId": "m2"},
            ],
        },
    )

    first, second = accepted()
    assert first.payload["context"] == {
        "library": library,
        "locale": "fr-FR",
        "ip": "198.51.100.1",
        "page": {"path": "/cart"},
    }
    assert first.payload["integrations"] == {"All": True, "Salesforce Marketing Cloud": True}
    assert second.payload["context"] == {"library": library, "locale": "en-GB", "ip": "198.51.100.1"}
    assert second.payload["integrations"] == {"All": False, "Salesforce Marketing Cloud": True}


def test_an_items_context_key_replaces_the_batch_value_whole_rather_than_merging_inside_it(client, source):
    post(
        client,
        "batch",
        {
            "context": {"library": {"name": "analytics-python", "version": "2.3.3"}},
            "batch": [{"type": "track", "userId": "u1", "event": "A", "context": {"library": {"name": "custom"}}}],
        },
    )

    assert only_payload()["context"]["library"] == {"name": "custom"}


def test_it_leaves_integrations_out_when_nobody_sends_them(client, source):
    post(client, "batch", {"batch": [{"type": "track", "userId": "u1", "event": "A"}], "context": {}})

    payload = only_payload()
    assert "integrations" not in payload
    assert payload["context"] == {"ip": "127.0.0.1"}


# --- context.ip -------------------------------------------------------------------------------------


def test_it_sets_context_ip_from_the_client_address_when_absent(client, source):
    post(client, "track", {"userId": "u1", "event": "E", "context": {"locale": "en-US"}}, REMOTE_ADDR="203.0.113.7")

    assert only_payload()["context"] == {"locale": "en-US", "ip": "203.0.113.7"}


def test_it_keeps_the_context_ip_the_client_sent(client, source):
    post(client, "track", {"userId": "u1", "event": "E", "context": {"ip": "192.0.2.10"}}, REMOTE_ADDR="203.0.113.7")

    assert only_payload()["context"] == {"ip": "192.0.2.10"}


def test_it_sets_context_ip_on_every_batch_item_unless_the_batch_context_has_one(client, source):
    post(client, "batch", {"batch": [{"type": "track", "userId": "u1", "event": "E"}]}, REMOTE_ADDR="203.0.113.7")
    post(
        client,
        "batch",
        {"batch": [{"type": "track", "userId": "u1", "event": "E"}], "context": {"ip": "192.0.2.10"}},
        REMOTE_ADDR="203.0.113.7",
    )

    assert [e.payload["context"] for e in accepted()] == [{"ip": "203.0.113.7"}, {"ip": "192.0.2.10"}]


# --- the rest of the payload ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "body", "added"),
    [
        ("identify", {"userId": "u1", "traits": {"email": "ada@example.com"}}, {}),
        ("identify", {"anonymousId": "a1"}, {"traits": {}}),
        ("track", {"userId": "u1", "event": "E"}, {"properties": {}}),
        ("page", {"anonymousId": "a1", "name": "Home", "category": "Docs"}, {"properties": {}}),
        ("screen", {"anonymousId": "a1", "name": "Home"}, {"properties": {}}),
        ("group", {"userId": "u1", "groupId": "g1"}, {"traits": {}}),
        ("alias", {"previousId": "a1", "userId": "u1"}, {}),
    ],
)
def test_it_stores_each_type_with_its_defaults_and_the_normalised_fields(client, source, endpoint, body, added):
    post(client, endpoint, {**body, "messageId": "m1", "version": 2, "custom": {"kept": True}})

    [row] = accepted()
    assert row.payload == {
        **body,
        **added,
        "type": endpoint,
        "messageId": "m1",
        "version": 2,
        "custom": {"kept": True},
        "context": {"ip": "127.0.0.1"},
        "originalTimestamp": "2024-05-01T12:00:00.000Z",
        "timestamp": "2024-05-01T12:00:00.000Z",
        "receivedAt": "2024-05-01T12:00:00.000Z",
    }
    assert (row.type, row.event, row.user_id, row.anonymous_id) == (
        endpoint,
        body.get("event", ""),
        body.get("userId", ""),
        body.get("anonymousId", ""),
    )
    assert row.status == Event.Status.ACCEPTED
    assert row.reject_reason == ""


def test_it_stores_numeric_ids_as_strings(client, source):
    post(client, "group", {"userId": 42, "groupId": 7, "anonymousId": 1.5})

    [row] = accepted()
    assert (row.payload["userId"], row.payload["groupId"], row.payload["anonymousId"]) == ("42", "7", "1.5")
    assert (row.user_id, row.anonymous_id) == ("42", "1.5")


def test_normalise_leaves_the_item_it_was_given_unchanged():
    item = {"type": "track", "userId": 42, "event": "E", "writeKey": WRITE_KEY, "context": {"locale": "en"}}
    before = copy.deepcopy(item)
    context = {"library": {"name": "x"}}

    payload = normalise(item, "track", RECEIVED, context=context, integrations={"All": True}, ip="203.0.113.7")

    assert item == before
    assert context == {"library": {"name": "x"}}
    assert payload["context"] == {"library": {"name": "x"}, "locale": "en", "ip": "203.0.113.7"}
    assert payload["_timestamp"] == RECEIVED

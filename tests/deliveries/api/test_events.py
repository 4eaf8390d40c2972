"""/api/v1/events: the list newest first with each filter, cursor pages, a 400 for every bad filter, one event with
its deliveries, attempts and exchanges, who may read them, and no secret in any answer."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.test import Client
from django.utils import timezone

from deliveries.models import Attempt, Event
from integrations.models import ApiToken, Destination, Source
from tests.conftest import basic_auth
from tests.deliveries.api.conftest import client_with, every_page, leaks, track
from tests.factories import make_delivery, make_event

pytestmark = pytest.mark.django_db

EVENTS = "/api/v1/events"


def results(client, **params: Any) -> list[dict[str, Any]]:
    response = client.get(EVENTS, params)
    assert response.status_code == 200, response.content
    return response.json()["results"]


def ids(client, **params: Any) -> list[int]:
    return [row["id"] for row in results(client, **params)]


# The list --------------------------------------------------------------------------------------------


def test_it_lists_events_as_received_newest_first(api, source):
    client = Client()
    track(client, source.write_key, {"userId": "user-1", "event": "Signed Up", "properties": {"plan": "pro"}})
    track(client, source.write_key, {"userId": "user-1", "traits": {"email": "ada@example.com"}}, kind="identify")

    identify, signed_up = results(api)

    assert identify["id"] > signed_up["id"]
    assert signed_up["source"] == "website"
    assert (signed_up["type"], signed_up["name"], signed_up["user_id"]) == ("track", "Signed Up", "user-1")
    assert signed_up["status"] == "accepted"
    assert signed_up["payload"]["properties"] == {"plan": "pro"}
    assert signed_up["payload"]["messageId"] == signed_up["message_id"]
    assert "writeKey" not in signed_up["payload"]
    assert identify["name"] == ""
    assert api.get(signed_up["url"]).json()["id"] == signed_up["id"]


@pytest.fixture
def mixed(source) -> dict[str, Event]:
    """Events that differ in one filter each from a plain track event of the website."""
    app = Source.objects.create(name="App", slug="app", write_key="wk_test_app_0a1b2c3d")
    now = timezone.now()
    rejected = make_event(source, user_id="u-rejected", status=Event.Status.REJECTED, reject_reason="missing_identity")
    identify = make_event(source, event="")
    Event.objects.filter(pk=identify.pk).update(type="identify")
    return {
        "plain": make_event(source, received_at=now - timedelta(minutes=5)),
        "app": make_event(app, received_at=now - timedelta(minutes=4)),
        "named": make_event(source, event="Order Completed", received_at=now - timedelta(minutes=3)),
        "user": make_event(source, user_id="user-42", received_at=now - timedelta(minutes=2)),
        "anonymous": make_event(source, user_id="", anonymous_id="anon-7"),
        "message": make_event(source, message_id="msg-0001"),
        "old": make_event(source, received_at=now - timedelta(days=3)),
        "rejected": rejected,
        "identify": identify,
    }


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"source": "app"}, ["app"]),
        ({"type": "identify"}, ["identify"]),
        ({"name": "Order Completed"}, ["named"]),
        ({"user_id": "user-42"}, ["user"]),
        ({"anonymous_id": "anon-7"}, ["anonymous"]),
        ({"message_id": "msg-0001"}, ["message"]),
        ({"status": "rejected"}, ["rejected"]),
        ({"until": "-1d"}, ["old"]),
        ({"since": "-1d", "until": "-100s"}, ["user", "named", "app", "plain"]),
        ({"source": "website", "until": "-1d"}, ["old"]),
    ],
)
def test_each_filter_picks_its_events(api, mixed, params: dict[str, str], expected: list[str]):
    now = timezone.now()
    query = dict(params)
    for name in ("since", "until"):
        if name in query:  # "-1d": a day ago
            unit = {"d": "days", "s": "seconds"}[query[name][-1]]
            query[name] = (now + timedelta(**{unit: int(query[name][:-1])})).isoformat()

    assert ids(api, **query) == [mixed[name].pk for name in expected]


def test_accepted_leaves_out_rejected_events_and_test_sends_are_listed_only_when_asked_for(api, mixed, source):
    test_send = make_event(source, status=Event.Status.TEST)

    assert mixed["rejected"].pk not in ids(api, status="accepted")
    assert len(ids(api, status="accepted")) == len(mixed) - 1
    assert test_send.pk not in ids(api)
    assert ids(api, status="test") == [test_send.pk]


def test_an_offset_typed_unencoded_into_the_url_still_reads_as_meant(api, source):
    event = make_event(source)
    since = (event.received_at - timedelta(minutes=1)).astimezone(timezone.get_fixed_timezone(120))
    typed = since.isoformat().replace("+", " ")  # what a "+02:00" left unencoded in a query string becomes

    assert ids(api, since=typed) == [event.pk]


def test_pages_follow_next_to_the_end_keeping_the_filter(api, source):
    mine = [make_event(source, user_id="user-many").pk for _ in range(7)]
    for _ in range(3):
        make_event(source, user_id="someone-else")

    pages = every_page(api, f"{EVENTS}?user_id=user-many&limit=3")

    assert [len(page["results"]) for page in pages] == [3, 3, 1]
    assert [row["id"] for page in pages for row in page["results"]] == sorted(mine, reverse=True)
    assert parse_qs(urlsplit(pages[0]["next"]).query)["user_id"] == ["user-many"]
    assert pages[0]["previous"] is None
    assert pages[1]["previous"] is not None
    assert "count" not in pages[0]  # keyset pages: nothing counts every row


def test_a_time_range_is_newest_first_by_received_at_and_otherwise_by_id(api, source):
    now = timezone.now()
    later = make_event(source, received_at=now - timedelta(minutes=5))
    earlier = make_event(source, received_at=now - timedelta(minutes=10))  # stored after, received before
    since = (now - timedelta(hours=1)).isoformat()

    assert ids(api) == [earlier.pk, later.pk]
    assert ids(api, since=since) == [later.pk, earlier.pk]  # read on the received_at index: no sort
    assert ids(api, since=since, type="track") == [earlier.pk, later.pk]  # the type's index is in id order


def test_pages_of_a_time_range_go_through_a_batch_that_shares_one_received_at(api, source):
    before = make_event(source, received_at=timezone.now() - timedelta(minutes=1))
    batch = {"batch": [{"type": "track", "userId": f"u{n}", "event": "Batched"} for n in range(7)]}
    Client().post(
        "/v1/batch",
        data=json.dumps(batch),
        content_type="application/json",
        HTTP_AUTHORIZATION=basic_auth(source.write_key),
    )
    batched = list(Event.objects.filter(event="Batched").order_by("-id").values_list("id", flat=True))
    assert len(set(Event.objects.filter(event="Batched").values_list("received_at", flat=True))) == 1
    since = (timezone.now() - timedelta(hours=1)).isoformat()

    pages = every_page(api, f"{EVENTS}?{urlencode({'since': since, 'limit': 3})}")

    assert [row["id"] for page in pages for row in page["results"]] == [*batched, before.pk]
    assert [len(page["results"]) for page in pages] == [3, 3, 2]


def test_a_page_holds_fifty_unless_asked(api, source):
    for _ in range(52):
        make_event(source)
    assert len(results(api)) == 50
    assert len(results(api, limit=500)) == 52


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"since": "yesterday"}, "since", "Datetime has wrong format."),
        ({"until": "2026-13-01T00:00:00Z"}, "until", "Datetime has wrong format."),
        ({"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"}, "until", "must come after its start"),
        ({"type": "visit"}, "type", '"visit" is not an event type: use one of identify, track'),
        ({"status": "gone"}, "status", '"gone" is not an event status: use one of accepted, rejected, test.'),
        ({"source": "nowhere"}, "source", 'No source has the slug "nowhere".'),
        ({"source": "not a slug!"}, "source", "Enter a valid"),
        ({"limit": "0"}, "limit", "A page holds 1 to 500 items."),
        ({"limit": "501"}, "limit", "A page holds 1 to 500 items."),
        ({"limit": "many"}, "limit", "A page holds 1 to 500 items."),
        ({"userId": "user-1"}, "userId", "Unknown parameter: this list takes anonymous_id, cursor, limit, message_id"),
        ({"user_id": "x" * 256}, "user_id", "no more than 255 characters"),
    ],
)
def test_a_bad_filter_is_a_400_that_says_what_is_wrong(api, source, params: dict[str, str], field: str, message: str):
    response = api.get(EVENTS, params)

    assert response.status_code == 400
    assert message in " ".join(response.json()[field])


def test_a_bad_cursor_is_refused(api, source):
    assert api.get(EVENTS, {"cursor": "not-a-cursor"}).status_code == 404


# One event -------------------------------------------------------------------------------------------


def test_one_event_has_each_delivery_with_its_attempts_and_exchanges(api, source, destination):
    crm = Destination.objects.create(name="A CRM hook", slug="crm-hook", vendor="webhook", config={"url": "https://c"})
    event = make_event(source)
    failed = make_delivery(destination, event, status="failed", attempts=1, error_code="http_500", hint="Check it.")
    filtered = make_delivery(crm, event, status="filtered", error_message="The filter lets through identify only.")
    exchange = {
        "request": {"method": "POST", "url": "https://hooks.example.com/in", "headers": {}, "body": "{}"},
        "response": {"status": 500, "headers": {}, "body": "boom"},
        "error": "",
        "duration_ms": 12.5,
    }
    Attempt.objects.create(
        delivery=failed, number=1, started_at=timezone.now(), outcome="failed", status_code=500, exchanges=[exchange]
    )

    body = api.get(f"{EVENTS}/{event.pk}").json()

    assert body["id"] == event.pk
    assert [d["destination"] for d in body["deliveries"]] == ["crm-hook", "welcome-hook"]  # by destination name
    crm_row, hook_row = body["deliveries"]
    assert (crm_row["id"], crm_row["status"], crm_row["attempt_log"]) == (filtered.pk, "filtered", [])
    assert crm_row["error_message"] == "The filter lets through identify only."
    assert (hook_row["status"], hook_row["error_code"], hook_row["hint"]) == ("failed", "http_500", "Check it.")
    (attempt,) = hook_row["attempt_log"]
    assert (attempt["number"], attempt["outcome"], attempt["status_code"]) == (1, "failed", 500)
    assert attempt["exchanges"] == [exchange]
    assert hook_row["more_attempts"] is False


def test_an_event_shows_the_newest_ten_attempts_of_a_delivery(api, source, destination):
    event = make_event(source)
    delivery = make_delivery(destination, event, status="retrying", attempts=12)
    Attempt.objects.bulk_create(
        [Attempt(delivery=delivery, number=n, started_at=timezone.now(), outcome="retry") for n in range(1, 13)]
    )

    (row,) = api.get(f"{EVENTS}/{event.pk}").json()["deliveries"]

    assert [a["number"] for a in row["attempt_log"]] == list(range(3, 13))
    assert row["more_attempts"] is True
    assert len(api.get(row["url"]).json()["attempt_log"]) == 12  # the delivery has them all


@pytest.mark.parametrize("event_id", ["999999", "abc"])
def test_an_unknown_event_is_a_404(api, event_id: str):
    response = api.get(f"{EVENTS}/{event_id}")
    assert response.status_code == 404
    assert "detail" in response.json()


# Who may read ----------------------------------------------------------------------------------------


def test_the_permission_matrix(caller, source):
    name, client = caller
    event = make_event(source)
    expected = {"admin": 200, "marketer": 200, "anonymous": 401, "revoked": 401}[name]

    assert client.get(EVENTS).status_code == expected
    assert client.get(f"{EVENTS}/{event.pk}").status_code == expected
    assert client.post(EVENTS, {}, format="json").status_code == {"admin": 405, "marketer": 403}.get(name, expected)
    assert client.delete(f"{EVENTS}/{event.pk}").status_code == {"admin": 405, "marketer": 403}.get(name, expected)


def test_a_user_without_view_event_is_refused(django_user_model, source):
    user = django_user_model.objects.create_user("sam", is_staff=True)
    client = client_with(ApiToken.issue(user, "no rights")[1])

    response = client.get(EVENTS)

    assert response.status_code == 403
    assert response.json() == {"detail": "You do not have permission to perform this action."}


# No secrets ------------------------------------------------------------------------------------------


def test_no_answer_carries_a_secret(api, marketer_api, seeded):
    secrets = seeded.marketer_secrets()
    assert Event.objects.count() >= 4
    assert Attempt.objects.exists()
    for client in (api, marketer_api):
        pages = every_page(client, f"{EVENTS}?limit=2")
        texts = [str(page) for page in pages]
        for page in pages:
            texts += [client.get(row["url"]).content.decode() for row in page["results"]]
        assert leaks(" ".join(texts), secrets) == []
        assert sum(len(page["results"]) for page in pages) == Event.objects.exclude(status="test").count()


def test_a_write_key_stored_inside_an_event_never_leaves(api, source):
    client = Client()
    key = source.write_key
    # A tool that echoes its webhook URL, and a refused request whose excerpt quotes the body.
    track(client, key, {"userId": "u1", "event": "Hooked", "properties": {"from": f"https://hub/v1/webhooks/{key}"}})
    body = f'{{"writeKey": "{key}", "userId": "u1", "event": '
    client.post("/v1/track", data=body, content_type="application/json", HTTP_AUTHORIZATION=basic_auth(key))
    assert Event.objects.filter(status="rejected").exists()
    assert key in str(Event.objects.get(event="Hooked").payload)  # stored as received …

    listed = api.get(EVENTS).content.decode()
    detail = api.get(f"{EVENTS}/{Event.objects.get(event='Hooked').pk}").content.decode()

    for text in (listed, detail):  # … never answered
        assert leaks(text, [key]) == []
    assert "https://hub/v1/webhooks/[REDACTED]" in detail


def test_a_page_costs_the_same_queries_for_fifty_events_as_for_one(api, source, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    make_event(source)
    results(api)  # the token's last use is written once a minute: not in what is counted
    with CaptureQueriesContext(connection) as one:
        results(api)
    for _ in range(49):
        make_event(source)
    with django_assert_max_num_queries(len(one)):
        assert len(results(api)) == 50


def test_the_schema_documents_these_endpoints_without_a_warning():
    from django.urls import include, path
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.validation import validate_schema
    from rest_framework.routers import SimpleRouter

    from deliveries.api.urls import router

    mine = SimpleRouter()
    for prefix, viewset, basename in router.registry:
        if prefix in ("events", "deliveries", "replays"):
            mine.register(prefix, viewset, basename=basename)
    GENERATOR_STATS.reset()

    schema = SchemaGenerator(patterns=[path("api/v1/", include(mine.urls))]).get_schema(request=None, public=True)

    validate_schema(schema)
    assert not GENERATOR_STATS._warn_cache
    assert not GENERATOR_STATS._error_cache
    assert {"/api/v1/events/", "/api/v1/deliveries/{id}/retry/", "/api/v1/replays/{id}/"} <= set(schema["paths"])
    parameters = {p["name"] for p in schema["paths"]["/api/v1/events/"]["get"]["parameters"]}
    assert {
        "source",
        "type",
        "name",
        "status",
        "user_id",
        "message_id",
        "since",
        "until",
        "cursor",
        "limit",
    } <= parameters

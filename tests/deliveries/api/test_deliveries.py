"""/api/v1/deliveries: the list newest first with each filter, cursor pages, a 400 for every bad filter, one delivery
with every attempt, Retry now of one (409 when there is nothing to retry) and of many by filter, who may do what,
and no secret in any answer."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from deliveries.models import Attempt, Delivery, Replay
from integrations.models import ApiToken, Destination
from tests.deliveries.api.conftest import client_with, every_page, leaks
from tests.factories import make_delivery, make_event

pytestmark = pytest.mark.django_db

DELIVERIES = "/api/v1/deliveries"


def ids(client, **params: Any) -> list[int]:
    response = client.get(DELIVERIES, params)
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


@pytest.fixture
def crm(source) -> Destination:
    destination = Destination.objects.create(name="CRM", slug="crm", vendor="webhook", config={"url": "https://crm"})
    destination.sources.add(source)
    return destination


# The list --------------------------------------------------------------------------------------------


def test_it_lists_deliveries_newest_first_without_their_attempts(api, source, destination):
    first = make_delivery(destination, make_event(source), status="delivered", attempts=1, latency_ms=180)
    second = make_delivery(destination, make_event(source), status="failed", attempts=3, error_code="http_500")

    rows = api.get(DELIVERIES).json()["results"]

    assert [row["id"] for row in rows] == [second.pk, first.pk]
    assert rows[0]["destination"] == "welcome-hook"
    assert rows[0]["event"] == second.event_id
    assert (rows[0]["status"], rows[0]["attempts"], rows[0]["error_code"]) == ("failed", 3, "http_500")
    assert (rows[1]["status"], rows[1]["latency_ms"]) == ("delivered", 180)
    assert "attempt_log" not in rows[0]
    assert api.get(rows[0]["url"]).json()["id"] == second.pk


@pytest.fixture
def mixed(source, destination, crm) -> dict[str, Delivery]:
    now = timezone.now()
    event = make_event(source)
    replay = Replay.objects.create(criteria={"events": [event.pk]})
    return {
        "failed": make_delivery(destination, make_event(source), status="failed", error_code="http_500"),
        "crm": make_delivery(crm, make_event(source), status="delivered"),
        "timeout": make_delivery(destination, make_event(source), status="retrying", error_code="timeout"),
        "of_event": make_delivery(destination, event, status="delivered"),
        "replayed": make_delivery(crm, event, status="pending", replay=replay),
        "old": make_delivery(destination, make_event(source, received_at=now - timedelta(days=2)), status="delivered"),
    }


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "failed"}, ["failed"]),
        ({"status": "retrying"}, ["timeout"]),
        ({"destination": "crm"}, ["replayed", "crm"]),
        ({"error_code": "timeout"}, ["timeout"]),
        ({"replay": "replay"}, ["replayed"]),
        ({"event": "of_event"}, ["replayed", "of_event"]),
        ({"until": "-1d"}, ["old"]),
        ({"since": "-1d", "destination": "welcome-hook", "status": "delivered"}, ["of_event"]),
    ],
)
def test_each_filter_picks_its_deliveries(api, mixed, params: dict[str, str], expected: list[str]):
    query = dict(params)
    if query.get("event"):
        query["event"] = mixed[query["event"]].event_id
    if query.get("replay"):
        query["replay"] = mixed["replayed"].replay_id
    for name in ("since", "until"):
        if name in query:
            query[name] = (timezone.now() - timedelta(days=1)).isoformat()

    assert ids(api, **query) == [mixed[name].pk for name in expected]


def test_pages_of_failed_deliveries_follow_next_to_the_end(api, source, destination):
    failed = [make_delivery(destination, make_event(source), status="failed").pk for _ in range(5)]
    make_delivery(destination, make_event(source), status="delivered")

    pages = every_page(api, f"{DELIVERIES}?status=failed&limit=2")

    assert [len(page["results"]) for page in pages] == [2, 2, 1]
    assert [row["id"] for page in pages for row in page["results"]] == sorted(failed, reverse=True)


def test_a_destinations_time_range_is_newest_first_by_created_at(api, source, destination):
    now = timezone.now()
    later = make_delivery(destination, make_event(source, received_at=now - timedelta(minutes=5)))
    earlier = make_delivery(destination, make_event(source, received_at=now - timedelta(minutes=10)))
    since = (now - timedelta(hours=1)).isoformat()

    assert ids(api, destination="welcome-hook") == [earlier.pk, later.pk]
    assert ids(api, destination="welcome-hook", since=since) == [later.pk, earlier.pk]
    pages = every_page(api, f"{DELIVERIES}?destination=welcome-hook&since={since.replace('+', '%2B')}&limit=1")
    assert [row["id"] for page in pages for row in page["results"]] == [later.pk, earlier.pk]


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"status": "lost"}, "status", '"lost" is not a delivery status: use one of pending, in_flight, delivered'),
        ({"destination": "nowhere"}, "destination", 'No destination has the slug "nowhere".'),
        ({"event": "abc"}, "event", "A valid integer is required."),
        ({"event": "0"}, "event", "greater than or equal to 1"),
        ({"since": "last week"}, "since", "Datetime has wrong format."),
        ({"limit": "1000"}, "limit", "A page holds 1 to 500 items."),
        ({"destination_id": "3"}, "destination_id", "Unknown parameter: this list takes cursor, destination, error_c"),
    ],
)
def test_a_bad_filter_is_a_400_that_says_what_is_wrong(api, params: dict[str, str], field: str, message: str):
    response = api.get(DELIVERIES, params)

    assert response.status_code == 400
    assert message in " ".join(response.json()[field])


# One delivery ----------------------------------------------------------------------------------------


def test_one_delivery_has_every_attempt_oldest_first_with_its_exchanges(api, source, destination):
    delivery = make_delivery(destination, make_event(source), status="delivered", attempts=2)
    timeout = {
        "request": {"method": "POST", "url": "https://hooks.example.com/in"},
        "response": None,
        "error": "timeout",
    }
    Attempt.objects.create(delivery=delivery, number=2, started_at=timezone.now(), outcome="delivered", status_code=200)
    Attempt.objects.create(delivery=delivery, number=1, started_at=timezone.now(), outcome="retry", exchanges=[timeout])

    body = api.get(f"{DELIVERIES}/{delivery.pk}").json()

    assert [(a["number"], a["outcome"]) for a in body["attempt_log"]] == [(1, "retry"), (2, "delivered")]
    assert body["attempt_log"][0]["exchanges"] == [timeout]  # as recorded: no key added
    assert body["attempt_log"][1]["exchanges"] == []


def test_an_unknown_delivery_is_a_404(api):
    assert api.get(f"{DELIVERIES}/424242").status_code == 404
    assert api.post(f"{DELIVERIES}/424242/retry").status_code == 404


# Retry -----------------------------------------------------------------------------------------------


def test_retry_now_sends_a_failed_delivery_again_at_once(api, source, destination):
    delivery = make_delivery(destination, make_event(source), status="failed", attempts=3, next_attempt_at=None)

    response = api.post(f"{DELIVERIES}/{delivery.pk}/retry")

    assert response.status_code == 202
    body = response.json()
    assert (body["retried"], body["warnings"]) == (1, [])
    assert body["delivery"]["status"] == "retrying"
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.RETRYING
    assert timezone.now() - delivery.next_attempt_at < timedelta(seconds=5)


@pytest.mark.parametrize(
    ("status", "label"), [("delivered", "delivered"), ("in_flight", "in flight"), ("filtered", "filtered")]
)
def test_there_is_nothing_to_retry_in_a_delivered_filtered_or_in_flight_delivery(
    api, source, destination, status, label
):
    delivery = make_delivery(destination, make_event(source), status=status)

    response = api.post(f"{DELIVERIES}/{delivery.pk}/retry")

    assert response.status_code == 409
    assert response.json()["detail"].startswith(f"Nothing to retry: the delivery is {label}.")
    delivery.refresh_from_db()
    assert delivery.status == status


def test_retrying_at_a_paused_destination_says_the_deliveries_wait_there(api, source, destination):
    Destination.objects.filter(pk=destination.pk).update(paused=True)
    delivery = make_delivery(destination, make_event(source), status="failed")

    body = api.post(f"{DELIVERIES}/{delivery.pk}/retry").json()

    assert body["warnings"] == [
        "Paused or disabled: Welcome hook. Deliveries there wait until the destination is resumed and enabled."
    ]


def test_retry_these_sends_a_destinations_failed_and_retrying_deliveries_of_one_error_again(
    api, source, destination, crm
):
    def failing(to: Destination, code: str = "http_500", days: int = 0, **fields: Any) -> Delivery:
        event = make_event(source, received_at=timezone.now() - timedelta(days=days))
        return make_delivery(to, event, error_code=code, next_attempt_at=None, **fields)

    chosen = [failing(destination, status="failed"), failing(destination, status="retrying")]
    left = [
        failing(destination, code="timeout", status="failed"),  # another error
        failing(destination, days=2, status="failed"),  # before the last 24 hours
        failing(crm, status="failed"),  # another destination
        failing(destination, status="failed", is_test=True),  # a test send
        failing(destination, status="delivered"),
    ]

    response = api.post(f"{DELIVERIES}/retry", {"destination": "welcome-hook", "error_code": "http_500"}, format="json")

    assert response.status_code == 202
    assert response.json() == {"retried": 2, "warnings": []}
    assert {d.pk for d in Delivery.objects.filter(next_attempt_at__isnull=False)} == {d.pk for d in chosen}
    assert Delivery.objects.get(pk=left[0].pk).status == "failed"


def test_retry_these_takes_a_time_range_and_a_status(api, source, destination):
    old = make_delivery(
        destination, make_event(source, received_at=timezone.now() - timedelta(days=3)), status="failed"
    )
    pending = make_delivery(destination, make_event(source), status="pending", next_attempt_at=None)
    since = (timezone.now() - timedelta(days=4)).isoformat()

    assert (
        api.post(f"{DELIVERIES}/retry", {"destination": "welcome-hook", "since": since}, format="json").json()[
            "retried"
        ]
        == 1
    )
    assert Delivery.objects.get(pk=old.pk).status == "retrying"
    body = {"destination": "welcome-hook", "status": "pending"}
    assert api.post(f"{DELIVERIES}/retry", body, format="json").json()["retried"] == 1
    assert Delivery.objects.get(pk=pending.pk).next_attempt_at is not None


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({}, "destination", "This field is required."),
        ({"destination": "nowhere"}, "destination", 'No destination has the slug "nowhere".'),
        ({"destination": "welcome-hook", "status": "delivered"}, "status", '"delivered" is not a status that can be'),
        ({"destination": "welcome-hook", "since": "soon"}, "since", "Datetime has wrong format."),
    ],
)
def test_a_bad_retry_these_is_a_400(api, destination, body: dict[str, str], field: str, message: str):
    response = api.post(f"{DELIVERIES}/retry", body, format="json")

    assert response.status_code == 400
    assert message in " ".join(response.json()[field])


# Who may do what -------------------------------------------------------------------------------------


def test_the_permission_matrix(caller, source, destination):
    name, client = caller
    delivery = make_delivery(destination, make_event(source), status="failed")
    read = {"admin": 200, "marketer": 200}.get(name, 401)
    retry = {"admin": 202, "marketer": 202}.get(name, 401)

    assert client.get(DELIVERIES).status_code == read
    assert client.get(f"{DELIVERIES}/{delivery.pk}").status_code == read
    assert client.post(f"{DELIVERIES}/{delivery.pk}/retry").status_code == retry
    bulk = client.post(f"{DELIVERIES}/retry", {"destination": "welcome-hook"}, format="json")
    assert bulk.status_code == retry
    assert client.delete(f"{DELIVERIES}/{delivery.pk}").status_code == {"admin": 405, "marketer": 403}.get(name, 401)


def test_retrying_needs_the_admins_retry_permission(django_user_model, source, destination):
    user = django_user_model.objects.create_user("vic", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_delivery"))
    client = client_with(ApiToken.issue(user, "viewer")[1])
    delivery = make_delivery(destination, make_event(source), status="failed")

    response = client.post(f"{DELIVERIES}/{delivery.pk}/retry")

    assert client.get(DELIVERIES).status_code == 200
    assert response.status_code == 403
    assert response.json() == {
        "detail": "This needs the permissions deliveries.view_delivery, deliveries.change_delivery."
    }
    assert client.post(f"{DELIVERIES}/retry", {"destination": "welcome-hook"}, format="json").status_code == 403
    assert Delivery.objects.get(pk=delivery.pk).status == "failed"


# No secrets ------------------------------------------------------------------------------------------


def test_no_answer_carries_a_secret(api, marketer_api, seeded):
    secrets = seeded.marketer_secrets()
    assert Attempt.objects.exclude(exchanges=[]).exists()
    for client in (api, marketer_api):
        pages = every_page(client, f"{DELIVERIES}?limit=5")
        texts = [str(page) for page in pages]
        for page in pages:
            texts += [client.get(row["url"]).content.decode() for row in page["results"]]
        failed = Delivery.objects.filter(status="failed").first()
        texts.append(client.post(f"{DELIVERIES}/{failed.pk}/retry").content.decode())
        assert leaks(" ".join(texts), secrets) == []
        assert sum(len(page["results"]) for page in pages) == Delivery.objects.count()

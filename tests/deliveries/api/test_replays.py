"""/api/v1/replays: a dry run counts and makes nothing; a replay by selection or by filter is recorded and its task
queued, as the admin's form does (its checks, the confirmation a journey needs); the list, one replay with the
progress numbers of the admin's page, who may do what, and no secret in any answer."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from deliveries.models import Delivery, Replay
from integrations.models import ApiToken, Destination, Source
from tests.deliveries.api.conftest import client_with, every_page, leaks
from tests.factories import make_delivery, make_event

pytestmark = pytest.mark.django_db

REPLAYS = "/api/v1/replays"


def post(client, body: dict[str, Any]):
    return client.post(REPLAYS, body, format="json")


@pytest.fixture
def kicks(monkeypatch) -> list[int]:
    """Kicks the replay asks for (the real ones would send at once in sync mode)."""
    kicked: list[int] = []
    monkeypatch.setattr(
        "deliveries.engine.slots.kick", lambda destination_id, fill=False: kicked.append(destination_id)
    )
    return kicked


@pytest.fixture
def journey(source) -> Destination:
    destination = Destination.objects.create(
        name="Welcome journey",
        slug="welcome-journey",
        vendor="sfmc_journey",
        config={"subdomain": "mc563885gzs27c5t9-63k636ttgm", "event_definition_key": "APIEvent-welcome"},
        credentials={"client_id": "cid-replay-api", "client_secret": "s3cr3t-replay-api-0x5eed"},
    )
    destination.sources.add(source)
    return destination


# Dry run ---------------------------------------------------------------------------------------------


def test_a_dry_run_counts_a_selection_and_makes_nothing(api, source, destination):
    events = [make_event(source) for _ in range(3)]
    make_delivery(destination, events[0], status="delivered")
    make_delivery(destination, events[1], status="failed")
    deliveries = Delivery.objects.count()

    response = post(api, {"destinations": ["welcome-hook"], "event_ids": [e.pk for e in events], "dry_run": True})

    assert response.status_code == 200
    body = response.json()
    assert (body["dry_run"], body["to_send"], body["description"]) == (True, 2, "3 selected events")
    (count,) = body["destinations"]
    assert count["destination"] == "welcome-hook"
    assert (count["matched"], count["delivered"], count["skipped"], count["to_send"]) == (3, 1, 1, 2)
    assert body["needs_confirmation"] == []
    assert not Replay.objects.exists()
    assert Delivery.objects.count() == deliveries


def test_a_filter_takes_the_last_24_hours_unless_given_a_time_range(api, source, destination):
    make_event(source, received_at=timezone.now() - timedelta(days=2))
    make_event(source)

    (count,) = post(api, {"destinations": ["welcome-hook"], "dry_run": True}).json()["destinations"]
    since = (timezone.now() - timedelta(days=3)).isoformat()
    (wider,) = post(api, {"destinations": ["welcome-hook"], "since": since, "dry_run": True}).json()["destinations"]

    assert (count["matched"], wider["matched"]) == (1, 2)


def test_a_dry_run_says_which_destinations_need_the_confirmation(api, source, journey):
    make_event(source)

    response = post(api, {"destinations": ["welcome-journey"], "dry_run": True})

    assert response.status_code == 200  # counting sends nothing: no confirmation needed yet
    (warning,) = response.json()["needs_confirmation"]
    assert warning.startswith("Welcome journey: a replay admits these contacts into the journey again")


# Replay ----------------------------------------------------------------------------------------------


def test_a_replay_of_a_selection_is_recorded_and_its_task_queues_the_deliveries(
    api, admin_user, source, destination, kicks, django_capture_on_commit_callbacks
):
    event = make_event(source)
    make_delivery(destination, event, status="failed", attempts=2)

    with django_capture_on_commit_callbacks(execute=True):
        response = post(api, {"destinations": ["welcome-hook"], "event_ids": [event.pk]})

    assert response.status_code == 201
    replay = Replay.objects.get()
    assert response["Location"] == f"http://testserver{REPLAYS}/{replay.pk}"
    assert (replay.criteria, replay.description, replay.created_by) == (
        {"events": [event.pk]},
        "1 selected event",
        admin_user,
    )
    assert list(replay.destinations.values_list("slug", flat=True)) == ["welcome-hook"]
    assert replay.queued == 1  # the task ran (django-q2 runs it inline in tests)
    assert Delivery.objects.get().replay == replay
    assert kicks == [destination.pk]
    assert response.json()["destinations"] == ["welcome-hook"]


def test_a_replay_by_filter_records_the_criteria_of_the_admins_form(api, source, destination):
    Source.objects.create(name="App", slug="app", write_key="wk_replay_app_0a1b")
    since = timezone.now() - timedelta(hours=6)
    body = {
        "destinations": ["welcome-hook"],
        "source": "website",
        "since": since.isoformat(),
        "type": "track",
        "name": "Order Completed",
        "delivery_status": "failed",
        "include_delivered": True,
    }

    response = post(api, body)

    assert response.status_code == 201
    replay = Replay.objects.get()
    criteria = replay.criteria
    assert {k: criteria[k] for k in ("source", "type", "event", "delivery_status")} == {
        "source": source.pk,
        "type": "track",
        "event": "Order Completed",
        "delivery_status": "failed",
    }
    assert parse_datetime(criteria["since"]) == since
    assert abs(parse_datetime(criteria["until"]) - timezone.now()) < timedelta(seconds=5)  # until: now
    assert replay.include_delivered is True
    assert response.json()["description"].startswith("track “Order Completed” events from Website received ")


def test_a_journey_replay_needs_the_confirmation_that_contacts_enter_it_again(api, source, journey):
    event = make_event(source)
    body = {"destinations": ["welcome-journey"], "event_ids": [event.pk]}

    refused = post(api, body)

    assert refused.status_code == 400
    assert refused.json() == {
        "confirm_resend": [
            "Welcome journey: a replay admits these contacts into the journey again, which can send its emails a "
            "second time.",
            'Send "confirm_resend": true to confirm.',
        ]
    }
    assert not Replay.objects.exists()
    assert post(api, {**body, "confirm_resend": True}).status_code == 201


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({}, "destinations", "This field is required."),
        ({"destinations": []}, "destinations", "Ensure this field has at least 1 elements."),
        ({"destinations": ["nowhere"]}, "destinations", 'No destination has the slug "nowhere".'),
        ({"destinations": ["off"]}, "destinations", "Disabled: off. Enable a destination to replay to it."),
        ({"event_ids": list(range(1, 1002))}, "event_ids", "Select at most 1,000 events, or replay by a filter."),
        ({"event_ids": ["x"]}, "event_ids", "A valid integer is required."),
        ({"event_ids": [1], "source": "website"}, "non_field_errors", "either a selection (event_ids) or a filter"),
        ({"source": "nowhere"}, "source", 'No source has the slug "nowhere".'),
        ({"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"}, "until", "must come after its start"),
        ({"since": "tomorrow"}, "since", "Datetime has wrong format."),
        ({"type": "invalid"}, "type", '"invalid" is not an event type: use one of identify, track'),
        ({"delivery_status": "lost"}, "delivery_status", '"lost" is not a delivery status: use one of any, failed'),
    ],
)
def test_a_bad_replay_is_a_400_that_says_what_is_wrong(api, source, destination, body, field: str, message: str):
    Destination.objects.create(name="Off", slug="off", vendor="webhook", config={"url": "https://off"}, enabled=False)
    body = {"destinations": ["welcome-hook"], **body} if "destinations" not in body and body else body

    response = post(api, body)

    assert response.status_code == 400
    assert message in str(response.json()[field])  # a list item's errors are keyed by its index
    assert not Replay.objects.exists()


# The list and one replay -----------------------------------------------------------------------------


def test_replays_are_listed_newest_first_and_by_status(api, destination):
    done = Replay.objects.create(criteria={"events": [1]}, description="1 selected event", status="done", queued=1)
    done.destinations.set([destination])
    queued = Replay.objects.create(criteria={"events": [2]}, description="1 selected event")

    rows = api.get(REPLAYS).json()["results"]

    assert [row["id"] for row in rows] == [queued.pk, done.pk]
    assert rows[1]["destinations"] == ["welcome-hook"]
    assert (rows[1]["status"], rows[1]["queued"]) == ("done", 1)
    assert [row["id"] for row in api.get(REPLAYS, {"status": "done"}).json()["results"]] == [done.pk]
    assert api.get(REPLAYS, {"status": "stuck"}).status_code == 400


def test_pages_of_replays_follow_next(api):
    made = [Replay.objects.create(criteria={"events": [n]}).pk for n in range(5)]

    pages = every_page(api, f"{REPLAYS}?limit=2")

    assert [row["id"] for page in pages for row in page["results"]] == sorted(made, reverse=True)


def test_one_replay_has_the_progress_numbers_of_the_admins_page(api, admin_client, source, destination, kicks):
    events = [make_event(source) for _ in range(3)]
    replay = Replay.objects.create(criteria={"events": [e.pk for e in events]}, status="sending", queued=3, processed=3)
    replay.destinations.set([destination])
    for event, status in zip(events, ["delivered", "failed", "retrying"], strict=True):
        make_delivery(destination, event, status=status, replay=replay)

    body = api.get(f"{REPLAYS}/{replay.pk}").json()
    page = admin_client.get(reverse("admin:deliveries_replay_progress", args=[replay.pk])).json()

    assert body["progress"] == {k: v for k, v in page.items() if k != "finished_at"}
    assert (body["progress"]["delivered"], body["progress"]["failed"], body["progress"]["waiting"]) == (1, 1, 1)
    assert body["progress"]["done"] is False
    assert body["status"] == "sending"


def test_a_replay_found_finished_says_done_in_both_places(api, source, destination):
    event = make_event(source)
    replay = Replay.objects.create(criteria={"events": [event.pk]}, status="sending", queued=1, processed=1)
    replay.destinations.set([destination])
    make_delivery(destination, event, status="delivered", replay=replay)

    body = api.get(f"{REPLAYS}/{replay.pk}").json()

    assert (body["status"], body["progress"]["status"], body["progress"]["done"]) == ("done", "done", True)
    assert body["delivered"] == 1
    assert body["finished_at"] is not None


# Who may do what -------------------------------------------------------------------------------------


def test_the_permission_matrix(caller, source, destination):
    name, client = caller
    event = make_event(source)
    replay = Replay.objects.create(criteria={"events": [event.pk]})
    read = {"admin": 200, "marketer": 200}.get(name, 401)

    assert client.get(REPLAYS).status_code == read
    assert client.get(f"{REPLAYS}/{replay.pk}").status_code == read
    body = {"destinations": ["welcome-hook"], "event_ids": [event.pk]}
    assert post(client, {**body, "dry_run": True}).status_code == read
    assert post(client, body).status_code == {"admin": 201, "marketer": 201}.get(name, 401)
    assert client.delete(f"{REPLAYS}/{replay.pk}").status_code == {"admin": 405, "marketer": 403}.get(name, 401)


def test_replaying_needs_the_admins_add_replay_permission(django_user_model, source, destination):
    user = django_user_model.objects.create_user("val", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_replay"))
    client = client_with(ApiToken.issue(user, "viewer")[1])
    event = make_event(source)

    assert client.get(REPLAYS).status_code == 200
    assert post(client, {"destinations": ["welcome-hook"], "event_ids": [event.pk]}).status_code == 403
    assert not Replay.objects.exists()


# No secrets ------------------------------------------------------------------------------------------


def test_no_answer_carries_a_secret(api, marketer_api, seeded, kicks, django_capture_on_commit_callbacks):
    secrets = seeded.marketer_secrets()
    body = {
        "destinations": [d.slug for d in seeded.destinations],
        "event_ids": [e.pk for e in seeded.events],
        "confirm_resend": True,
    }
    for client in (api, marketer_api):
        texts = [post(client, {**body, "dry_run": True}).content.decode()]
        with django_capture_on_commit_callbacks(execute=True):
            created = post(client, body)
        assert created.status_code == 201, created.content
        texts += [created.content.decode(), client.get(created["Location"]).content.decode()]
        texts.append(client.get(REPLAYS).content.decode())
        assert leaks(" ".join(texts), secrets) == []

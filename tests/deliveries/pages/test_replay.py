"""Replay: the dry run's counts (selection and filter, already delivered, the destination's filter), the task
(re-queues, creates, skips, never doubles an in-flight delivery, stores its counts), its progress, the journey
confirmation and permissions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from deliveries.models import Attempt, Delivery, Event, Replay
from deliveries.pages.replay import dry_run as dry_run_module
from deliveries.pages.replay import task as task_module
from deliveries.pages.replay.dry_run import dry_run
from deliveries.pages.replay.progress import progress
from deliveries.pages.replay.selection import describe, events_for
from deliveries.pages.replay.task import run_replay
from integrations.models import Destination, Source
from tests.factories import make_delivery, make_event

pytestmark = pytest.mark.django_db

ADD = reverse("admin:deliveries_replay_add")
LIST = reverse("admin:deliveries_replay_changelist")


def webhook(source: Source, name: str = "Welcome hook", **fields: Any) -> Destination:
    destination = Destination.objects.create(
        name=name, slug=name.lower().replace(" ", "-"), vendor="webhook", config={"url": "https://hooks.example.com/in"},
        **fields,
    )  # fmt: skip
    destination.sources.add(source)
    return destination


def journey(source: Source) -> Destination:
    destination = Destination.objects.create(
        name="Welcome journey",
        slug="welcome-journey",
        vendor="sfmc_journey",
        config={"subdomain": "mc563885gzs27c5t9-63k636ttgm", "event_definition_key": "APIEvent-welcome"},
        credentials={"client_id": "cid-replay", "client_secret": "s3cr3t-replay"},
    )
    destination.sources.add(source)
    return destination


@pytest.fixture
def kicks(monkeypatch) -> list[int]:
    """Kicks the replay asks for (the real ones would send at once in sync mode)."""
    kicked: list[int] = []
    monkeypatch.setattr(
        "deliveries.engine.slots.kick", lambda destination_id, fill=False: kicked.append(destination_id)
    )
    return kicked


def last_hour() -> dict[str, str]:
    now = timezone.now()
    return {"since": (now - timedelta(hours=1)).isoformat(), "until": (now + timedelta(minutes=1)).isoformat()}


def filter_criteria(**extra: Any) -> dict[str, Any]:
    return {"source": None, "type": "", "event": "", "delivery_status": "any", **last_hour(), **extra}


def make_replay(criteria: dict[str, Any], destinations: list[Destination], **fields: Any) -> Replay:
    replay = Replay.objects.create(criteria=criteria, description=describe(criteria), **fields)
    replay.destinations.set(destinations)
    return replay


# The dry run ----------------------------------------------------------------------------------------


def test_the_dry_run_counts_a_selection_and_skips_what_was_delivered(source):
    hook = webhook(source)
    events = [make_event(source) for _ in range(4)]
    make_delivery(hook, events[0], status="delivered")
    make_delivery(hook, events[1], status="failed", attempts=3)
    make_delivery(hook, events[2], status="in_flight")
    (count,) = dry_run({"events": [e.pk for e in events]}, [hook], include_delivered=False)
    assert (count.matched, count.delivered, count.in_flight, count.dropped) == (4, 1, 1, 0)
    assert count.to_send == 2  # the failed one and the one never sent


def test_the_dry_run_sends_delivered_events_again_when_asked(source):
    hook = webhook(source)
    events = [make_event(source) for _ in range(3)]
    make_delivery(hook, events[0], status="delivered")
    (count,) = dry_run({"events": [e.pk for e in events]}, [hook], include_delivered=True)
    assert (count.delivered, count.to_send) == (1, 3)


def test_the_dry_run_filter_picks_by_time_type_name_and_delivery_status(source):
    hook = webhook(source)
    old = make_event(source, received_at=timezone.now() - timedelta(days=2))
    failed = make_event(source, event="Order Completed")
    delivered = make_event(source, event="Order Completed")
    other_name = make_event(source, event="Signed Up")
    for event, status in [(old, "failed"), (failed, "failed"), (delivered, "delivered"), (other_name, "failed")]:
        make_delivery(hook, event, status=status)
    (count,) = dry_run(filter_criteria(event="Order Completed"), [hook], False)
    assert (count.matched, count.delivered, count.to_send) == (2, 1, 1)
    (count,) = dry_run(filter_criteria(delivery_status="failed"), [hook], False)
    assert (count.matched, count.to_send) == (2, 2)  # not the one received two days ago
    never = make_event(source)
    (count,) = dry_run(filter_criteria(delivery_status="never"), [hook], False)
    assert (count.matched, count.to_send) == (1, 1)
    assert list(events_for(filter_criteria(delivery_status="never"), hook)) == [never]


def test_the_dry_run_counts_what_the_destinations_filter_would_drop(source):
    hook = webhook(source, filter={"events": ["Order Completed"]})
    events = [make_event(source, event="Order Completed"), make_event(source, event="Page Scrolled")]
    (count,) = dry_run({"events": [e.pk for e in events]}, [hook], False)
    assert (count.matched, count.dropped, count.dropped_estimated, count.to_send) == (2, 1, False, 1)


def test_the_dry_run_scales_delivery_counts_from_a_window_when_many_match(source, monkeypatch):
    monkeypatch.setattr(dry_run_module, "WINDOW", 2)
    hook = webhook(source)
    for _ in range(4):
        make_delivery(hook, make_event(source), status="delivered")
    (count,) = dry_run(filter_criteria(), [hook], False)
    assert (count.matched, count.delivered, count.estimated, count.to_send) == (4, 4, True, 0)


def test_the_dry_run_says_more_than_the_limit_and_a_replay_takes_the_oldest(source, monkeypatch, kicks):
    monkeypatch.setattr(dry_run_module, "EXACT_LIMIT", 3)
    monkeypatch.setattr(dry_run_module, "MAX_EVENTS", 3)
    monkeypatch.setattr(task_module, "MAX_EVENTS", 3)
    hook = webhook(source)
    events = [make_event(source) for _ in range(5)]
    (count,) = dry_run(filter_criteria(), [hook], False)
    assert (count.matched, count.more, count.to_send) == (3, True, 3)
    replay = make_replay(filter_criteria(), [hook])
    run_replay(replay.pk)
    replay.refresh_from_db()
    assert (replay.total, replay.queued) == (3, 3)
    assert set(Delivery.objects.values_list("event_id", flat=True)) == {e.pk for e in events[:3]}


def test_the_dry_run_leaves_out_sources_not_connected_to_the_destination(source):
    hook = webhook(source)
    mobile = Source.objects.create(name="Mobile", slug="mobile", write_key="wk_replay_mobile")
    make_event(source)
    make_event(mobile)
    (count,) = dry_run(filter_criteria(), [hook], False)
    assert count.matched == 1


def test_the_count_button_shows_the_dry_run_and_the_replay_button(admin_client, source):
    hook = webhook(source)
    event = make_event(source)
    response = admin_client.post(ADD, {"events": str(event.pk), "destinations": [hook.pk], "action": "Count"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Dry run: what a replay would do" in html
    assert "Replay 1 event" in html
    assert not Replay.objects.exists()


def test_the_form_starts_from_the_debuggers_filter_and_destination(admin_client, source):
    hook = webhook(source)
    response = admin_client.get(ADD, {"source": source.pk, "type": "track", "delivery_status": "failed",
                                      "destination": hook.pk})  # fmt: skip
    form = response.context["form"]
    assert form.initial["source"] == source.pk
    assert form.initial["delivery_status"] == "failed"
    assert form.initial["destinations"] == [hook.pk]
    assert f'value="{hook.pk}" id="id_destinations_0" checked' in response.content.decode()


# The task -------------------------------------------------------------------------------------------


def test_run_replay_requeues_failed_rows_creates_missing_ones_and_skips_delivered(
    source, kicks, django_capture_on_commit_callbacks
):
    hook = webhook(source)
    failed_event, delivered_event, new_event, flying_event = (make_event(source) for _ in range(4))
    failed = make_delivery(hook, failed_event, status="failed", attempts=3, error_code="http_503")
    Attempt.objects.create(delivery=failed, number=1, started_at=timezone.now(), outcome="failed")
    make_delivery(hook, delivered_event, status="delivered", attempts=1)
    flying = make_delivery(hook, flying_event, status="in_flight", attempts=1)
    replay = make_replay(filter_criteria(), [hook])

    with django_capture_on_commit_callbacks(execute=True):
        assert run_replay(replay.pk) == "queued 2"

    replay.refresh_from_db()
    failed.refresh_from_db()
    assert (failed.status, failed.replay_id, failed.attempts) == ("retrying", replay.pk, 3)
    assert failed.retry_from is not None
    assert failed.next_attempt_at <= timezone.now()
    assert failed.attempt_log.count() == 1  # its history is kept
    created = Delivery.objects.get(event=new_event)
    assert (created.status, created.replay_id, created.retry_from is not None) == ("pending", replay.pk, True)
    flying.refresh_from_db()
    assert flying.status == "in_flight"
    assert flying.replay_id is None
    assert Delivery.objects.filter(event=flying_event).count() == 1  # never a second row for one in flight
    assert Delivery.objects.filter(event=delivered_event).count() == 1
    counts = (replay.total, replay.processed, replay.queued, replay.skipped_delivered, replay.skipped_filtered)
    assert counts == (4, 4, 2, 1, 0)
    assert replay.status == "sending"
    assert kicks == [hook.pk]


def test_run_replay_sends_delivered_events_again_as_new_deliveries_when_asked(source, kicks):
    hook = webhook(source)
    event = make_event(source)
    delivered = make_delivery(hook, event, status="delivered", attempts=1)
    replay = make_replay({"events": [event.pk]}, [hook], include_delivered=True)
    run_replay(replay.pk)
    rows = list(Delivery.objects.filter(event=event).order_by("pk"))
    assert [r.status for r in rows] == ["delivered", "pending"]
    assert rows[0].pk == delivered.pk
    assert rows[1].replay_id == replay.pk
    # A second replay re-queues that pending row rather than making a third.
    again = make_replay({"events": [event.pk]}, [hook], include_delivered=True)
    run_replay(again.pk)
    assert Delivery.objects.filter(event=event).count() == 2


def test_run_replay_applies_the_destinations_filter(source, kicks):
    hook = webhook(source, filter={"types": ["identify"]})
    event = make_event(source)
    filtered = make_delivery(hook, event, status="filtered", error_code="filter_type")
    replay = make_replay({"events": [event.pk]}, [hook])
    run_replay(replay.pk)
    replay.refresh_from_db()
    filtered.refresh_from_db()
    assert (replay.skipped_filtered, replay.queued, filtered.status) == (1, 0, "filtered")
    assert replay.status == "done"  # nothing to wait for


def test_run_replay_queues_a_once_filtered_row_when_the_filter_now_lets_it_through(source, kicks):
    hook = webhook(source)
    event = make_event(source)
    filtered = make_delivery(hook, event, status="filtered", error_code="filter_type", error_message="not identify")
    run_replay(make_replay({"events": [event.pk]}, [hook]).pk)
    filtered.refresh_from_db()
    assert (filtered.status, filtered.error_code, filtered.error_message) == ("pending", "", "")


def test_run_replay_records_a_crash(source, kicks, monkeypatch):
    hook = webhook(source)
    make_event(source)
    replay = make_replay(filter_criteria(), [hook])

    def crash(*args: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(task_module, "_replay_chunk", crash)
    assert run_replay(replay.pk) == "failed"
    replay.refresh_from_db()
    assert replay.status == "failed"
    assert "disk full" in replay.error


def test_progress_counts_the_replays_deliveries_and_stores_them_when_all_have_finished(admin_client, source, kicks):
    hook = webhook(source)
    events = [make_event(source) for _ in range(3)]
    replay = make_replay({"events": [e.pk for e in events]}, [hook])
    run_replay(replay.pk)
    url = reverse("admin:deliveries_replay_progress", args=[replay.pk])
    state = admin_client.get(url).json()
    assert (state["status"], state["queued"], state["waiting"], state["done"]) == ("sending", 3, 3, False)

    rows = list(Delivery.objects.filter(replay=replay).order_by("pk"))
    Delivery.objects.filter(pk__in=[rows[0].pk, rows[1].pk]).update(status="delivered")
    Delivery.objects.filter(pk=rows[2].pk).update(status="failed")
    state = admin_client.get(url).json()
    assert (state["status"], state["delivered"], state["failed"], state["percent"], state["done"]) == (
        "done", 2, 1, 100, True
    )  # fmt: skip
    replay.refresh_from_db()
    assert (replay.status, replay.delivered, replay.failed) == ("done", 2, 1)
    assert replay.finished_at is not None


def test_the_progress_page_links_to_the_replays_own_deliveries(admin_client, source, kicks):
    hook = webhook(source)
    replayed, other = make_event(source, user_id="replayed-user"), make_event(source, user_id="other-user")
    make_delivery(hook, other, status="failed")
    replay = make_replay({"events": [replayed.pk]}, [hook])
    run_replay(replay.pk)
    page = admin_client.get(reverse("admin:deliveries_replay_change", args=[replay.pk]))
    link = page.context["deliveries_url"]
    assert link.endswith(f"?replay__id__exact={replay.pk}")

    listed = admin_client.get(link)
    assert listed.status_code == 200
    assert [d.event_id for d in listed.context["cl"].result_list] == [replayed.pk]


def test_progress_says_a_paused_destination_holds_its_deliveries(source, kicks):
    hook = webhook(source, paused=True)
    replay = make_replay({"events": [make_event(source).pk]}, [hook])
    run_replay(replay.pk)
    replay.refresh_from_db()
    assert progress(replay)["paused"] == ["Welcome hook"]


def test_replaying_from_the_form_records_the_replay_runs_it_and_shows_its_progress(
    admin_client, source, kicks, django_capture_on_commit_callbacks
):
    hook = webhook(source)
    event = make_event(source)
    make_delivery(hook, event, status="failed", attempts=2)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(ADD, {"events": str(event.pk), "destinations": [hook.pk], "replay": "Replay"})
    replay = Replay.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:deliveries_replay_change", args=[replay.pk])
    assert (replay.description, replay.created_by.username, replay.queued) == ("1 selected event", "admin", 1)
    assert replay.criteria == {"events": [event.pk]}
    page = admin_client.get(response["Location"])
    assert page.status_code == 200
    assert b'id="replay-bar"' in page.content
    listing = admin_client.get(LIST).content.decode()
    assert "1 selected event" in listing
    assert "Welcome hook" in listing


def test_a_journey_needs_the_confirmation_that_contacts_enter_it_again(admin_client, source):
    destination = journey(source)
    event = make_event(source, email="ada@example.com")
    data = {"events": str(event.pk), "destinations": [destination.pk], "replay": "Replay"}
    response = admin_client.post(ADD, data)
    assert response.status_code == 200
    assert "admits these contacts into the journey again" in response.content.decode()
    assert response.context["form"].errors["confirm_resend"]
    assert not Replay.objects.exists()
    counted = {"events": str(event.pk), "destinations": [destination.pk], "action": "Count", "confirm_resend": "on"}
    response = admin_client.post(ADD, counted)
    assert response.status_code == 200
    assert not response.context["form"].errors


def test_a_filter_replay_describes_its_criteria_in_words(source):
    words = describe(filter_criteria(source=source.pk, type="track", event="Order Completed", delivery_status="failed"))
    assert words.startswith("track “Order Completed” events from Website received ")
    assert words.endswith("whose delivery is failed")


# Permissions ----------------------------------------------------------------------------------------


def test_a_marketer_replays_and_sees_the_progress(marketer_client, source, kicks, django_capture_on_commit_callbacks):
    hook = webhook(source)
    event = make_event(source)
    assert marketer_client.get(ADD).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = marketer_client.post(ADD, {"events": str(event.pk), "destinations": [hook.pk], "replay": "Replay"})
    assert response.status_code == 302
    replay = Replay.objects.get()
    assert marketer_client.get(response["Location"]).status_code == 200
    assert marketer_client.get(reverse("admin:deliveries_replay_progress", args=[replay.pk])).status_code == 200
    assert marketer_client.get(LIST).status_code == 200
    assert b"s3cr3t" not in marketer_client.get(ADD).content


def test_staff_without_the_replay_permissions_get_403(client, django_user_model, source):
    user = django_user_model.objects.create_user("sam", "sam@example.com", "pw", is_staff=True)
    client.force_login(user)
    replay = make_replay({"events": []}, [])
    assert client.get(ADD).status_code == 403
    assert client.get(reverse("admin:deliveries_replay_change", args=[replay.pk])).status_code == 403
    assert client.get(reverse("admin:deliveries_replay_progress", args=[replay.pk])).status_code == 403
    assert client.get(LIST).status_code == 403


def test_replay_records_are_never_edited_or_deleted(admin_client, source):
    replay = make_replay({"events": []}, [])
    assert admin_client.post(reverse("admin:deliveries_replay_delete", args=[replay.pk])).status_code == 403
    assert Replay.objects.filter(pk=replay.pk).exists()
    assert Event.objects.count() == 0

"""The purge: what is past its retention goes in chunks by primary-key range; waiting deliveries and their events
stay; old attempts keep a summary of their exchanges; the admin's policy overrides the settings."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from deliveries.engine import purge as purge_module
from deliveries.engine import rollups, schema_fold
from deliveries.engine.purge import MIN_CHUNK, boundary, deletes, purge, purge_if_due
from deliveries.engine.purge_tables import TABLES
from deliveries.engine.sweep import sweep
from deliveries.models import Attempt, Delivery, DeliveryRollup, Event, Replay, RetentionPolicy, RollupCursor
from tests.factories import make_delivery, make_event

pytestmark = pytest.mark.django_db

EXCHANGE = {
    "request": {
        "method": "POST",
        "url": "https://hooks.example.com/in",
        "headers": {"Content-Type": "application/json", "Authorization": "[redacted]"},
        "body": '{"email": "ada@example.com"}',
    },
    "response": {"status": 200, "headers": {"Server": "x"}, "body": '{"ok": true}'},
    "duration_ms": 42.5,
}


def ago(days: float):
    return timezone.now() - timedelta(days=days)


def old_delivery(source, destination, days: float, status: str = "delivered", attempts: int = 1, **fields):
    """An event received `days` ago with one delivery to `destination` (and its attempts), all that old."""
    event = make_event(source, received_at=ago(days), **fields.pop("event_fields", {}))
    delivery = make_delivery(destination, event, status=status, **fields)
    Delivery.objects.filter(pk=delivery.pk).update(updated_at=ago(days))  # auto_now: set after
    for number in range(1, attempts + 1):
        Attempt.objects.create(
            delivery=delivery, number=number, started_at=ago(days), outcome="delivered", exchanges=[EXCHANGE]
        )
    return event, delivery


def fold_schema() -> None:
    schema_fold.fold()  # accepted events wait for the Schema page's fold before they may go


def test_rows_older_than_the_cutoff_go_with_their_attempts_and_newer_ones_stay(source, destination):
    old_event, old = old_delivery(source, destination, 31, attempts=2)
    new_event, new = old_delivery(source, destination, 29)
    fold_schema()

    report = purge()

    assert not Delivery.objects.filter(pk=old.pk).exists()
    assert not Event.objects.filter(pk=old_event.pk).exists()
    assert not Attempt.objects.filter(delivery_id=old.pk).exists()
    assert Delivery.objects.filter(pk=new.pk).exists()
    assert Event.objects.filter(pk=new_event.pk).exists()
    assert Attempt.objects.filter(delivery_id=new.pk).count() == 1
    done = {d.table.name: d for d in report.done}
    assert (done["deliveries"].rows, done["deliveries"].children, done["events"].rows) == (1, 2, 1)
    assert report.finished
    assert report.rows == 4


@pytest.mark.parametrize("status", Delivery.WAITING)
def test_a_waiting_delivery_and_its_event_stay_however_old(source, destination, status):
    event, waiting = old_delivery(source, destination, 90, status=status)
    fold_schema()

    purge()

    assert Delivery.objects.filter(pk=waiting.pk).exists()
    assert Event.objects.filter(pk=event.pk).exists()
    assert Attempt.objects.filter(delivery_id=waiting.pk).exists()


def test_an_event_stays_while_one_of_its_deliveries_waits_and_goes_once_it_is_done(source, destination):
    from integrations.models import Destination

    other = Destination.objects.create(name="Other", slug="other", vendor="webhook", config={"url": "https://x.io"})
    event, delivered = old_delivery(source, destination, 40)
    pending = make_delivery(other, event, status="pending")
    Delivery.objects.filter(pk=pending.pk).update(updated_at=ago(40))
    fold_schema()

    purge()
    assert not Delivery.objects.filter(pk=delivered.pk).exists()
    assert Event.objects.filter(pk=event.pk).exists(), "its pending delivery still needs it"

    Delivery.objects.filter(pk=pending.pk).update(status="failed", updated_at=ago(40))
    purge()  # the next walk starts over at the first id: the row that waited is looked at again
    assert not Event.objects.filter(pk=event.pk).exists()


def test_a_delivery_replayed_recently_stays_and_its_replay_is_untouched(source, destination):
    replay = Replay.objects.create(description="old signups")
    event, replayed = old_delivery(source, destination, 40)
    Delivery.objects.filter(pk=replayed.pk).update(replay=replay, updated_at=ago(1))
    _, gone = old_delivery(source, destination, 40)
    Delivery.objects.filter(pk=gone.pk).update(replay=replay)
    fold_schema()

    purge()

    assert list(Delivery.objects.values_list("pk", flat=True)) == [replayed.pk]
    assert Event.objects.filter(pk=event.pk).exists()
    assert Replay.objects.filter(pk=replay.pk).exists()


def test_events_the_schema_page_has_not_counted_yet_stay_until_it_has(source):
    event = make_event(source, received_at=ago(40))
    purge()
    assert Event.objects.filter(pk=event.pk).exists()
    fold_schema()
    purge()
    assert not Event.objects.filter(pk=event.pk).exists()


def test_exchange_bodies_are_summarised_after_14_days_and_newer_ones_are_kept(source, destination):
    _, old = old_delivery(source, destination, 15)
    _, recent = old_delivery(source, destination, 13)

    report = purge()

    [summary] = Attempt.objects.get(delivery=old).exchanges
    assert summary == {
        "request": {"method": "POST", "url": "https://hooks.example.com/in", "size": 28},
        "response": {"status": 200, "size": 12},
        "duration_ms": 42.5,
        "summarised": True,
        "note": "Headers and bodies were removed after 14 days (retention policy); request body 28 B, "
        "response body 12 B.",
    }
    assert Attempt.objects.get(delivery=recent).exchanges == [EXCHANGE]
    assert Delivery.objects.filter(pk=old.pk).exists(), "the delivery itself is kept 30 days"
    assert {d.table.name: d.rows for d in report.done}["exchange_bodies"] == 1
    assert purge().done[5].rows == 0, "summarised once"


def test_test_sends_go_after_a_day_and_rejected_events_after_a_week(source, destination):
    # In the order they arrive: ids grow with time.
    rejected = make_event(source, received_at=ago(8), status=Event.Status.REJECTED, reject_reason="no userId")
    recent_rejected = make_event(source, received_at=ago(6), status=Event.Status.REJECTED, reject_reason="x")
    test_event, test_send = old_delivery(
        source, destination, 1.5, is_test=True, event_fields={"status": Event.Status.TEST}
    )
    fresh_test = make_event(source, received_at=ago(0.5), status=Event.Status.TEST)

    purge()

    assert not Delivery.objects.filter(pk=test_send.pk).exists()
    assert not Event.objects.filter(pk__in=[test_event.pk, rejected.pk]).exists()
    assert set(Event.objects.values_list("pk", flat=True)) == {fresh_test.pk, recent_rejected.pk}


def test_minute_rollups_go_after_three_days(destination):
    rollups.add([(destination.pk, ago(4), "delivered", 80), (destination.pk, ago(2), "delivered", 80)])
    purge()
    assert [r.minute.date() for r in DeliveryRollup.objects.all()] == [ago(2).date()]


def test_the_admins_policy_wins_over_the_settings_and_blank_keeps_the_default(source, destination):
    old_delivery(source, destination, 40)
    fold_schema()
    RetentionPolicy.objects.create(events_days=60, deliveries_days=60)
    with override_settings(RETENTION_DAYS={**RetentionPolicy.defaults(), "deliveries": 10, "events": 10}):
        assert RetentionPolicy.in_force()["deliveries"] == 60
        assert RetentionPolicy.in_force()["exchange_bodies"] == 14
        purge()
        assert Delivery.objects.count() == 1
        assert Event.objects.count() == 1
        RetentionPolicy.objects.update(events_days=None, deliveries_days=None)
        assert RetentionPolicy.in_force()["deliveries"] == 10
        purge()
    assert Delivery.objects.count() == 0
    assert Event.objects.count() == 0


def test_chunks_are_bounded_and_shrink_when_a_chunk_holds_the_lock_too_long(source, destination, monkeypatch):
    for _ in range(80):
        old_delivery(source, destination, 40, attempts=0)
    fold_schema()
    monkeypatch.setattr(purge_module, "_chunks", {"deliveries": 40})
    sizes = []
    real_chunk = purge_module._chunk

    def chunk(table, done, low, high):
        sizes.append((table.name, high - low + 1))
        return real_chunk(table, done, low, high)

    monkeypatch.setattr(purge_module, "_chunk", chunk)
    with override_settings(RETENTION_CHUNK_MS=0.0001):  # every chunk is "too long": each halves the next
        report = purge()

    deliveries = [n for name, n in sizes if name == "deliveries"]
    assert deliveries == [40, 20, 10, 10]  # ids per chunk, down to the floor
    assert purge_module._chunks["deliveries"] == MIN_CHUNK
    assert Delivery.objects.count() == 0
    assert report.over_bound >= len(deliveries)


def test_a_time_boxed_call_does_one_chunk_and_the_next_goes_on_from_its_cursor(source, destination, monkeypatch):
    for _ in range(12):
        old_delivery(source, destination, 40)
    fold_schema()
    monkeypatch.setattr(purge_module, "_chunks", {"deliveries": 5})
    with override_settings(RETENTION_CHUNK_MS=1e9):  # fast: each chunk doubles the next
        first = purge(seconds=0)
    assert first.chunks == 1
    assert not first.finished
    assert Delivery.objects.count() == 7
    cursor = RollupCursor.objects.get(name="purge:deliveries").position
    calls = 1
    while Delivery.objects.exists() or Event.objects.exists():
        purge(seconds=0)
        calls += 1
        assert calls < 20
    assert cursor > 0
    assert calls > 2


def test_the_boundary_is_the_newest_row_older_than_the_cutoff(source):
    events = [make_event(source, received_at=ago(days)) for days in (50, 45, 40, 35, 20, 10, 5)]
    accepted = next(t for t in TABLES if t.name == "events")
    assert boundary(accepted, ago(30)) == events[3].pk
    assert boundary(accepted, ago(60)) is None
    assert boundary(accepted, ago(1)) == events[-1].pk


def test_the_sweeper_purges_at_most_once_a_minute(source, destination, monkeypatch):
    monkeypatch.setattr(purge_module, "_next_purge", 0.0)
    old_delivery(source, destination, 40)
    fold_schema()
    assert sweep()["purged"] == 3  # the event, its delivery and its attempt
    old_delivery(source, destination, 40)
    assert sweep()["purged"] == 0  # within the minute


def test_while_more_is_due_the_sweeper_purges_again_soon_but_only_a_share_of_its_time(source, destination, monkeypatch):
    monkeypatch.setattr(purge_module, "_next_purge", 0.0)
    monkeypatch.setattr(purge_module, "_chunks", {"deliveries": 2})
    for _ in range(6):
        old_delivery(source, destination, 40, attempts=0)
    fold_schema()
    with override_settings(RETENTION_PURGE_BUDGET_SECONDS=0, RETENTION_CHUNK_MS=1e9):
        report = purge_if_due()  # one chunk (the time box is spent at once): more is due
        assert not report.finished
        wait = purge_module._next_purge - time.monotonic()
        assert wait <= report.seconds / purge_module.CATCH_UP_SHARE < 60
        assert purge_if_due() is None  # not before the pause
        monkeypatch.setattr(purge_module, "_next_purge", 0.0)
        while not (report := purge_if_due()).finished:
            monkeypatch.setattr(purge_module, "_next_purge", 0.0)
    assert Delivery.objects.count() == 0
    assert purge_module._next_purge - time.monotonic() > 59  # caught up: once a minute again


@pytest.mark.skipif(
    connection.vendor != "sqlite",
    reason="SQLite's planner is the one that chose an age index (300 rows/s); PostgreSQL's plan for a test table "
    "of a few rows says nothing of one for a million",
)
@pytest.mark.parametrize("table", [t for t in TABLES if not t.summarise], ids=lambda t: t.name)
def test_every_chunk_is_read_by_its_primary_key_range_not_by_an_index_on_age_or_status(table):
    """At 1M old events SQLite chose (status, received_at) for "accepted and old": every chunk read every old row
    (300 events/s). The range must drive each statement, whatever indexes the table has."""
    with connection.cursor() as cursor:
        for sql, params in deletes(table, ago(30), 1000, 2000):
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            plan = [row[-1] for row in cursor.fetchall()]
            by_range = f"SEARCH {table.model._meta.db_table} USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"
            assert by_range in plan, plan
            assert not [line for line in plan if line.startswith("SCAN")], plan

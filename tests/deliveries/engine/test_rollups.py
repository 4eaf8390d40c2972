"""The per-minute and per-hour delivery rollups Event Delivery sums, the searchable email, a replay's fresh retry
deadline and the Marketer group the migrations make."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib import import_module
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.db.models import Sum
from django.test import Client
from django.utils import timezone

from deliveries.engine import rollups
from deliveries.engine.record import record
from deliveries.engine.send import Sent
from deliveries.engine.timing import Timing
from deliveries.models import Attempt, Delivery, DeliveryHourRollup, DeliveryRollup, Event
from integrations.vendors import Result
from tests.conftest import basic_auth
from tests.factories import make_delivery, make_event

pytestmark = pytest.mark.django_db
TIMING = Timing(retry_base=10, retry_cap=900, lease_margin=30, drain_seconds=5, queue_lease=60)


def held(destination, source, **fields) -> Delivery:
    """A delivery claimed by this worker (in flight, with a lease), as record() expects."""
    event = make_event(source, received_at=fields.pop("received_at", None))
    fields.setdefault("status", Delivery.Status.IN_FLIGHT)
    fields.setdefault("lease_expires_at", timezone.now() + timedelta(minutes=1))
    return make_delivery(destination, event, **fields)


def sent(delivery: Delivery, result: Result) -> Sent:
    now = timezone.now()
    return Sent(Delivery.objects.select_related("event").get(pk=delivery.pk), result, now, now, 12)


def totals() -> dict[tuple[str, int], int]:
    return {(r.status, r.latency_bucket): r.count for r in DeliveryRollup.objects.all()}


def hours_of_minutes() -> dict[tuple, tuple[int, int]]:
    """The minute rollups summed per UTC hour: what the hour rollups must hold."""
    out: dict[tuple, tuple[int, int]] = {}
    for r in DeliveryRollup.objects.all():
        key = (r.destination_id, rollups.hour_of(r.minute), r.status, r.latency_bucket)
        count, total = out.get(key, (0, 0))
        out[key] = (count + r.count, total + r.latency_ms_sum)
    return out


def hours() -> dict[tuple, tuple[int, int]]:
    return {
        (r.destination_id, r.hour, r.status, r.latency_bucket): (r.count, r.latency_ms_sum)
        for r in DeliveryHourRollup.objects.all()
    }


def test_latency_buckets_put_each_latency_under_its_upper_bound():
    assert rollups.latency_bucket(None) == rollups.FAILED_BUCKET
    assert rollups.latency_bucket(0) == 0
    assert rollups.latency_bucket(25) == 0
    assert rollups.latency_bucket(26) == 1
    assert rollups.bucket_bound(rollups.latency_bucket(900)) == 1_000
    assert rollups.latency_bucket(10**10) == len(rollups.LATENCY_BUCKETS)
    assert rollups.bucket_bound(len(rollups.LATENCY_BUCKETS)) == rollups.LATENCY_BUCKETS[-1]


def test_recording_outcomes_counts_delivered_and_failed_in_their_minute(destination, source):
    ok = held(destination, source, received_at=timezone.now() - timedelta(seconds=2))
    bad = held(destination, source)
    record(
        destination,
        [sent(ok, Result("delivered", status_code=200)), sent(bad, Result("failed", 400, "http_400", "Bad"))],
        TIMING,
    )
    ok.refresh_from_db()
    assert ok.status == Delivery.Status.DELIVERED
    assert ok.latency_ms >= 2000
    rows = list(DeliveryRollup.objects.order_by("status"))
    assert [(r.status, r.count) for r in rows] == [("delivered", 1), ("failed", 1)]
    assert rows[0].latency_bucket == rollups.latency_bucket(ok.latency_ms)
    assert rows[0].latency_ms_sum == ok.latency_ms
    assert rows[0].minute == rollups.minute_of(ok.delivered_at)
    assert rows[1].latency_bucket == rollups.FAILED_BUCKET


def test_a_second_outcome_in_the_same_minute_adds_to_the_row(destination, source):
    for _ in range(3):
        delivery = held(destination, source)
        record(destination, [sent(delivery, Result("failed", 400, "http_400", "Bad"))], TIMING)
    assert totals() == {("failed", rollups.FAILED_BUCKET): 3}


def test_retries_and_test_sends_are_not_counted(destination, source):
    retrying = held(destination, source)
    test = held(destination, source, is_test=True)
    record(
        destination,
        [sent(retrying, Result("retry", 503, "http_503", "Down")), sent(test, Result("delivered", status_code=200))],
        TIMING,
    )
    assert Delivery.objects.get(pk=retrying.pk).status == Delivery.Status.RETRYING
    assert Delivery.objects.get(pk=test.pk).status == Delivery.Status.DELIVERED
    assert totals() == {}


def test_rebuild_recomputes_the_rollups_from_the_delivery_rows(destination, source):
    now = timezone.now()
    for latency in (10, 40, 40, 5000):
        event = make_event(source, received_at=now - timedelta(hours=1))
        make_delivery(destination, event, status="delivered", delivered_at=now, latency_ms=latency)
    make_delivery(destination, make_event(source), status="failed")
    make_delivery(destination, make_event(source), status="retrying")
    make_delivery(destination, make_event(source), status="delivered", delivered_at=now, latency_ms=1, is_test=True)
    DeliveryRollup.objects.create(destination=destination, minute=now, status="delivered", count=99)

    rollups.rebuild()

    assert totals() == {
        ("delivered", rollups.latency_bucket(10)): 1,
        ("delivered", rollups.latency_bucket(40)): 2,
        ("delivered", rollups.latency_bucket(5000)): 1,
        ("failed", rollups.FAILED_BUCKET): 1,
    }
    assert sum(r.latency_ms_sum for r in DeliveryRollup.objects.filter(status="delivered")) == 5090


def test_an_hour_is_the_utc_hour_whatever_the_moments_time_zone():
    kolkata = datetime(2026, 3, 1, 10, 45, tzinfo=ZoneInfo("Asia/Kolkata"))  # 05:15 UTC
    assert rollups.hour_of(kolkata) == datetime(2026, 3, 1, 5, 0, tzinfo=UTC)
    assert rollups.hour_of(datetime(2026, 3, 1, 5, 59, 59, 999, tzinfo=UTC)) == datetime(2026, 3, 1, 5, tzinfo=UTC)


def test_recording_outcomes_counts_them_in_their_hour_too(destination, source):
    ok = held(destination, source, received_at=timezone.now() - timedelta(seconds=2))
    bad = held(destination, source)
    record(
        destination,
        [sent(ok, Result("delivered", status_code=200)), sent(bad, Result("failed", 400, "http_400", "Bad"))],
        TIMING,
    )
    ok.refresh_from_db()
    rows = list(DeliveryHourRollup.objects.order_by("status"))
    assert [(r.status, r.count) for r in rows] == [("delivered", 1), ("failed", 1)]
    assert rows[0].hour == rollups.hour_of(ok.delivered_at)
    assert (rows[0].latency_bucket, rows[0].latency_ms_sum) == (rollups.latency_bucket(ok.latency_ms), ok.latency_ms)
    assert hours() == hours_of_minutes()


def test_add_keeps_each_hour_the_sum_of_its_minutes(destination, source):
    other = destination.__class__.objects.create(name="Other", slug="other", vendor="webhook", config={"url": "x"})
    start = datetime(2026, 3, 1, 9, 58, 30, tzinfo=UTC)
    # Seconds after 09:58:30 UTC: two minutes before ten, the hour after, and the one after that.
    moments = [(0, "delivered", 40), (45, "delivered", 45), (90, "delivered", 900), (100, "failed", None)]
    moments += [(3700, "delivered", 40), (7300, "failed", None)]
    outcomes = [
        (d, start + timedelta(seconds=s), status, latency)
        for d in (destination.pk, other.pk)
        for s, status, latency in moments
    ]
    rollups.add(outcomes[:5])
    rollups.add(outcomes[5:])  # the same minutes and hours again: the upserts add
    rollups.add([])
    assert hours() == hours_of_minutes()
    nine = DeliveryHourRollup.objects.filter(hour=datetime(2026, 3, 1, 9, tzinfo=UTC))
    assert {(r.latency_bucket, r.count) for r in nine} == {(rollups.latency_bucket(45), 2)}  # 40 and 45 ms
    assert DeliveryHourRollup.objects.aggregate(n=Sum("count"))["n"] == len(outcomes)
    assert DeliveryRollup.objects.aggregate(total=Sum("latency_ms_sum")) == (
        DeliveryHourRollup.objects.aggregate(total=Sum("latency_ms_sum"))
    )


def test_rebuild_recomputes_the_hours_with_the_minutes(destination, source):
    now = timezone.now()
    for ago, latency in [(0, 10), (1, 40), (30, 40), (26 * 60, 5000)]:
        at = now - timedelta(minutes=ago)
        event = make_event(source, received_at=at - timedelta(seconds=1))
        make_delivery(destination, event, status="delivered", delivered_at=at, latency_ms=latency)
    make_delivery(destination, make_event(source), status="failed")
    DeliveryHourRollup.objects.create(destination=destination, hour=rollups.hour_of(now), status="delivered", count=99)

    written = rollups.rebuild()

    assert hours() == hours_of_minutes()
    assert DeliveryHourRollup.objects.aggregate(n=Sum("count"))["n"] == 5
    assert written == DeliveryRollup.objects.count() + DeliveryHourRollup.objects.count()


def test_rebuild_of_some_destinations_leaves_the_others_hours(destination, source):
    other = destination.__class__.objects.create(name="Other", slug="other", vendor="webhook", config={"url": "x"})
    now = timezone.now()
    rollups.add([(other.pk, now, "delivered", 80)] * 3)
    make_delivery(destination, make_event(source), status="delivered", delivered_at=now, latency_ms=70)

    rollups.rebuild([destination.pk])

    assert DeliveryHourRollup.objects.get(destination=other).count == 3
    assert DeliveryHourRollup.objects.get(destination=destination).count == 1


def test_rebuild_keeps_the_hours_whose_deliveries_retention_deleted(destination, source):
    """Hours before the oldest delivery kept stay, and so does the hour the purge cut through."""
    now = timezone.now()
    old_hour = rollups.hour_of(now - timedelta(days=60))
    DeliveryHourRollup.objects.create(destination=destination, hour=old_hour, status="delivered", count=500)
    kept = rollups.hour_of(now - timedelta(days=30)) + timedelta(minutes=40)
    DeliveryHourRollup.objects.create(destination=destination, hour=rollups.hour_of(kept), status="failed", count=7)
    make_delivery(
        destination, make_event(source, received_at=kept), status="delivered", delivered_at=kept, latency_ms=1
    )
    make_delivery(destination, make_event(source), status="delivered", delivered_at=now, latency_ms=1)

    rollups.rebuild()

    by_hour = {r.hour: r.count for r in DeliveryHourRollup.objects.all()}
    assert by_hour[old_hour] == 500  # its deliveries are gone: nothing to recompute it from
    assert by_hour[rollups.hour_of(kept)] == 7  # cut by the purge: the row add() kept is the better count
    assert by_hour[rollups.hour_of(now)] == 1


def test_the_migration_fills_the_hours_from_the_minutes_there_are(destination):
    migration = import_module("deliveries.migrations.0011_hourly_rollups")
    minute = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    for offset, count, total in [(0, 2, 100), (59, 3, 90), (60, 1, 5)]:
        DeliveryRollup.objects.create(
            destination=destination,
            minute=minute + timedelta(minutes=offset),
            status="delivered",
            latency_bucket=2,
            count=count,
            latency_ms_sum=total,
        )
    editor = SimpleNamespace(connection=connection, execute=lambda sql, params=(): connection.cursor().execute(sql))

    migration.hours_from_minutes(None, editor)

    assert hours() == {
        (destination.pk, minute, "delivered", 2): (5, 190),
        (destination.pk, minute + timedelta(hours=1), "delivered", 2): (1, 5),
    }


def test_a_replayed_delivery_gets_a_fresh_retry_deadline(destination, source):
    """An event received long ago and replayed now is retried from the replay, not failed at once."""
    old = timezone.now() - timedelta(days=2)
    replayed = held(destination, source, received_at=old, retry_from=timezone.now())
    stale = held(destination, source, received_at=old)
    record(
        destination,
        [
            sent(replayed, Result("retry", 503, "http_503", "Down")),
            sent(stale, Result("retry", 503, "http_503", "Down")),
        ],
        TIMING,
    )
    assert Delivery.objects.get(pk=replayed.pk).status == Delivery.Status.RETRYING
    assert Delivery.objects.get(pk=stale.pk).status == Delivery.Status.FAILED
    assert Attempt.objects.count() == 2


@pytest.mark.parametrize(
    ("body", "email"),
    [
        ({"type": "identify", "userId": "u1", "traits": {"email": "Ada@Example.com"}}, "ada@example.com"),
        ({"userId": "u1", "event": "X", "context": {"traits": {"email": "b@example.com"}}}, "b@example.com"),
        ({"userId": "u1", "event": "X", "properties": {"email": "c@example.com"}}, "c@example.com"),
        ({"userId": "u1", "event": "X", "context": "not an object", "properties": {"email": 7}}, ""),
    ],
)
def test_ingest_keeps_the_persons_email_to_search_by(source, body, email):
    endpoint = "identify" if body.get("type") == "identify" else "track"
    response = Client().post(
        f"/v1/{endpoint}", body, content_type="application/json", HTTP_AUTHORIZATION=basic_auth(source.write_key)
    )
    assert response.status_code in (200, 400)
    assert Event.objects.get().email == email


def test_the_migrations_make_a_marketer_group_without_the_credentials_permission():
    codenames = set(Group.objects.get(name="Marketer").permissions.values_list("codename", flat=True))
    assert {"view_event", "view_delivery", "use_event_tester", "add_replay", "change_destination"} <= codenames
    assert "manage_credentials" not in codenames
    assert not {"add_destination", "delete_destination", "change_source"} & codenames


def test_the_marketer_group_comes_back_after_a_flush_but_a_changed_one_is_left_alone():
    from django.core.management.sql import emit_post_migrate_signal

    from deliveries.pages.roles import ensure_marketer_group

    Group.objects.filter(name="Marketer").delete()
    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")  # what a flush sends afterwards
    group = Group.objects.get(name="Marketer")
    assert group.permissions.filter(codename="use_event_tester").exists()

    group.permissions.clear()  # an administrator's choice
    assert ensure_marketer_group() is False
    assert not group.permissions.exists()

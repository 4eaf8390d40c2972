"""The per-minute delivery rollups Event Delivery sums, the searchable email, a replay's fresh retry deadline
and the Marketer group the migrations make."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from deliveries.engine import rollups
from deliveries.engine.record import record
from deliveries.engine.send import Sent
from deliveries.engine.timing import Timing
from deliveries.models import Attempt, Delivery, DeliveryRollup, Event
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

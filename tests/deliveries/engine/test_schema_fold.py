"""The schema fold: accepted events counted into SchemaRollup (counts, types, last seen, cursor, idempotence, lag),
a chunk per sweep."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.db.models import Sum
from django.utils import timezone

from deliveries.engine import schema_fold
from deliveries.engine.sweep import sweep
from deliveries.models import Event, RollupCursor, SchemaRollup
from integrations.models import Source
from tests.factories import make_typed_event

pytestmark = pytest.mark.django_db

AGO = timedelta(minutes=5)  # old enough to be folded (the fold waits schema_fold.SETTLE)


def send(source: Source, kind: str = "track", name: str = "Order Completed", **fields: Any) -> Event:
    """An event as ingest stores it, received AGO unless said otherwise (old enough to be folded)."""
    fields.setdefault("at", timezone.now() - AGO)
    return make_typed_event(source, kind, name, **fields)


def counts(**filters: Any) -> dict[tuple[str, str], int]:
    """(property, value type) -> count, summed over days."""
    rows = SchemaRollup.objects.filter(**filters).values("property", "value_type").annotate(n=Sum("count"))
    return {(r["property"], r["value_type"]): r["n"] for r in rows}


def test_the_fold_counts_each_event_and_each_property_by_its_observed_type(source):
    send(source, keys={"total": 49.5, "currency": "EUR", "coupon": None, "items": [1], "gift": True, "x": {}})
    send(source, keys={"total": 12, "currency": "USD"})
    last = send(source, keys={"total": "12.00"})

    assert schema_fold.fold() == 3

    assert counts(source=source, type="track", name="Order Completed") == {
        ("", ""): 3,
        ("total", "number"): 2,
        ("total", "string"): 1,
        ("currency", "string"): 2,
        ("coupon", "null"): 1,
        ("items", "array"): 1,
        ("gift", "boolean"): 1,
        ("x", "object"): 1,
    }
    row = SchemaRollup.objects.get(source=source, property="total", value_type="string")
    assert row.last_seen == last.received_at
    assert row.day == timezone.localdate(last.received_at)


def test_identify_and_group_count_traits_page_and_screen_keep_their_names(source):
    send(source, "identify", keys={"email": "a@example.com", "age": 31})
    send(source, "group", keys={"plan": "pro"})
    send(source, "page", name="Pricing", keys={"path": "/pricing"})
    send(source, "screen", name="Home", keys={})
    send(source, "alias")

    assert schema_fold.fold() == 5

    assert counts(type="identify") == {("", ""): 1, ("email", "string"): 1, ("age", "number"): 1}
    assert counts(type="group") == {("", ""): 1, ("plan", "string"): 1}
    assert counts(type="page", name="Pricing") == {("", ""): 1, ("path", "string"): 1}
    assert counts(type="screen", name="Home") == {("", ""): 1}
    assert counts(type="alias") == {("", ""): 1}


def test_folding_twice_does_not_count_twice_and_the_cursor_keeps_the_last_id(source):
    first = send(source, keys={"total": 1})
    assert schema_fold.fold() == 1
    assert schema_fold.fold() == 0
    assert RollupCursor.objects.get(name="schema").position == first.pk

    second = send(source, keys={"total": 2})
    assert schema_fold.fold() == 1
    assert counts(type="track") == {("", ""): 2, ("total", "number"): 2}
    assert RollupCursor.objects.get(name="schema").position == second.pk


def test_the_fold_adds_to_the_rows_of_a_day_it_counted_already(source):
    at = timezone.now() - timedelta(hours=1)
    send(source, keys={"total": 1}, at=at)
    schema_fold.fold()
    later = send(source, keys={"total": 2}, at=at + timedelta(minutes=10))
    schema_fold.fold()

    row = SchemaRollup.objects.get(source=source, property="total")
    assert (row.count, row.last_seen) == (2, later.received_at)


def test_a_late_event_does_not_move_last_seen_back(source):
    recent = send(source, keys={"total": 1}, at=timezone.now() - timedelta(minutes=1))
    schema_fold.fold()
    send(source, keys={"total": 1}, at=timezone.now() - timedelta(minutes=30))  # a later id, received earlier
    schema_fold.fold()

    row = SchemaRollup.objects.get(source=source, property="total")
    assert (row.count, row.last_seen) == (2, recent.received_at)


def test_last_seen_is_the_latest_even_when_a_later_id_arrived_earlier_in_the_same_chunk(source):
    recent = send(source, keys={"total": 1}, at=timezone.now() - timedelta(minutes=1))
    send(source, keys={"total": 1}, at=timezone.now() - timedelta(minutes=30))
    other = send(source, name="Other", keys={"plan": "x"}, at=timezone.now() - timedelta(minutes=40))

    schema_fold.fold()

    assert SchemaRollup.objects.get(property="total").last_seen == recent.received_at
    assert SchemaRollup.objects.get(property="plan").last_seen == other.received_at


def test_chunks_add_up_to_the_same_counts(source):
    for total in range(7):
        send(source, keys={"total": total})

    assert schema_fold.fold(limit=2) == 7

    assert counts(type="track") == {("", ""): 7, ("total", "number"): 7}
    assert RollupCursor.objects.get(name="schema").position == Event.objects.latest("id").pk


def test_rejected_and_test_events_are_passed_over_not_counted(source):
    send(source, status="rejected", keys={"secret": 1})
    send(source, status="test", keys={"secret": 1})
    last = send(source, status="rejected")

    assert schema_fold.fold() == 0

    assert not SchemaRollup.objects.exists()
    assert RollupCursor.objects.get(name="schema").position == last.pk


def test_events_younger_than_ten_seconds_wait_and_show_as_lag(source):
    old = send(source)
    fresh = send(source, at=timezone.now())

    assert schema_fold.fold() == 1
    assert RollupCursor.objects.get(name="schema").position == old.pk
    assert schema_fold.lag() == schema_fold.Lag(1, fresh.received_at)

    Event.objects.filter(pk=fresh.pk).update(received_at=timezone.now() - timedelta(seconds=11))
    assert schema_fold.fold() == 1
    assert schema_fold.lag() == schema_fold.Lag(0, None)


def test_the_fold_stops_before_a_young_event_even_when_older_ones_follow_it(source):
    """A later id may carry an older received_at: the cursor must not jump over the young one."""
    old = send(source)
    young = send(source, at=timezone.now())
    send(source)  # a slow request: an old received_at, a later id

    assert schema_fold.fold() == 1
    assert RollupCursor.objects.get(name="schema").position == old.pk

    Event.objects.filter(pk=young.pk).update(received_at=timezone.now() - timedelta(minutes=1))
    assert schema_fold.fold() == 2


def test_a_fold_that_finds_the_cursor_moved_meanwhile_adds_nothing(source, monkeypatch):
    event = send(source, keys={"total": 1})
    tally = schema_fold.tally

    def raced(rows):  # another sweeper folds the same chunk between our read and our write
        RollupCursor.objects.filter(name="schema").update(position=event.pk)
        return tally(rows)

    monkeypatch.setattr(schema_fold, "tally", raced)
    assert schema_fold.fold() == 0
    assert not SchemaRollup.objects.exists()


def test_keys_are_capped_per_event_and_in_length(source):
    keys = {f"k{i:03d}": i for i in range(schema_fold.MAX_KEYS + 50)}
    keys["z" * 300] = "long"
    send(source, keys=keys)

    schema_fold.fold()

    props = set(SchemaRollup.objects.exclude(property="").values_list("property", flat=True))
    assert len(props) == schema_fold.MAX_KEYS
    assert "z" * 300 not in props


def test_long_keys_are_cut_to_the_column(source):
    send(source, keys={"z" * 300: "long"})
    schema_fold.fold()
    assert SchemaRollup.objects.filter(property="z" * 255).exists()


def test_a_day_is_the_local_date_of_received_at(source):
    at = datetime(2025, 3, 10, 2, 30, tzinfo=UTC)  # 22:30 the day before in New York
    send(source, at=at)
    with timezone.override("America/New_York"):
        schema_fold.fold()
    assert SchemaRollup.objects.get(property="").day == date(2025, 3, 9)


def test_the_sweeper_folds(source):
    send(source)
    assert sweep()["folded"] == 1
    assert SchemaRollup.objects.filter(property="").get().count == 1

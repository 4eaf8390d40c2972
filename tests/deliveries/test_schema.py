"""Schema: the fold from accepted events into SchemaRollup (counts, types, last seen, cursor, idempotence, lag)
and the page that reads it per source and window (names, traits, properties, type changes, who may see it)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.db.models import Sum
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from deliveries import schema
from deliveries.engine import sweep
from deliveries.models import Event, RollupCursor, SchemaRollup
from integrations.models import Source

pytestmark = pytest.mark.django_db

AGO = timedelta(minutes=5)  # old enough to be folded (the fold waits schema.SETTLE)


def send(
    source: Source,
    kind: str = "track",
    name: str = "Order Completed",
    keys: dict[str, Any] | None = None,
    at: datetime | None = None,
    status: str = "accepted",
) -> Event:
    """An event as ingest stores it: the track name in its column, page/screen names and keys in the payload."""
    at = at or timezone.now() - AGO
    message_id = str(uuid.uuid4())
    payload: dict[str, Any] = {"type": kind, "messageId": message_id, "userId": "u1"}
    if kind == "track":
        payload["event"] = name
    elif kind in ("page", "screen"):
        payload["name"] = name
    if keys is not None:
        payload[schema.KEYS_OF.get(kind, "properties")] = keys
    return Event.objects.create(
        source=source,
        message_id=message_id,
        type=kind,
        event=name if kind == "track" else "",
        user_id="u1",
        payload=payload,
        received_at=at,
        timestamp=at,
        status=status,
    )


def counts(**filters: Any) -> dict[tuple[str, str], int]:
    """(property, value type) -> count, summed over days."""
    rows = SchemaRollup.objects.filter(**filters).values("property", "value_type").annotate(n=Sum("count"))
    return {(r["property"], r["value_type"]): r["n"] for r in rows}


@pytest.fixture
def marketer(db) -> Client:
    user = User.objects.create_user("mia", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="Marketer"))
    client = Client()
    client.force_login(user)
    return client


def page(client: Client, **query: Any) -> Any:
    return client.get(reverse("admin:deliveries_event_schema"), query)


# The fold -----------------------------------------------------------------------------------------


def test_the_fold_counts_each_event_and_each_property_by_its_observed_type(source):
    send(source, keys={"total": 49.5, "currency": "EUR", "coupon": None, "items": [1], "gift": True, "x": {}})
    send(source, keys={"total": 12, "currency": "USD"})
    last = send(source, keys={"total": "12.00"})

    assert schema.fold() == 3

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

    assert schema.fold() == 5

    assert counts(type="identify") == {("", ""): 1, ("email", "string"): 1, ("age", "number"): 1}
    assert counts(type="group") == {("", ""): 1, ("plan", "string"): 1}
    assert counts(type="page", name="Pricing") == {("", ""): 1, ("path", "string"): 1}
    assert counts(type="screen", name="Home") == {("", ""): 1}
    assert counts(type="alias") == {("", ""): 1}


def test_folding_twice_does_not_count_twice_and_the_cursor_keeps_the_last_id(source):
    first = send(source, keys={"total": 1})
    assert schema.fold() == 1
    assert schema.fold() == 0
    assert RollupCursor.objects.get(name="schema").position == first.pk

    second = send(source, keys={"total": 2})
    assert schema.fold() == 1
    assert counts(type="track") == {("", ""): 2, ("total", "number"): 2}
    assert RollupCursor.objects.get(name="schema").position == second.pk


def test_the_fold_adds_to_the_rows_of_a_day_it_counted_already(source):
    at = timezone.now() - timedelta(hours=1)
    send(source, keys={"total": 1}, at=at)
    schema.fold()
    later = send(source, keys={"total": 2}, at=at + timedelta(minutes=10))
    schema.fold()

    row = SchemaRollup.objects.get(source=source, property="total")
    assert (row.count, row.last_seen) == (2, later.received_at)


def test_a_late_event_does_not_move_last_seen_back(source):
    recent = send(source, keys={"total": 1}, at=timezone.now() - timedelta(minutes=1))
    schema.fold()
    send(source, keys={"total": 1}, at=timezone.now() - timedelta(minutes=30))  # a later id, received earlier
    schema.fold()

    row = SchemaRollup.objects.get(source=source, property="total")
    assert (row.count, row.last_seen) == (2, recent.received_at)


def test_last_seen_is_the_latest_even_when_a_later_id_arrived_earlier_in_the_same_chunk(source):
    recent = send(source, keys={"total": 1}, at=timezone.now() - timedelta(minutes=1))
    send(source, keys={"total": 1}, at=timezone.now() - timedelta(minutes=30))
    other = send(source, name="Other", keys={"plan": "x"}, at=timezone.now() - timedelta(minutes=40))

    schema.fold()

    assert SchemaRollup.objects.get(property="total").last_seen == recent.received_at
    assert SchemaRollup.objects.get(property="plan").last_seen == other.received_at


def test_chunks_add_up_to_the_same_counts(source):
    for total in range(7):
        send(source, keys={"total": total})

    assert schema.fold(limit=2) == 7

    assert counts(type="track") == {("", ""): 7, ("total", "number"): 7}
    assert RollupCursor.objects.get(name="schema").position == Event.objects.latest("id").pk


def test_rejected_and_test_events_are_passed_over_not_counted(source):
    send(source, status="rejected", keys={"secret": 1})
    send(source, status="test", keys={"secret": 1})
    last = send(source, status="rejected")

    assert schema.fold() == 0

    assert not SchemaRollup.objects.exists()
    assert RollupCursor.objects.get(name="schema").position == last.pk


def test_events_younger_than_ten_seconds_wait_and_show_as_lag(source):
    old = send(source)
    fresh = send(source, at=timezone.now())

    assert schema.fold() == 1
    assert RollupCursor.objects.get(name="schema").position == old.pk
    assert schema.lag() == schema.Lag(1, fresh.received_at)

    Event.objects.filter(pk=fresh.pk).update(received_at=timezone.now() - timedelta(seconds=11))
    assert schema.fold() == 1
    assert schema.lag() == schema.Lag(0, None)


def test_the_fold_stops_before_a_young_event_even_when_older_ones_follow_it(source):
    """A later id may carry an older received_at: the cursor must not jump over the young one."""
    old = send(source)
    young = send(source, at=timezone.now())
    send(source)  # a slow request: an old received_at, a later id

    assert schema.fold() == 1
    assert RollupCursor.objects.get(name="schema").position == old.pk

    Event.objects.filter(pk=young.pk).update(received_at=timezone.now() - timedelta(minutes=1))
    assert schema.fold() == 2


def test_a_fold_that_finds_the_cursor_moved_meanwhile_adds_nothing(source, monkeypatch):
    event = send(source, keys={"total": 1})
    tally = schema.tally

    def raced(rows):  # another sweeper folds the same chunk between our read and our write
        RollupCursor.objects.filter(name="schema").update(position=event.pk)
        return tally(rows)

    monkeypatch.setattr(schema, "tally", raced)
    assert schema.fold() == 0
    assert not SchemaRollup.objects.exists()


def test_keys_are_capped_per_event_and_in_length(source):
    keys = {f"k{i:03d}": i for i in range(schema.MAX_KEYS + 50)}
    keys["z" * 300] = "long"
    send(source, keys=keys)

    schema.fold()

    props = set(SchemaRollup.objects.exclude(property="").values_list("property", flat=True))
    assert len(props) == schema.MAX_KEYS
    assert "z" * 300 not in props


def test_long_keys_are_cut_to_the_column(source):
    send(source, keys={"z" * 300: "long"})
    schema.fold()
    assert SchemaRollup.objects.filter(property="z" * 255).exists()


def test_a_day_is_the_local_date_of_received_at(source):
    at = datetime(2025, 3, 10, 2, 30, tzinfo=UTC)  # 22:30 the day before in New York
    send(source, at=at)
    with timezone.override("America/New_York"):
        schema.fold()
    assert SchemaRollup.objects.get(property="").day == date(2025, 3, 9)


def test_the_sweeper_folds(source):
    send(source)
    assert sweep()["folded"] == 1
    assert SchemaRollup.objects.filter(property="").get().count == 1


# The page -----------------------------------------------------------------------------------------


def seed(source: Source) -> None:
    now = timezone.now()
    for _ in range(3):
        send(source, keys={"total": 10, "currency": "EUR"})
    send(source, keys={"total": "10.00"}, at=now - timedelta(minutes=1))  # the newest sends a string
    send(source, name="Signed Up", keys={"plan": "pro"}, at=now - timedelta(days=3))
    send(source, name="Old Event", at=now - timedelta(days=20))
    send(source, "identify", keys={"email": "a@example.com"})
    send(source, "identify", keys={"email": "b@example.com", "age": 3})
    send(source, "page", name="Pricing", keys={"path": "/pricing"})
    schema.fold()


def test_the_page_lists_the_names_of_the_window_with_counts(admin_client, source):
    seed(source)

    week = page(admin_client, source=source.pk, window="7d")
    assert week.status_code == 200
    names = {t["type"]: {r["name"]: r["n"] for r in t["rows"]} for t in week.context["tables"]}
    assert names == {"track": {"Order Completed": 4, "Signed Up": 1}, "page": {"Pricing": 1}, "screen": {}}
    assert week.context["totals"] == {"track": 5, "identify": 2, "page": 1}

    day = page(admin_client, source=source.pk, window="24h")
    assert {r["name"] for r in day.context["tables"][0]["rows"]} == {"Order Completed"}

    month = page(admin_client, source=source.pk, window="30d")
    assert {r["name"] for r in month.context["tables"][0]["rows"]} == {"Order Completed", "Signed Up", "Old Event"}
    assert len(month.context["chart"]["labels"]) == 30
    assert sum(sum(s["counts"]) for s in month.context["chart"]["series"]) == 9


def test_the_page_defaults_to_the_first_source_and_seven_days(admin_client, source):
    seed(source)
    response = page(admin_client)
    assert response.context["choice"].source == source
    assert response.context["choice"].window.key == "7d"
    assert "Order Completed" in response.content.decode()


def test_identify_traits_show_presence_and_types(admin_client, source):
    seed(source)
    response = page(admin_client, source=source.pk)
    identify = response.context["traits"][0]
    props = {p["property"]: p for p in identify["props"]}
    assert identify["events"] == 2
    assert props["email"]["presence"] == 100.0
    assert props["age"]["presence"] == 50.0
    assert [t["type"] for t in props["age"]["types"]] == ["number"]


def test_an_events_properties_show_presence_and_flag_a_type_change(admin_client, source):
    seed(source)
    url = reverse("admin:deliveries_event_schema_properties")
    response = admin_client.get(url, {"source": source.pk, "window": "7d", "type": "track", "name": "Order Completed"})
    assert response.status_code == 200
    props = {p["property"]: p for p in response.context["selected"]["props"]}
    assert props["total"]["presence"] == 100.0
    assert props["currency"]["presence"] == 75.0
    assert [(t["type"], t["count"]) for t in props["total"]["types"]] == [("string", 1), ("number", 3)]
    assert props["total"]["change"] == "number → string"
    assert "currency" not in {p for p, v in props.items() if v.get("change")}
    html = response.content.decode()
    assert "type changed: number → string" in html
    assert "75 %" in html


def test_the_page_opens_an_event_named_in_the_link(admin_client, source):
    seed(source)
    response = page(admin_client, source=source.pk, type="track", name="Order Completed")
    assert response.context["selected"]["events"] == 4
    assert "type changed: number → string" in response.content.decode()


def test_the_names_link_to_the_debugger_filtered_by_that_name(admin_client, source):
    seed(source)
    response = page(admin_client, source=source.pk)
    row = response.context["tables"][0]["rows"][0]
    assert row["debugger_url"].startswith(reverse("admin:deliveries_event_debugger"))
    assert f"source={source.pk}" in row["debugger_url"]
    assert "event=Order+Completed" in row["debugger_url"]


def test_the_page_says_how_many_events_are_not_counted_yet(admin_client, source):
    seed(source)
    send(source, at=timezone.now())
    response = page(admin_client, source=source.pk)
    assert "1 newer event (all sources) is not counted yet" in response.content.decode()


def test_the_page_reads_the_rollup_in_a_few_queries_and_never_the_payloads(admin_client, source):
    seed(source)
    with CaptureQueriesContext(connection) as queries:
        assert page(admin_client, source=source.pk, type="track", name="Order Completed").status_code == 200
    event_table = Event._meta.db_table
    payload_reads = [q["sql"] for q in queries.captured_queries if event_table in q["sql"] and "payload" in q["sql"]]
    assert payload_reads == []
    assert len(queries.captured_queries) <= 20


def test_the_page_without_sources_says_what_to_do(admin_client):
    assert "No sources yet" in page(admin_client).content.decode()


def test_a_marketer_sees_the_page_without_the_write_key(marketer, source):
    seed(source)
    response = page(marketer, source=source.pk)
    assert response.status_code == 200
    assert source.write_key not in response.content.decode()


def test_staff_without_view_event_get_403(source):
    user = User.objects.create_user("other", password="pw", is_staff=True)
    client = Client()
    client.force_login(user)
    assert page(client).status_code == 403
    assert client.get(reverse("admin:deliveries_event_schema_properties")).status_code == 403

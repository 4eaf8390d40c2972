"""The ingest fast paths keep their shape: index-backed dedupe, cached look-ups, a write lock for inserts only."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import orjson
import pytest
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from deliveries.ingest import lookups, normalisation, rows, writes
from deliveries.ingest import write_turn as turn
from deliveries.ingest.normalisation import iso, normalise
from deliveries.ingest.store import IngestResult, store
from deliveries.models import Delivery, Event
from integrations.models import Destination, Source
from tests.conftest import basic_auth

pytestmark = pytest.mark.django_db

WRITE_KEY = "wk_test_website"


def post(client, endpoint: str, body: Any, key: str = WRITE_KEY):
    return client.post(
        f"/v1/{endpoint}", data=orjson.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=basic_auth(key)
    )


def track(message_id: str) -> dict[str, Any]:
    return {"type": "track", "userId": "u1", "event": "Order Completed", "messageId": message_id}


def dedupe_queries(queries: list[dict[str, str]]) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].startswith('SELECT "message_id" FROM "deliveries_event"')]


def test_the_batch_dedupe_query_has_no_order_by_and_probes_the_unique_index(client, source):
    post(client, "batch", {"batch": [track(f"old-{n}") for n in range(50)]})

    with CaptureQueriesContext(connection) as captured:
        response = post(client, "batch", {"batch": [track("old-1"), track("new-1"), track("new-2")]})

    assert response.json() == {"success": True, "duplicates": 1}
    [sql] = dedupe_queries(captured.captured_queries)
    # Event.Meta.ordering would make SQLite walk every row of the source in time order instead.
    assert "ORDER BY" not in sql
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN QUERY PLAN " + sql)
            plan = " ".join(str(row[-1]) for row in cursor.fetchall())
        assert "event_unique_message_per_source" in plan
        assert "event_source_received" not in plan
    assert Event.objects.filter(status=Event.Status.ACCEPTED).count() == 52


# The per-process cache of sources and destinations ----------------------------------------------------


@pytest.fixture(autouse=True)
def fresh_cache():
    lookups.forget()
    yield
    lookups.forget()


@pytest.fixture
def clock(monkeypatch):
    """Move the cache's clock without waiting."""
    now = [1000.0]
    monkeypatch.setattr(lookups.time, "monotonic", lambda: now[0])
    return now


def make_destination(source: Source, slug: str = "hook", **fields: Any) -> Destination:
    fields.setdefault("paused", True)  # routed and kept, never sent: these tests look at the outbox rows
    destination = Destination.objects.create(
        name=slug.title(),
        slug=slug,
        vendor="webhook",
        config={"url": "http://127.0.0.1:9/hook"},
        credentials={"signing_secret": "s3cret"},
        **fields,
    )
    destination.sources.add(source)
    return destination


def lookup_queries(queries: list[dict[str, str]]) -> list[str]:
    """The source by write key and the destinations by source (the engine's kick reads a destination by id)."""
    return [
        q["sql"]
        for q in queries
        if q["sql"].startswith('SELECT "integrations_source"') or '"integrations_destination_sources"' in q["sql"]
    ]


def outbox() -> list[tuple[str, str, str]]:
    return [
        (d.event.message_id, d.destination.slug, d.status)
        for d in Delivery.objects.select_related("event", "destination").order_by("event_id", "destination__slug")
    ]


def test_a_second_request_reads_neither_the_source_nor_its_destinations(client, source):
    make_destination(source)
    post(client, "track", track("m1"))

    with CaptureQueriesContext(connection) as captured:
        response = post(client, "batch", {"batch": [track("m2"), track("m3")]})

    assert response.json() == {"success": True}
    assert lookup_queries(captured.captured_queries) == []
    assert [(m, slug) for m, slug, _ in outbox()] == [("m1", "hook"), ("m2", "hook"), ("m3", "hook")]


def test_the_cache_keeps_no_credentials(source):
    make_destination(source)

    [destination] = lookups.destinations_of(source)

    assert "credentials" in destination.get_deferred_fields()


@pytest.mark.parametrize("in_body", [False, True], ids=["header", "body"])
def test_a_source_disabled_in_this_process_is_refused_at_once(client, source, in_body):
    post(client, "track", track("m1"))
    source.enabled = False
    source.save()
    body = {**track("m2"), "writeKey": WRITE_KEY} if in_body else track("m2")

    response = client.post(
        "/v1/track",
        data=orjson.dumps(body),
        content_type="application/json",
        **({} if in_body else {"HTTP_AUTHORIZATION": basic_auth(WRITE_KEY)}),
    )

    assert response.status_code == 401
    assert response.json()["code"] == "source_disabled"


def test_a_source_disabled_elsewhere_is_refused_once_the_cache_time_has_passed(client, source, clock, settings):
    settings.INGEST_CACHE_SECONDS = 5
    post(client, "track", track("m1"))
    Source.objects.filter(pk=source.pk).update(enabled=False)  # as another process would: no signal here

    clock[0] += 4.9
    within = post(client, "track", track("m2"))
    clock[0] += 0.2
    after = post(client, "track", track("m3"))

    assert within.status_code == 200
    assert after.status_code == 401
    assert after.json()["code"] == "source_disabled"


def test_a_write_key_unknown_a_moment_ago_works_as_soon_as_its_source_is_saved(client, db):
    refused = post(client, "track", track("m1"))
    Source.objects.create(name="Website", slug="website", write_key=WRITE_KEY)

    accepted = post(client, "track", track("m1"))

    assert refused.status_code == 401
    assert accepted.status_code == 200


def test_a_destination_added_or_removed_in_this_process_is_routed_at_once(client, source):
    post(client, "track", track("m1"))
    hook = make_destination(source, "hook")
    post(client, "track", track("m2"))
    hook.sources.remove(source)
    post(client, "track", track("m3"))

    assert [(m, slug) for m, slug, _ in outbox()] == [("m2", "hook")]


def test_a_destination_disabled_elsewhere_gets_nothing_once_the_cache_time_has_passed(client, source, clock, settings):
    settings.INGEST_CACHE_SECONDS = 5
    hook = make_destination(source)
    post(client, "track", track("m1"))
    Destination.objects.filter(pk=hook.pk).update(enabled=False)  # no signal, as from another process

    clock[0] += 4.9
    post(client, "track", track("m2"))
    clock[0] += 0.2
    post(client, "track", track("m3"))

    assert outbox() == [("m1", "hook", "pending"), ("m2", "hook", "pending"), ("m3", "hook", "filtered")]


def test_a_destination_edited_in_this_process_is_routed_by_its_new_settings_at_once(client, source):
    hook = make_destination(source)
    post(client, "track", track("m1"))
    hook.filter = {"types": ["identify"]}
    hook.save()

    post(client, "track", track("m2"))

    assert outbox() == [("m1", "hook", "pending"), ("m2", "hook", "filtered")]


def test_a_cache_time_of_zero_reads_the_database_every_time(client, source, settings):
    settings.INGEST_CACHE_SECONDS = 0
    post(client, "track", track("m1"))

    with CaptureQueriesContext(connection) as captured:
        post(client, "track", track("m2"))

    assert len(lookup_queries(captured.captured_queries)) == 2


# Rows written with plain INSERTs --------------------------------------------------------------------------


def test_an_event_reads_back_through_the_orm_as_it_was_normalised(client, source):
    body = {
        **track("m1"),
        "properties": {"naïve": "café ☕", "nested": {"list": [1, 2.5, None, True]}, "big": 2**63},
        "timestamp": "2025-06-01T12:00:00.123+02:00",
        "sentAt": "2025-06-01T12:00:01.000+02:00",
    }

    response = post(client, "track", body)

    [event] = Event.objects.all()
    assert response.json() == {"success": True}
    assert event.payload["properties"] == body["properties"]
    assert event.payload["originalTimestamp"] == "2025-06-01T10:00:00.123Z"
    assert event.timestamp == event.received_at - timedelta(milliseconds=877)
    assert iso(event.received_at) == event.payload["receivedAt"]
    assert (event.source_id, event.type, event.event, event.user_id, event.anonymous_id) == (
        source.pk,
        "track",
        "Order Completed",
        "u1",
        "",
    )
    assert (event.status, event.reject_reason) == ("accepted", "")


def test_a_rejected_item_is_stored_with_its_reason_and_excerpt(client, source):
    response = post(client, "batch", {"batch": [track("m1"), {"type": "track", "userId": "u1", "messageId": "m2"}]})

    assert response.json()["accepted"] == 1
    rejected = Event.objects.get(status=Event.Status.REJECTED)
    assert (rejected.message_id, rejected.type, rejected.user_id) == ("m2", "track", "u1")
    assert rejected.reject_reason.startswith("missing_field: ")
    assert rejected.payload == {"type": "track", "userId": "u1", "messageId": "m2"}
    assert rejected.received_at == rejected.timestamp


def test_outbox_rows_get_the_model_defaults_for_fields_ingest_does_not_set(client, source):
    make_destination(source)

    post(client, "track", track("m1"))

    [delivery] = Delivery.objects.all()
    assert (delivery.attempts, delivery.lease_expires_at, delivery.hint, delivery.is_test) == (0, None, "", False)
    assert (delivery.delivered_at, delivery.latency_ms) == (None, None)
    assert delivery.created_at == delivery.next_attempt_at == delivery.updated_at == delivery.event.received_at


def test_a_batch_split_over_several_statements_pairs_every_outbox_row_with_its_event(client, source, monkeypatch):
    monkeypatch.setattr(rows, "MAX_ROWS_PER_INSERT", 3)
    make_destination(source, "a")
    make_destination(source, "b", filter={"events": ["Other"]})
    batch = [track(f"m{n}") for n in range(7)]

    response = post(client, "batch", {"batch": batch})

    assert response.json() == {"success": True}
    expected = [(f"m{n}", slug, status) for n in range(7) for slug, status in (("a", "pending"), ("b", "filtered"))]
    assert outbox() == expected
    assert list(Event.objects.order_by("id").values_list("message_id", flat=True)) == [f"m{n}" for n in range(7)]


def test_a_batch_looks_up_before_its_transaction_which_holds_only_inserts(client, source):
    make_destination(source)
    post(client, "track", track("m0"))

    with CaptureQueriesContext(connection) as captured:
        post(client, "batch", {"batch": [track("m0"), track("m1"), {"type": "track", "messageId": "bad"}]})

    sql = [q["sql"] for q in captured.captured_queries]
    begin = next(i for i, q in enumerate(sql) if q.startswith(("BEGIN", "SAVEPOINT")))
    end = next(i for i, q in enumerate(sql) if q.startswith(("COMMIT", "RELEASE SAVEPOINT")))
    assert dedupe_queries(captured.captured_queries[:begin])
    assert [q.split(" (")[0] for q in sql[begin + 1 : end]] == [
        'INSERT INTO "deliveries_event"',
        'INSERT INTO "deliveries_delivery"',
        'INSERT INTO "deliveries_event"',
    ]


def test_a_payload_orjson_cannot_write_is_stored_by_djangos_encoder(source):
    received_at = timezone.now().replace(microsecond=0)
    payload = normalise({**track("m1"), "properties": {"huge": 2**70}}, "track", received_at)

    result = store(source, [payload], [], received_at)

    [event] = Event.objects.all()
    assert result.accepted == ["m1"]
    assert event.payload["properties"] == {"huge": 2**70}


# Taking turns at SQLite's write lock ---------------------------------------------------------------------


def lock_file() -> str:
    return f"{connection.settings_dict['NAME']}-ingest.lock"


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite only: PostgreSQL has no single writer")
@pytest.mark.django_db(transaction=True)
def test_ingest_transactions_wait_for_another_process_holding_the_turn(client, source):
    post(client, "track", track("m0"))  # creates the lock file
    release = multiprocessing.get_context("fork").Event()
    holding = multiprocessing.get_context("fork").Event()

    def other_process() -> None:
        fd = os.open(lock_file(), os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)
        holding.set()
        release.wait(10)
        fcntl.flock(fd, fcntl.LOCK_UN)

    child = multiprocessing.get_context("fork").Process(target=other_process)
    child.start()
    try:
        assert holding.wait(10)
        threading.Timer(0.3, release.set).start()
        started = time.monotonic()
        response = post(client, "track", track("m1"))
        waited = time.monotonic() - started
    finally:
        release.set()
        child.join(10)

    assert response.json() == {"success": True}
    assert waited >= 0.25
    assert Event.objects.filter(message_id="m1").exists()


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite only: PostgreSQL has no single writer")
@pytest.mark.django_db(transaction=True)
def test_threads_of_a_process_write_one_group_at_a_time_and_each_request_is_answered(source, monkeypatch):
    real = turn.write_together
    inside: list[int] = []
    overlaps: list[int] = []
    groups: list[int] = []

    def slow_write_together(conn, group):
        inside.append(1)
        overlaps.append(len(inside))
        groups.append(len(group))
        time.sleep(0.05)  # the others queue meanwhile
        real(conn, group)
        inside.pop()

    monkeypatch.setattr(turn, "write_together", slow_write_together)
    results: dict[int, IngestResult] = {}

    def request(n: int) -> None:
        received_at = timezone.now()
        results[n] = store(source, [normalise(track(f"m{n}"), "track", received_at)], [], received_at)
        connection.close()

    threads = [threading.Thread(target=request, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert set(overlaps) == {1}
    assert sum(groups) == 6
    assert len(groups) < 6  # requests that queued behind a turn were written together
    assert {n: r.accepted for n, r in results.items()} == {n: [f"m{n}"] for n in range(6)}
    assert sorted(Event.objects.values_list("message_id", flat=True)) == [f"m{n}" for n in range(6)]


def writes_of(source: Source, *bodies: list[dict[str, Any]], monkeypatch) -> list[writes.Write]:
    """What store() would hand to the write turn for each body (a list of events), without writing it."""
    captured: list[writes.Write] = []
    monkeypatch.setattr(turn.write_turn, "write", lambda conn, write: captured.append(write))
    for items in bodies:
        received_at = timezone.now()
        store(source, [normalise(item, item["type"], received_at) for item in items], [], received_at)
    monkeypatch.undo()
    return captured


def test_a_messageid_two_requests_of_a_group_bring_is_stored_once(source, monkeypatch):
    make_destination(source)
    first, second = writes_of(source, [track("m1"), track("m2")], [track("m2"), track("m3")], monkeypatch=monkeypatch)

    writes.write_together(connection, [first, second])

    assert (first.done, first.error, first.fresh) == (True, None, ["m1", "m2"])
    assert (second.done, second.error, second.fresh) == (True, None, ["m3"])
    assert outbox() == [("m1", "hook", "pending"), ("m2", "hook", "pending"), ("m3", "hook", "pending")]


def test_a_group_with_a_stored_messageid_is_written_request_by_request(client, source, monkeypatch):
    make_destination(source)
    post(client, "track", track("m1"))
    first, second, third = writes_of(
        source, [track("m0")], [track("m1")], [track("m2"), track("m3")], monkeypatch=monkeypatch
    )

    writes.write_together(connection, [first, second, third])

    assert [(w.done, w.error, w.fresh) for w in (first, second, third)] == [
        (True, None, ["m0"]),
        (True, None, []),
        (True, None, ["m2", "m3"]),
    ]
    assert [m for m, _, _ in outbox()] == ["m1", "m0", "m2", "m3"]
    assert [len(w.outbox) for w in (first, second, third)] == [1, 0, 2]


def test_every_request_of_a_group_gets_the_error_that_stopped_it(source, monkeypatch):
    first, second = writes_of(source, [track("m1")], [track("m2")], monkeypatch=monkeypatch)

    def broken(conn, write):
        raise OperationalError("disk I/O error")

    monkeypatch.setattr(writes, "insert_rows", broken)
    writes.write_together(connection, [first, second])

    assert [(w.done, type(w.error)) for w in (first, second)] == [(True, OperationalError), (True, OperationalError)]


def test_no_turn_is_taken_inside_a_callers_transaction(source):
    # pytest-django runs this test inside a transaction: a turn held elsewhere must not block it.
    received_at = timezone.now()
    with turn.write_turn._thread_lock:
        started = time.monotonic()
        result = store(source, [normalise(track("m1"), "track", received_at)], [], received_at)
    assert time.monotonic() - started < 1
    assert result.accepted == ["m1"]


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite only: PostgreSQL has no single writer")
@pytest.mark.django_db(transaction=True)
def test_an_ingesting_connection_checkpoints_after_its_turn_not_inside_the_commit(client, source, monkeypatch):
    monkeypatch.setattr(turn, "CHECKPOINT_PAGES", 20)  # one event ~12 pages of log: after the second request
    monkeypatch.setattr(turn.write_turn, "_pages", 0)

    with CaptureQueriesContext(connection) as captured:
        post(client, "track", track("m1"))
        post(client, "batch", {"batch": [track("m2"), track("m3")]})

    sql = [q["sql"] for q in captured.captured_queries]
    assert sql.count("PRAGMA wal_checkpoint(PASSIVE)") == 1
    assert sql.index("PRAGMA wal_checkpoint(PASSIVE)") > max(i for i, q in enumerate(sql) if q == "COMMIT")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_autocheckpoint")
        assert cursor.fetchone() == (0,)
    assert Event.objects.count() == 3


# messageIds the hub assigns --------------------------------------------------------------------------------


def test_assigned_message_ids_are_uuid7_rising_with_time(client, source, monkeypatch):
    clock = [1_750_000_000_000_000_000]
    monkeypatch.setattr(normalisation.time, "time_ns", lambda: clock[0])
    first = normalisation.new_message_id()
    clock[0] += 1_000_000  # a millisecond later
    later = [normalisation.new_message_id() for _ in range(50)]

    assert all(uuid.UUID(m).version == 7 and uuid.UUID(m).variant == uuid.RFC_4122 for m in [first, *later])
    assert int(first.replace("-", "")[:12], 16) == 1_750_000_000_000
    assert all(m > first for m in later)
    assert len(set(later)) == 50


def test_an_event_without_a_message_id_gets_one_the_response_does_not_change(client, source):
    response = post(client, "track", {"type": "track", "userId": "u1", "event": "Signed Up"})

    [event] = Event.objects.all()
    assert response.json() == {"success": True}
    assert uuid.UUID(event.message_id).version == 7
    assert event.payload["messageId"] == event.message_id

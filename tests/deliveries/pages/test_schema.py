"""The Schema page: what a source sent per window, read from the rollup (names, traits, properties, type changes),
and who may see it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from deliveries.engine.schema_fold import fold
from deliveries.models import Event
from integrations.models import Source
from tests.factories import make_typed_event

pytestmark = pytest.mark.django_db

AGO = timedelta(minutes=5)  # old enough to be folded


def send(source: Source, kind: str = "track", name: str = "Order Completed", **fields: Any) -> Event:
    """An event as ingest stores it, received AGO unless said otherwise (old enough to be folded)."""
    fields.setdefault("at", timezone.now() - AGO)
    return make_typed_event(source, kind, name, **fields)


def page(client: Client, **query: Any) -> Any:
    return client.get(reverse("admin:deliveries_event_schema"), query)


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
    fold()


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


def test_a_marketer_sees_the_page_without_the_write_key(marketer_client, source):
    seed(source)
    response = page(marketer_client, source=source.pk)
    assert response.status_code == 200
    assert source.write_key not in response.content.decode()


def test_staff_without_view_event_get_403(source):
    user = User.objects.create_user("other", password="pw", is_staff=True)
    client = Client()
    client.force_login(user)
    assert page(client).status_code == 403
    assert client.get(reverse("admin:deliveries_event_schema_properties")).status_code == 403

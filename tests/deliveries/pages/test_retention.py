"""The retention policy's admin page (superusers only: one form, blank = the default, bad values refused) and the
dashboard's database size, oldest event kept and retention in force."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from deliveries.models import RetentionPolicy
from tests.factories import make_event

pytestmark = pytest.mark.django_db

POLICY = reverse("admin:deliveries_retentionpolicy_changelist")
INDEX = reverse("admin:index")


def form(**days) -> dict[str, str]:
    kinds = ["events", "deliveries", "exchange_bodies", "test_sends", "rejected_events"]
    data = {f"{kind}_days": "" for kind in [*kinds, "minute_rollups", "hourly_rollups"]}
    data.update({f"{kind}_days": str(value) for kind, value in days.items()})
    return data


def test_a_superuser_opens_the_one_policy_and_sees_the_defaults_in_force(admin_client):
    response = admin_client.get(POLICY, follow=True)

    assert response.redirect_chain[-1][0] == reverse("admin:deliveries_retentionpolicy_change", args=[1])
    html = response.content.decode()
    assert "Blank: the default, 30 days (CDPHUB_RETENTION_EVENTS_DAYS). At least 1." in html
    assert "Blank: the default, 1 day (CDPHUB_RETENTION_TEST_SENDS_DAYS). At least 1." in html
    assert "<div>Events: <b>30 days</b> (default)</div>" in html
    assert "<div>Request and response bodies of attempts (a summary is kept): <b>14 days</b> (default)</div>" in html
    assert "Add retention policy" not in html
    assert RetentionPolicy.objects.count() == 1


def test_a_superuser_overrides_one_kind_and_the_rest_keep_their_defaults(admin_client):
    url = reverse("admin:deliveries_retentionpolicy_change", args=[1])
    response = admin_client.post(url, form(events=90, test_sends=2), follow=True)

    assert "Retention saved" in response.content.decode()
    assert "<div>Events: <b>90 days</b></div>" in response.content.decode()
    days = RetentionPolicy.in_force()
    assert (days["events"], days["test_sends"], days["deliveries"]) == (90, 2, 30)


@pytest.mark.parametrize("bad", ["0", "-5"])
def test_zero_or_negative_days_are_refused_with_a_clear_message(admin_client, bad):
    url = reverse("admin:deliveries_retentionpolicy_change", args=[1])
    response = admin_client.post(url, form(deliveries=bad))

    assert response.status_code == 200  # the form again, with the error
    html = response.content.decode()
    assert "Keep rows at least 1 day (leave blank for the default)." in html or "greater than or equal to 0" in html
    assert RetentionPolicy.in_force()["deliveries"] == 30


def test_a_marketer_cannot_see_or_change_the_policy(marketer_client):
    assert marketer_client.get(POLICY).status_code == 403
    url = reverse("admin:deliveries_retentionpolicy_change", args=[1])
    assert marketer_client.post(url, form(events=1)).status_code == 403
    assert RetentionPolicy.in_force()["events"] == 30
    assert "Retention policy" not in marketer_client.get(INDEX).content.decode()


def test_the_dashboard_shows_the_database_size_the_oldest_event_and_the_retention(admin_client, source):
    oldest = timezone.now() - timedelta(days=12)
    make_event(source, received_at=oldest)
    make_event(source)
    RetentionPolicy.objects.create(deliveries_days=45)

    response = admin_client.get(INDEX)

    storage = response.context["dashboard"]["storage"]
    assert storage["oldest_event"] == oldest
    assert storage["bytes"] > 0
    assert (storage["events_days"], storage["deliveries_days"]) == (30, 45)
    html = response.content.decode()
    assert "events kept 30 d, deliveries 45 d" in html
    assert f'<a href="{POLICY}">Change retention</a>' in html


def test_the_database_size_is_read_from_the_database_without_counting_rows(admin_client, source):
    from deliveries.pages.dashboard import database_size

    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":  # its pages, and the -wal file beside it
            cursor.execute("PRAGMA page_count")
            pages = cursor.fetchone()[0]
            cursor.execute("PRAGMA page_size")
            assert database_size() >= pages * cursor.fetchone()[0]
        else:
            cursor.execute("SELECT pg_database_size(current_database())")
            assert database_size() == pytest.approx(cursor.fetchone()[0], rel=0.1)
    with CaptureQueriesContext(connection) as queries:
        admin_client.get(INDEX)
    [oldest] = [q["sql"] for q in queries.captured_queries if "ORDER BY 1 ASC LIMIT 1" in q["sql"]]
    assert oldest.startswith('SELECT "deliveries_event"."received_at"')
    if connection.vendor == "sqlite":  # PostgreSQL's plan for a table of a few rows says nothing of a big one
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN QUERY PLAN {oldest}")
            plan = " ".join(str(row[-1]) for row in cursor.fetchall())
        assert "INDEX event_received" in plan, plan  # one seek on the index, whatever the table's size
        assert "TEMP B-TREE" not in plan


def test_a_marketer_sees_the_size_and_the_retention_but_no_link_to_change_it(marketer_client, source):
    make_event(source)
    html = marketer_client.get(INDEX).content.decode()
    assert 'id="db-storage"' in html
    assert "events kept 30 d" in html
    assert "Change retention" not in html

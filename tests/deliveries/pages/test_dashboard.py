"""The admin index's dashboard: events today, the delivery success rate, what waits, and the destinations with
problems, each linking to its Event Delivery page; shown only to those who may see events or deliveries."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from deliveries.engine import rollups
from deliveries.models import DeliveryRollup, Event
from deliveries.pages import dashboard
from deliveries.pages.dashboard import local_midnight
from integrations.models import Destination
from tests.factories import make_delivery, make_event

pytestmark = pytest.mark.django_db

SECRET = "sk-live-dashboard-never-shown"
INDEX = reverse("admin:index")


def hook(slug: str, **fields) -> Destination:
    fields.setdefault("name", slug.replace("-", " ").title())
    return Destination.objects.create(
        slug=slug,
        vendor="webhook",
        config={"url": "https://hooks.example.com/in"},
        credentials={"token": SECRET},
        **fields,
    )


def event_delivery_url(destination: Destination) -> str:
    return reverse("admin:deliveries_delivery_event_delivery", args=[destination.pk]) + "?window=24h"


def since_midnight(minutes: int) -> datetime:
    """A moment today, `minutes` after local midnight but never in the future."""
    return min(local_midnight() + timedelta(minutes=minutes), timezone.now())


def test_it_counts_todays_events_and_deliveries(admin_client, source):
    good = hook("good")
    for _ in range(3):
        make_event(source, received_at=since_midnight(1))
    make_event(source, received_at=local_midnight() - timedelta(minutes=1))  # yesterday
    make_event(source, received_at=since_midnight(1), status=Event.Status.REJECTED, reject_reason="no type")
    now = timezone.now()
    rollups.add([(good.pk, now, "delivered", 90)] * 9 + [(good.pk, now, "failed", None)])
    rollups.add([(good.pk, local_midnight() - timedelta(minutes=5), "failed", None)] * 5)  # yesterday
    make_delivery(good, make_event(source), status="pending")
    make_delivery(good, make_event(source), status="retrying")
    make_delivery(good, make_event(source), status="failed")

    board = admin_client.get(INDEX).context["dashboard"]
    assert board["events_today"] == 3 + 3  # the three above and the deliveries' events
    assert board["rejected_today"] == 1
    assert (board["delivered_today"], board["failed_today"]) == (9, 1)
    assert board["success_rate"] == pytest.approx(90)
    assert board["waiting"] == 2


def test_seven_and_fourteen_days_count_the_hourly_rollups(admin_client, source, monkeypatch):
    now = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: now)
    good, flaky = hook("good"), hook("flaky", last_error="HTTP 500: boom", last_error_at=now)
    for days, delivered, failed in [(0, 9, 1), (4, 20, 0), (10, 30, 5), (20, 100, 100)]:
        when = now - timedelta(days=days, minutes=1) if days else since_midnight(0)
        rollups.add([(good.pk, when, "delivered", 90)] * delivered + [(flaky.pk, when, "failed", None)] * failed)

    with CaptureQueriesContext(connection) as queries:
        board = admin_client.get(INDEX, {"window": "7d"}).context["dashboard"]
    assert (board["delivered_today"], board["failed_today"]) == (29, 1)
    assert "deliveries_deliveryhourrollup" in " ".join(q["sql"] for q in queries)
    assert "deliveries_deliveryrollup" not in " ".join(q["sql"] for q in queries)
    assert board["problems"][0]["url"].endswith("?window=7d")

    DeliveryRollup.objects.filter(minute__lt=now - timedelta(days=3)).delete()  # retention: hours stay
    response = admin_client.get(INDEX, {"window": "14d"})
    board = response.context["dashboard"]
    assert (board["delivered_today"], board["failed_today"]) == (59, 6)
    assert board["success_rate"] == pytest.approx(100 * 59 / 65)
    assert [p["failed"] for p in board["problems"]] == [6]
    html = response.content.decode()
    assert "Delivery success in 14 days" in html
    assert "6 failed in 14 days" in html
    assert '<a href="?window=7d">7 days</a>' in html

    board = admin_client.get(INDEX, {"window": "1y"}).context["dashboard"]  # unknown: today
    assert (board["window"], board["delivered_today"], board["failed_today"]) == ("today", 9, 1)


def test_destinations_with_problems_link_to_their_event_delivery_with_the_hint(admin_client, source):
    hook("fine")
    broken = hook(
        "broken",
        last_error="HTTP 401: Unauthorized",
        last_error_code="http_401",
        last_error_hint="Check the API key header.",
        last_error_at=timezone.now(),
    )
    failing = hook("failing", last_error="HTTP 500: boom", last_error_at=timezone.now())
    rollups.add([(failing.pk, timezone.now(), "failed", None)] * 4)
    paused = hook("paused", paused=True)
    off = hook("off", enabled=False)

    response = admin_client.get(INDEX)
    problems = response.context["dashboard"]["problems"]
    assert [(p["destination"].slug, p["kind"]) for p in problems] == [
        ("broken", "misconfigured"),
        ("failing", "failing"),
        ("paused", "paused"),
        ("off", "disabled"),
    ]
    assert problems[1]["failed"] == 4
    html = response.content.decode()
    for destination in (broken, failing, paused, off):
        assert event_delivery_url(destination) in html
    assert "Check the API key header." in html
    assert SECRET not in html
    assert html.index('id="dashboard"') < html.index('class="app-deliveries')  # above the apps


def test_a_large_backlog_is_a_problem_but_a_small_one_is_not(admin_client, source, monkeypatch):
    monkeypatch.setattr(dashboard, "BACKLOG_PROBLEM", 2)
    slow = hook("slow")
    quick = hook("quick")
    for _ in range(3):
        make_delivery(slow, make_event(source), status="pending")
    make_delivery(quick, make_event(source), status="pending")
    problems = admin_client.get(INDEX).context["dashboard"]["problems"]
    assert [(p["destination"].slug, p["kind"], p["waiting"]) for p in problems] == [("slow", "backlog", 3)]


def test_all_is_well_says_so(admin_client):
    hook("fine")
    html = admin_client.get(INDEX).content.decode()
    assert "All 1 destination delivered without a failure today." in html


def test_a_marketer_sees_the_dashboard_and_the_links_to_the_pages_they_may_use(marketer_client, source):
    hook("broken", last_error="HTTP 403", last_error_code="http_403", last_error_at=timezone.now())
    response = marketer_client.get(INDEX)
    board = response.context["dashboard"]
    assert board["problems"][0]["kind"] == "misconfigured"
    labels = [label for label, _ in board["links"]]
    assert "Event Delivery" in labels
    assert "Event Tester" in labels
    assert SECRET not in response.content.decode()


def test_staff_who_may_see_neither_events_nor_deliveries_get_the_plain_index(source):
    user = User.objects.create_user("ops", password="pw", is_staff=True)
    client = Client()
    client.force_login(user)
    response = client.get(INDEX)
    assert response.status_code == 200
    assert "dashboard" not in response.context
    assert 'id="dashboard"' not in response.content.decode()

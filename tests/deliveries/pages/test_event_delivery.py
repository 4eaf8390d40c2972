"""Event Delivery: a destination's numbers over a window (from the rollups and the delivery rows), its trends,
its issues grouped by error with samples, Retry these, and who may see and use the page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from deliveries.engine import rollups
from deliveries.models import Attempt, Delivery, DeliveryRollup
from deliveries.pages.event_delivery import views as event_delivery
from deliveries.pages.event_delivery.numbers import WINDOWS, chart_data, percentile, rollup_buckets, summarise
from integrations.models import Destination
from tests.factories import make_delivery, make_event

pytestmark = pytest.mark.django_db

SECRET = "sk-live-never-shown-0123456789"


@pytest.fixture
def destination(destination):
    """The shared webhook destination, with a secret header no page may show."""
    destination.credentials = {"headers": {"X-Api-Key": SECRET}}
    destination.save()
    return destination


def page_url(destination: Destination, window: str | None = None) -> str:
    url = reverse("admin:deliveries_delivery_event_delivery", args=[destination.pk])
    return f"{url}?window={window}" if window else url


def outcomes(destination: Destination, ago: timedelta, status: str, latencies: list[int | None]) -> None:
    when = timezone.now() - ago
    rollups.add((destination.pk, when, status, latency) for latency in latencies)


def failing(destination, source, ago=timedelta(minutes=30), status="failed", code="http_500", message="HTTP 500: boom"):
    """A failed or retrying delivery of an event received `ago`, with one attempt and its exchange."""
    event = make_event(source, received_at=timezone.now() - ago, user_id="user-42")
    delivery = make_delivery(
        destination,
        event,
        status=status,
        attempts=1,
        error_code=code,
        error_message=message,
        hint="Ask the vendor why it answers 500." if code == "http_500" else "",
    )
    exchange = {
        "request": {
            "method": "POST",
            "url": "https://hooks.example.com/in",
            "headers": {"X-Api-Key": "••••••••"},
            "body": '{"event": "Signed Up"}',
        },
        "response": {"status": 500, "headers": {}, "body": '{"error": "vendor exploded"}'},
        "error": "",
        "duration_ms": 41,
    }
    Attempt.objects.create(
        delivery=delivery,
        number=1,
        started_at=timezone.now() - ago,
        outcome="failed",
        status_code=500,
        error_code=code,
        error_message=message,
        exchanges=[exchange],
    )
    return delivery


# Numbers ---------------------------------------------------------------------------------------------


def test_percentiles_interpolate_inside_the_latency_bucket():
    # 10 deliveries between 50 and 100 ms (bucket 2): the median sits halfway.
    assert percentile({2: 10}, {2: 750}, 0.5) == pytest.approx(75)
    # 90 fast (0-25 ms) and 10 slow (500-750 ms): p95 is halfway through the slow bucket.
    assert percentile({0: 90, 6: 10}, {}, 0.95) == pytest.approx(625)
    assert percentile({}, {}, 0.5) is None


def test_the_tiles_count_the_windows_outcomes_from_the_rollups(admin_client, destination, source):
    outcomes(destination, timedelta(minutes=3), "delivered", [80] * 6)
    outcomes(destination, timedelta(minutes=3), "failed", [None] * 2)
    outcomes(destination, timedelta(minutes=30), "delivered", [600] * 4)
    outcomes(destination, timedelta(days=3), "delivered", [80] * 10)
    make_delivery(destination, make_event(source), status="pending")
    make_delivery(destination, make_event(source), status="in_flight")
    make_delivery(destination, make_event(source), status="retrying", error_code="http_503")
    make_delivery(destination, make_event(source), status="filtered", error_message="Not a track event.")
    old = make_event(source, received_at=timezone.now() - timedelta(days=2))
    make_delivery(destination, old, status="filtered")

    context = admin_client.get(page_url(destination, "10m")).context
    assert (context["summary"].delivered, context["summary"].failed) == (6, 2)
    assert context["summary"].success_rate == pytest.approx(75)
    assert (context["retrying"], context["pending"], context["in_flight"], context["filtered"]) == (1, 2, 1, 1)

    context = admin_client.get(page_url(destination)).context  # 24 hours by default
    assert context["window"].key == "24h"
    summary = context["summary"]
    assert (summary.delivered, summary.failed) == (10, 2)
    assert summary.p50 == pytest.approx(50 + 50 * 5 / 6)  # the 5th of 6 in the 50-100 ms bucket
    assert 500 < summary.p95 <= 750
    assert context["filtered"] == 1

    context = admin_client.get(page_url(destination, "7d")).context
    assert context["summary"].delivered == 20
    assert context["filtered"] == 2


def test_the_trends_sum_to_the_tiles_in_buckets_of_the_windows_step(admin_client, destination):
    outcomes(destination, timedelta(minutes=3), "delivered", [80] * 6)
    outcomes(destination, timedelta(hours=5), "failed", [None] * 3)
    outcomes(destination, timedelta(hours=5), "delivered", [20_000])
    chart = admin_client.get(page_url(destination)).context["chart"]
    assert len(chart["labels"]) in (24, 25)  # hours on the clock, from the window's start
    assert all(label.endswith(":00") for label in chart["labels"])
    assert sum(chart["delivered"]) == 7
    assert sum(chart["failed"]) == 3
    assert chart["delivered"][-1] + chart["delivered"][-2] >= 6  # the last minutes are in the last bucket or two
    five_hours_ago = [i for i, n in enumerate(chart["failed"]) if n]
    assert len(five_hours_ago) == 1
    assert 10_000 < chart["p95"][five_hours_ago[0]] <= 30_000

    for window, most, delivered in [("10m", 11, 6), ("1h", 13, 6), ("7d", 29, 7), ("14d", 29, 7)]:
        chart = admin_client.get(page_url(destination, window)).context["chart"]
        assert len(chart["labels"]) <= most
        assert sum(chart["delivered"]) == delivered


def test_fourteen_days_of_rollups_come_back_in_a_few_queries(admin_client, destination):
    now = timezone.now()
    rollups.add(
        (destination.pk, now - timedelta(minutes=m), "delivered", 40 + m % 900) for m in range(0, 14 * 24 * 60, 7)
    )
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(page_url(destination, "14d"))
    assert response.status_code == 200
    assert response.context["summary"].delivered == len(range(0, 14 * 24 * 60, 7))
    assert len(queries) <= 12


# Beyond a day: the hourly rollups ----------------------------------------------------------------------


def two_weeks_of_outcomes(destination: Destination, now) -> None:
    """15 days of outcomes, one every 23 minutes (so minutes and hours are cut everywhere), with a failure now and
    then and latencies across the buckets; as the engine records them, so minutes and hours both hold them."""
    rows = []
    for i, minutes in enumerate(range(3, 15 * 24 * 60, 23)):
        when = now - timedelta(minutes=minutes, seconds=i % 60)
        if i % 9 == 0:
            rows.append((destination.pk, when, "failed", None))
        else:
            rows.append((destination.pk, when, "delivered", (i * 7919) % 4000 + (600_000 if i % 97 == 0 else 0)))
    rollups.add(rows)


def figures(destination: Destination, window: str, now, hours: bool):
    buckets = rollup_buckets([destination.pk], WINDOWS[window], now, hours=hours)[destination.pk]
    summary, chart = summarise(buckets), chart_data(buckets, WINDOWS[window])
    numbers = (summary.delivered, summary.failed, summary.success_rate, summary.p50, summary.p95, summary.mean)
    return numbers, chart


def tables_read(queries) -> set[str]:
    return {t for q in queries for t in ("deliveryhourrollup", "deliveryrollup") if f'deliveries_{t}"' in q["sql"]}


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Australia/Sydney"])
@pytest.mark.parametrize("window", ["7d", "14d"])
def test_the_hours_give_the_same_figures_and_trends_as_the_minutes(destination, window, zone):
    now = timezone.now()
    two_weeks_of_outcomes(destination, now)
    with timezone.override(zone):  # the chart's buckets are on the local clock
        from_hours = figures(destination, window, now, hours=True)
        from_minutes = figures(destination, window, now, hours=False)
    assert from_hours == from_minutes
    numbers, chart = from_hours
    assert numbers[0] > 300  # something to agree on
    assert numbers[1] > 40
    assert sum(chart["delivered"]) == numbers[0]


@pytest.mark.parametrize("window", ["7d", "14d"])
def test_seven_and_fourteen_days_read_the_hours_and_a_day_the_minutes(admin_client, destination, window):
    two_weeks_of_outcomes(destination, timezone.now())
    with CaptureQueriesContext(connection) as queries:
        assert admin_client.get(page_url(destination, window)).status_code == 200
    assert tables_read(queries) == {"deliveryhourrollup"}
    with CaptureQueriesContext(connection) as queries:
        admin_client.get(reverse("admin:deliveries_delivery_event_delivery_index"), {"window": window})
    assert tables_read(queries) == {"deliveryhourrollup"}
    with CaptureQueriesContext(connection) as queries:
        admin_client.get(page_url(destination, "24h"))
    assert tables_read(queries) == {"deliveryrollup"}


def test_minute_rollups_purged_after_three_days_leave_the_long_windows_as_they_were(
    admin_client, destination, monkeypatch
):
    now = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: now)  # both views of the page see the same window
    two_weeks_of_outcomes(destination, now)
    before = {w: admin_client.get(page_url(destination, w)).context for w in ("7d", "14d")}
    index_before = admin_client.get(reverse("admin:deliveries_delivery_event_delivery_index"), {"window": "14d"})

    purged, _ = DeliveryRollup.objects.filter(minute__lt=now - timedelta(days=3)).delete()  # as retention does
    assert purged > 500

    for window, context in before.items():
        after = admin_client.get(page_url(destination, window)).context
        assert after["summary"] == context["summary"]
        assert after["chart"] == context["chart"]
    index_after = admin_client.get(reverse("admin:deliveries_delivery_event_delivery_index"), {"window": "14d"})
    assert index_after.context["rows"][0]["summary"] == index_before.context["rows"][0]["summary"]


def test_a_long_window_starts_on_the_hour_for_the_tiles_and_the_issues_alike(admin_client, destination, source):
    now = timezone.now()
    start = rollups.hour_of(now - timedelta(days=7))
    inside = failing(destination, source, ago=now - start - timedelta(seconds=1))  # 7 days and a bit ago
    outside = failing(destination, source, ago=now - start + timedelta(minutes=1), code="old", message="Old")
    rollups.add(
        [(destination.pk, start, "failed", None), (destination.pk, start - timedelta(minutes=1), "failed", None)]
    )
    context = admin_client.get(page_url(destination, "7d")).context
    assert context["since"] == start
    assert context["summary"].failed == 1
    assert [i["error_code"] for i in context["issues"]] == [inside.error_code]
    assert outside.error_code == "old"


def test_the_filtered_tile_counts_up_to_a_bound(admin_client, destination, source, monkeypatch):
    monkeypatch.setattr(event_delivery, "FILTERED_COUNT", 2)
    for _ in range(3):
        make_delivery(destination, make_event(source), status="filtered")
    response = admin_client.get(page_url(destination, "14d"))
    assert (response.context["filtered"], response.context["filtered_more"]) == (2, True)
    assert 'status__exact=filtered">2+</a>' in response.content.decode()


def test_the_page_shows_a_misconfigured_destination_with_its_hint_and_no_credentials(admin_client, destination):
    destination.last_error_code = "http_401"
    destination.last_error = "HTTP 401: Unauthorized"
    destination.last_error_hint = "Check the API key header."
    destination.last_error_at = timezone.now()
    destination.save()
    html = admin_client.get(page_url(destination)).content.decode()
    assert "Misconfigured" in html
    assert "Check the API key header." in html
    assert SECRET not in html


# Issues ----------------------------------------------------------------------------------------------


def test_issues_group_failed_and_retrying_deliveries_by_error_with_first_and_last_seen(
    admin_client, destination, source
):
    a = [failing(destination, source) for _ in range(3)]
    a.append(failing(destination, source, status="retrying"))
    failing(destination, source, code="http_400", message="HTTP 400: bad email")
    failing(destination, source, ago=timedelta(days=2))  # received before the window
    first, last = timezone.now() - timedelta(hours=2), timezone.now() - timedelta(minutes=1)
    Delivery.objects.filter(pk=a[0].pk).update(updated_at=first)
    Delivery.objects.filter(pk=a[3].pk).update(updated_at=last)

    issues = admin_client.get(page_url(destination)).context["issues"]
    assert [(i["error_code"], i["n"], i["failed"], i["retrying"]) for i in issues] == [
        ("http_500", 4, 3, 1),
        ("http_400", 1, 1, 0),
    ]
    assert issues[0]["first"] == first
    assert issues[0]["last"] >= last
    assert issues[0]["hint"] == "Ask the vendor why it answers 500."
    assert "samples/?" in issues[0]["samples_url"]


def test_issues_leave_out_the_event_testers_sends_as_the_tiles_do(admin_client, destination, source):
    failing(destination, source)
    test = failing(destination, source)
    Delivery.objects.filter(pk=test.pk).update(is_test=True)

    issues = admin_client.get(page_url(destination)).context["issues"]
    assert [(i["error_code"], i["n"]) for i in issues] == [("http_500", 1)]
    samples = admin_client.get(issues[0]["samples_url"])
    assert len(samples.context["samples"]) == 1


def test_samples_show_what_was_received_the_request_sent_and_the_response(admin_client, destination, source):
    wanted = failing(destination, source)
    other = failing(destination, source, code="http_400", message="HTTP 400: bad email")
    issues = admin_client.get(page_url(destination)).context["issues"]
    url = next(i["samples_url"] for i in issues if i["error_code"] == "http_500")
    response = admin_client.get(url)
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html  # a fragment for the page to insert
    assert "Received" in html
    assert "&quot;userId&quot;: &quot;user-42&quot;" in html
    assert "POST https://hooks.example.com/in" in html
    assert "vendor exploded" in html
    assert reverse("admin:deliveries_delivery_change", args=[wanted.pk]) in html
    assert reverse("admin:deliveries_delivery_change", args=[other.pk]) not in html
    assert SECRET not in html


def test_samples_stop_at_twenty(admin_client, destination, source):
    for _ in range(23):
        failing(destination, source)
    url = admin_client.get(page_url(destination)).context["issues"][0]["samples_url"]
    assert admin_client.get(url).content.decode().count('class="ed-sample"') == 20


def test_retry_these_requeues_only_that_group_in_the_window(admin_client, destination, source):
    group = [failing(destination, source), failing(destination, source, status="retrying")]
    other = failing(destination, source, code="http_400", message="HTTP 400: bad email")
    old = failing(destination, source, ago=timedelta(days=3))
    url = reverse("admin:deliveries_delivery_event_delivery_retry", args=[destination.pk])
    data = {"window": "24h", "code": "http_500", "message": "HTTP 500: boom"}

    assert admin_client.get(url, data).status_code == 405
    response = admin_client.post(url, data, follow=True)
    assert "2 deliveries to Welcome hook will be sent again now." in response.content.decode()
    for delivery in group:
        delivery.refresh_from_db()
        assert delivery.status == "retrying"
        assert delivery.next_attempt_at >= timezone.now() - timedelta(seconds=5)
    other.refresh_from_db()
    old.refresh_from_db()
    assert (other.status, old.status) == ("failed", "failed")


def test_retry_these_needs_the_permission_to_retry(destination, source):
    delivery = failing(destination, source)
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_delivery"))
    client = Client()
    client.force_login(user)
    assert client.get(page_url(destination)).status_code == 200
    assert "Retry these" not in client.get(page_url(destination)).content.decode()
    url = reverse("admin:deliveries_delivery_event_delivery_retry", args=[destination.pk])
    response = client.post(url, {"window": "24h", "code": "http_500", "message": "HTTP 500: boom"})
    assert response.status_code == 403
    delivery.refresh_from_db()
    assert delivery.status == "failed"


# Who may see it ----------------------------------------------------------------------------------------


def test_a_marketer_sees_every_page_and_can_retry_a_group(marketer_client, destination, source):
    failing(destination, source)
    index = marketer_client.get(reverse("admin:deliveries_delivery_event_delivery_index"))
    assert index.status_code == 200
    assert page_url(destination, "24h") in index.content.decode()
    html = marketer_client.get(page_url(destination)).content.decode()
    assert "Retry these" in html
    assert SECRET not in html
    issue = marketer_client.get(page_url(destination)).context["issues"][0]
    assert marketer_client.get(issue["samples_url"]).status_code == 200
    url = reverse("admin:deliveries_delivery_event_delivery_retry", args=[destination.pk])
    retried = marketer_client.post(url, {"window": "24h", "code": "http_500", "message": "HTTP 500: boom"})
    assert retried.status_code == 302


def test_staff_without_view_delivery_get_403(destination):
    user = User.objects.create_user("other", password="pw", is_staff=True)
    client = Client()
    client.force_login(user)
    assert client.get(reverse("admin:deliveries_delivery_event_delivery_index")).status_code == 403
    assert client.get(page_url(destination)).status_code == 403
    samples = reverse("admin:deliveries_delivery_event_delivery_samples", args=[destination.pk])
    assert client.get(samples, {"code": "x", "message": "y"}).status_code == 403


def test_the_index_lists_every_destination_with_its_numbers(admin_client, destination, source):
    quiet = Destination.objects.create(name="Quiet", slug="quiet", vendor="webhook", config={"url": "https://q.io"})
    outcomes(destination, timedelta(minutes=3), "delivered", [80] * 3)
    outcomes(destination, timedelta(minutes=3), "failed", [None])
    make_delivery(destination, make_event(source), status="pending")
    response = admin_client.get(reverse("admin:deliveries_delivery_event_delivery_index"), {"window": "1h"})
    rows = {row["destination"].pk: row for row in response.context["rows"]}
    assert (rows[destination.pk]["summary"].delivered, rows[destination.pk]["summary"].failed) == (3, 1)
    assert rows[destination.pk]["backlog"] == 1
    assert rows[quiet.pk]["summary"].delivered == 0
    assert page_url(quiet, "1h") in response.content.decode()


def test_the_destination_page_links_to_its_event_delivery(admin_client, destination):
    html = admin_client.get(reverse("admin:integrations_destination_change", args=[destination.pk])).content.decode()
    assert page_url(destination) in html


def test_the_index_offers_every_window(admin_client, destination):
    outcomes(destination, timedelta(days=10), "delivered", [80] * 4)
    response = admin_client.get(reverse("admin:deliveries_delivery_event_delivery_index"), {"window": "14d"})
    assert response.context["window"].key == "14d"
    assert [w["key"] for w in response.context["windows"]] == ["10m", "1h", "24h", "7d", "14d"]
    assert response.context["rows"][0]["summary"].delivered == 4


def test_issues_of_a_destination_failing_everything_read_only_the_newest_rows(
    admin_client, destination, source, monkeypatch
):
    monkeypatch.setattr(event_delivery, "ISSUE_SCAN", 2)
    old = failing(destination, source, ago=timedelta(hours=3), code="old_error", message="An old error")
    for _ in range(3):
        failing(destination, source, ago=timedelta(minutes=5))
    failing(destination, source, ago=timedelta(minutes=5), status="retrying")
    response = admin_client.get(page_url(destination))
    assert response.context["issues_capped"]
    assert [(i["error_code"], i["n"]) for i in response.context["issues"]] == [("http_500", 3)]
    assert "the issues count the newest 2 failed" in response.content.decode()
    assert old.error_code not in {i["error_code"] for i in response.context["issues"]}

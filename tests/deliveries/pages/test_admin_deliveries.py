"""The admin for deliveries: the list, filters and search, attempts with their HTTP exchanges, Retry now,
pausing destinations from deliveries, and the deliveries on an event's page."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from deliveries.engine.slots import kick
from deliveries.models import Attempt, Delivery, Event
from integrations.models import Destination, Source
from tests import factories
from tests.factories import cell, make_delivery
from tests.receiver import Receiver

pytestmark = pytest.mark.django_db

API_KEY = "sk-test-0123456789abcdef"
SIGNING_SECRET = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LWZvci10ZXN0cw=="
DELIVERIES = reverse("admin:deliveries_delivery_changelist")


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


def make_destination(slug: str = "hook", url: str = "http://127.0.0.1:9/hook", **fields: Any) -> Destination:
    fields.setdefault("name", slug.replace("-", " ").title())
    fields.setdefault("vendor", "webhook")
    fields.setdefault("config", {"url": url} if fields["vendor"] == "webhook" else {"base_url": url})
    fields.setdefault(
        "credentials",
        {"signing_secret": SIGNING_SECRET, "headers": {"X-Api-Key": API_KEY}} if fields["vendor"] == "webhook" else {},
    )
    fields.setdefault("timeout", 5.0)
    return Destination.objects.create(slug=slug, **fields)


def make_event(source: Source, ago: timedelta = timedelta(minutes=5), **fields: Any) -> Event:
    fields.setdefault("user_id", "user-1")
    return factories.make_event(source, timezone.now() - ago, **fields)


def change_url(delivery: Delivery) -> str:
    return reverse("admin:deliveries_delivery_change", args=[delivery.pk])


def shown(response) -> list[int]:
    return [d.pk for d in response.context["cl"].result_list]


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# The list


def test_the_list_shows_event_destination_status_attempts_error_and_latency(admin_client, source):
    hook = make_destination("hook")
    done = make_delivery(
        hook,
        make_event(source, message_id="m-done"),
        status=Delivery.Status.DELIVERED,
        attempts=1,
        delivered_at=timezone.now(),
        latency_ms=1234,
    )
    waiting = make_delivery(
        hook,
        make_event(source, message_id="m-wait", event="Order Completed"),
        status=Delivery.Status.RETRYING,
        attempts=2,
        next_attempt_at=timezone.now() + timedelta(minutes=10, seconds=30),
        error_code="http_503",
        error_message="HTTP 503: " + "the receiver is busy " * 10,
    )

    html = admin_client.get(DELIVERIES).content.decode()

    assert cell(html, "m-done", "event_") == "track Signed Up"
    assert f'href="{reverse("admin:deliveries_event_change", args=[done.event_id])}"' in html
    assert cell(html, "m-done", "destination_") == "Hook"
    assert cell(html, "m-done", "status_") == "Delivered"
    assert 'class="status status-delivered"' in html
    assert cell(html, "m-done", "latency") == "1.2 s"
    assert cell(html, "m-done", "next_attempt") == "-"
    assert cell(html, "m-wait", "status_") == "Retrying"
    assert cell(html, "m-wait", "attempts") == "2"
    assert cell(html, "m-wait", "next_attempt").startswith("in 10.")
    error = cell(html, "m-wait", "error_")
    assert error.startswith("http_503 HTTP 503: the receiver is busy")
    assert error.endswith("…")
    assert cell(html, "m-wait", "delivered") == "-"
    assert shown(admin_client.get(DELIVERIES)) == [waiting.pk, done.pk]  # newest first


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status__exact=failed", ["failed"]),
        ("status__exact=filtered", ["filtered"]),
        ("destination__id__exact={segment}", ["segment"]),
        ("destination__vendor__exact=segment", ["segment"]),
        ("destination__vendor__exact=webhook&status__exact=delivered", ["delivered"]),
    ],
)
def test_the_list_filters_by_status_destination_and_vendor(admin_client, source, query, expected):
    hook = make_destination("hook")
    segment = make_destination("segment", vendor="segment", url="http://127.0.0.1:9", credentials={"write_key": "k"})
    rows = {
        "failed": make_delivery(hook, make_event(source), status=Delivery.Status.FAILED),
        "filtered": make_delivery(hook, make_event(source), status=Delivery.Status.FILTERED),
        "delivered": make_delivery(hook, make_event(source), status=Delivery.Status.DELIVERED),
        "segment": make_delivery(segment, make_event(source), status=Delivery.Status.DELIVERED),
    }

    response = admin_client.get(f"{DELIVERIES}?{query.format(segment=segment.pk)}")

    assert shown(response) == [rows[name].pk for name in expected]


@pytest.mark.parametrize("term", ["m-42", "user-42", "anon-42", '"m-42"'])
def test_search_finds_deliveries_by_the_events_message_user_or_anonymous_id(admin_client, source, term):
    hook = make_destination("hook")
    other = make_destination("other")
    event = make_event(source, message_id="m-42", user_id="user-42", anonymous_id="anon-42")
    wanted = [make_delivery(hook, event), make_delivery(other, event)]
    make_delivery(hook, make_event(source, message_id="m-43", user_id="user-43"))

    response = admin_client.get(DELIVERIES, {"q": term})

    assert sorted(shown(response)) == sorted(d.pk for d in wanted)


def test_the_list_queries_do_not_grow_with_the_number_of_deliveries(admin_client, source):
    hook = make_destination("hook")
    make_delivery(hook, make_event(source))
    admin_client.get(DELIVERIES)
    with CaptureQueriesContext(connection) as one:
        admin_client.get(DELIVERIES)
    for n in range(20):
        make_delivery(make_destination(f"hook-{n}"), make_event(source), status=Delivery.Status.FAILED)

    with CaptureQueriesContext(connection) as many:
        response = admin_client.get(DELIVERIES)

    assert len(shown(response)) == 21
    assert len(many) == len(one)


def test_deliveries_are_read_only(admin_client, source):
    delivery = make_delivery(make_destination("hook"), make_event(source), status=Delivery.Status.FAILED)

    page = admin_client.get(change_url(delivery))
    posted = admin_client.post(change_url(delivery), {"status": "delivered"})

    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert admin_client.get(reverse("admin:deliveries_delivery_add")).status_code == 403
    assert posted.status_code == 403
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED


# The delivery page: attempts and their exchanges


def test_the_delivery_page_shows_each_attempt_newest_first_with_its_http_exchanges(admin_client, source, receiver):
    hook = make_destination("hook", receiver.url)
    delivery = make_delivery(hook, make_event(source, message_id="m-1"))
    receiver.answer(503, {"message": "busy, try later"})
    kick(hook.pk)
    receiver.answer(None)
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    kick(hook.pk)

    html = admin_client.get(change_url(delivery)).content.decode()

    rows = re.findall(r'<tr class="form-row[^"]*"[^>]*>.*?</tr>', html, re.S)
    assert len(rows) == 2
    newest, oldest = rows
    assert "Delivered" in newest
    assert "HTTP 200" in newest
    assert "Will retry" in oldest
    assert "HTTP 503" in oldest
    assert "http_503" in oldest
    assert f"POST {receiver.url}" in newest
    assert re.search(r"<details class=\"exchange\" open>", newest), "the deciding exchange starts open"
    assert '<details class="exchange">' in oldest
    # Request headers and bodies as stored: redacted by the engine, indented for reading.
    assert "X-Api-Key: [REDACTED]" in html
    assert "&quot;messageId&quot;: &quot;m-1&quot;" in html
    assert "&quot;message&quot;: &quot;busy, try later&quot;" in html
    assert API_KEY not in html
    assert SIGNING_SECRET not in html


def test_the_delivery_page_queries_do_not_grow_with_the_number_of_attempts(admin_client, source):
    delivery = make_delivery(make_destination("hook"), make_event(source), status=Delivery.Status.RETRYING)

    def attempt(number: int) -> None:
        exchange = {"request": {"method": "POST", "url": "http://x/"}, "response": {"status": 503}}
        Attempt.objects.create(
            delivery=delivery, number=number, started_at=timezone.now(), outcome="retry", exchanges=[exchange]
        )
        Delivery.objects.filter(pk=delivery.pk).update(attempts=number)

    attempt(1)
    admin_client.get(change_url(delivery))
    with CaptureQueriesContext(connection) as one:
        admin_client.get(change_url(delivery))
    for number in range(2, 8):
        attempt(number)

    with CaptureQueriesContext(connection) as seven:
        html = admin_client.get(change_url(delivery)).content.decode()

    assert html.count('<details class="exchange"') == 7
    assert html.count('<details class="exchange" open>') == 1
    assert len(seven) == len(one)


def test_an_exchange_without_an_answer_shows_the_error(admin_client, source):
    delivery = make_delivery(
        make_destination("hook"),
        make_event(source),
        status=Delivery.Status.RETRYING,
        attempts=1,
        error_code="connection_error",
        error_message="Connection failed: refused",
    )
    Attempt.objects.create(
        delivery=delivery,
        number=1,
        started_at=timezone.now(),
        duration_ms=3,
        outcome=Attempt.Outcome.RETRY,
        error_code="connection_error",
        error_message="Connection failed: refused",
        exchanges=[
            {
                "request": {"method": "POST", "url": "http://127.0.0.1:9/hook", "headers": {}, "body": "{}"},
                "error": "Connection failed: refused",
                "duration_ms": 2.5,
            }
        ],
    )

    html = admin_client.get(change_url(delivery)).content.decode()

    assert re.search(r'<span class="outcome bad">Connection failed: refused</span>', html)
    assert "3 ms" in html
    assert "Last error" in html


# Retry now


def test_retry_now_sends_failed_retrying_and_pending_deliveries_and_leaves_the_rest(
    admin_client, source, receiver, django_capture_on_commit_callbacks
):
    hook = make_destination("hook", receiver.url)
    later = timezone.now() + timedelta(hours=1)
    retried = {
        status: make_delivery(hook, make_event(source), status=status, attempts=1, next_attempt_at=later)
        for status in (Delivery.Status.FAILED, Delivery.Status.RETRYING, Delivery.Status.PENDING)
    }
    left = [
        make_delivery(hook, make_event(source), status=Delivery.Status.DELIVERED, attempts=1),
        make_delivery(hook, make_event(source), status=Delivery.Status.FILTERED, error_message="consent"),
    ]
    selected = [d.pk for d in [*retried.values(), *left]]

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            DELIVERIES, {"action": "retry_deliveries", "_selected_action": selected}, follow=True
        )

    assert messages_of(response) == [
        "Re-queued 3 deliveries: they are being sent now.",
        "Left 2 deliveries alone (1 delivered, 1 filtered): delivered and filtered deliveries are not sent again, "
        "and in-flight ones are being sent.",
    ]
    for delivery in retried.values():
        delivery.refresh_from_db()
        assert delivery.status == Delivery.Status.DELIVERED
    assert len(receiver.requests) == 3
    assert [Delivery.objects.get(pk=d.pk).attempts for d in left] == [1, 0]


def test_retry_now_on_a_paused_destination_says_they_wait(admin_client, source, django_capture_on_commit_callbacks):
    held = make_destination("held", paused=True)
    delivery = make_delivery(held, make_event(source), status=Delivery.Status.FAILED, attempts=3)

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            DELIVERIES, {"action": "retry_deliveries", "_selected_action": [delivery.pk]}, follow=True
        )

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (Delivery.Status.RETRYING, 3)
    assert delivery.next_attempt_at <= timezone.now()
    assert messages_of(response)[1] == (
        "Paused or disabled: Held. Deliveries there wait until the destination is resumed and enabled."
    )


def test_the_retry_button_on_the_delivery_page(admin_client, source, receiver, django_capture_on_commit_callbacks):
    hook = make_destination("hook", receiver.url)
    failed = make_delivery(hook, make_event(source), status=Delivery.Status.FAILED, attempts=1)
    delivered = make_delivery(hook, make_event(source), status=Delivery.Status.DELIVERED, attempts=1)
    retry_url = reverse("admin:deliveries_delivery_retry", args=[failed.pk])

    page = admin_client.get(change_url(failed)).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(retry_url, follow=True)

    assert f'formaction="{retry_url}"' in page
    assert 'formaction="' not in admin_client.get(change_url(delivered)).content.decode()
    assert response.redirect_chain == [(change_url(failed), 302)]
    assert messages_of(response) == ["Re-queued: the delivery is being sent now."]
    failed.refresh_from_db()
    assert failed.status == Delivery.Status.DELIVERED
    assert admin_client.get(retry_url).status_code == 405
    again = admin_client.post(reverse("admin:deliveries_delivery_retry", args=[delivered.pk]), follow=True)
    assert messages_of(again) == ["Nothing to retry: the delivery is delivered."]


def test_a_user_who_may_only_look_cannot_retry(client, django_user_model, source):
    delivery = make_delivery(make_destination("hook"), make_event(source), status=Delivery.Status.FAILED)
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_delivery", "view_event"]))
    client.force_login(viewer)

    listing = client.get(DELIVERIES).content.decode()
    page = client.get(change_url(delivery)).content.decode()
    posted = client.post(reverse("admin:deliveries_delivery_retry", args=[delivery.pk]))

    assert "retry_deliveries" not in listing
    assert "Retry now" not in page
    assert posted.status_code == 403


# Pausing destinations from their deliveries


def test_pause_and_resume_act_on_the_destinations_of_the_selected_deliveries(
    admin_client, source, receiver, django_capture_on_commit_callbacks
):
    hook = make_destination("hook", receiver.url)
    other = make_destination("other")
    first = make_delivery(hook, make_event(source), status=Delivery.Status.DELIVERED)
    make_delivery(other, make_event(source), status=Delivery.Status.DELIVERED)

    paused = admin_client.post(
        DELIVERIES, {"action": "pause_destinations", "_selected_action": [first.pk]}, follow=True
    )
    waiting = make_delivery(hook, make_event(source))
    with django_capture_on_commit_callbacks(execute=True):
        resumed = admin_client.post(
            DELIVERIES, {"action": "resume_destinations", "_selected_action": [first.pk]}, follow=True
        )

    assert messages_of(paused) == ["Paused Hook. New events are kept and wait until you resume delivery."]
    assert messages_of(resumed) == ["Resumed Hook. Waiting events are being sent now."]
    assert Destination.objects.get(pk=other.pk).paused is False
    waiting.refresh_from_db()
    assert waiting.status == Delivery.Status.DELIVERED


# The event page


def test_the_event_page_lists_its_deliveries_with_the_reason_for_filtered_ones(admin_client, source):
    event = make_event(source)
    make_delivery(make_destination("hook"), event, status=Delivery.Status.DELIVERED, attempts=1)
    make_delivery(
        make_destination("failing"),
        event,
        status=Delivery.Status.FAILED,
        attempts=4,
        error_code="http_400",
        error_message="HTTP 400: email is required",
    )
    make_delivery(
        make_destination("identify-only"),
        event,
        status=Delivery.Status.FILTERED,
        error_code="filter_type",
        error_message="The filter lets through identify only, not track.",
    )

    html = admin_client.get(reverse("admin:deliveries_event_change", args=[event.pk])).content.decode()

    rows = {
        name: " ".join(re.sub(r"<[^>]+>", " ", row).split())
        for row in re.findall(r'<tr class="form-row[^"]*"[^>]*>.*?</tr>', html, re.S)
        for name in ("Hook", "Failing", "Identify Only")
        if f">{name}</a>" in row
    }
    assert "Hook Delivered 1" in rows["Hook"]
    assert "Failing Failed 4 http_400 HTTP 400: email is required" in rows["Failing"]
    assert (
        "Identify Only Filtered 0 filter_type The filter lets through identify only, not track."
        in rows["Identify Only"]
    )
    assert html.count(">Attempts and requests</a>") == 3

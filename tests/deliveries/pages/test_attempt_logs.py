"""A function's console output beside an attempt's exchanges, wherever attempts are shown (the Debugger, the
delivery page, Event Delivery's samples, the Event Tester's send), only when it logged something; and a filtered
attempt in the filtered grey."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from deliveries.models import Attempt
from tests.factories import make_delivery, make_event

pytestmark = pytest.mark.django_db

LOGS = [
    {"level": "log", "message": "sending order A-1"},
    {"level": "error", "message": "CRM said <no>"},
]
EXCHANGE = {
    "request": {"method": "POST", "url": "https://crm.example.com/orders", "headers": {}, "body": "{}"},
    "response": {"status": 500, "headers": {}, "body": "boom"},
    "duration_ms": 12,
}


def attempt(destination, source, *, logs=LOGS, outcome="failed", status="failed", code="function_error", **fields):
    event = make_event(source, received_at=timezone.now() - timedelta(minutes=5), user_id="user-42")
    delivery = make_delivery(
        destination, event, status=status, attempts=1, error_code=code, error_message="Error: CRM down", **fields
    )
    Attempt.objects.create(
        delivery=delivery,
        number=1,
        started_at=timezone.now(),
        outcome=outcome,
        error_code=code,
        error_message="Error: CRM down",
        exchanges=[EXCHANGE],
        logs=logs,
    )
    return delivery


def test_the_debugger_shows_an_attempt_s_console_beside_its_exchanges(admin_client, source, destination):
    delivery = attempt(destination, source)

    html = admin_client.get(
        reverse("admin:deliveries_event_debugger_detail", args=[delivery.event_id])
    ).content.decode()

    assert '<span class="log log-log"><span class="log-level">log</span> sending order A-1</span>' in html
    assert '<span class="log log-error"><span class="log-level">error</span> CRM said &lt;no&gt;</span>' in html
    assert html.index("https://crm.example.com/orders") < html.index("sending order A-1")


def test_an_attempt_that_logged_nothing_has_no_console(admin_client, source, destination):
    delivery = attempt(destination, source, logs=[])

    html = admin_client.get(
        reverse("admin:deliveries_event_debugger_detail", args=[delivery.event_id])
    ).content.decode()
    page = admin_client.get(reverse("admin:deliveries_delivery_change", args=[delivery.pk])).content.decode()

    assert 'class="console"' not in html
    assert 'class="console"' not in page


def test_the_delivery_page_shows_the_console_and_a_filtered_attempt_as_filtered(admin_client, source, destination):
    delivery = attempt(destination, source, outcome="filtered", status="filtered", code="event_not_supported")

    html = admin_client.get(reverse("admin:deliveries_delivery_change", args=[delivery.pk])).content.decode()

    assert '<span class="status outcome-filtered">Filtered (not sent)</span>' in html
    assert "Why it was filtered" in html
    assert "sending order A-1" in html
    assert "integrations/exchanges.css" in html


def test_event_delivery_samples_show_the_console(admin_client, source, destination):
    attempt(destination, source)
    page = admin_client.get(reverse("admin:deliveries_delivery_event_delivery", args=[destination.pk]))
    samples_url = page.context["issues"][0]["samples_url"]

    html = admin_client.get(samples_url).content.decode()

    assert "CRM said &lt;no&gt;" in html


def test_an_event_tester_send_shows_each_attempt_s_console(admin_client, source, destination):
    delivery = attempt(destination, source, is_test=True)

    result = admin_client.get(reverse("admin:deliveries_event_tester_result", args=[delivery.pk])).json()

    assert result["logs"] == [{"attempt": 1, "lines": LOGS}]
    assert '<span class="attempt quiet">Attempt 1</span>' in result["html"]
    assert "sending order A-1" in result["html"]

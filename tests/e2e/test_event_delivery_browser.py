"""Event Delivery in a real browser: from the dashboard's problem destination to its page, its chart and an
issue's samples (received event, request sent, response), then Retry these."""

from __future__ import annotations

import json
import random
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from deliveries.engine import rollups
from deliveries.models import Attempt, Delivery, Event
from integrations.models import Destination, Source

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

API_KEY = "sk-browser-never-shown-42"
HINT = "Send a valid email in traits.email, or filter out events without one."


def seed(source: Source) -> Destination:
    """A CRM webhook that delivers most events, fails some with two errors, and has a day of history."""
    crm = Destination.objects.create(
        name="CRM webhook",
        slug="crm-webhook",
        vendor="webhook",
        config={"url": "https://crm.example.com/in"},
        credentials={"headers": {"X-Api-Key": API_KEY}},
        last_error="HTTP 422: email is not valid",
        last_error_code="http_422",
        last_error_hint=HINT,
        last_error_at=timezone.now() - timedelta(minutes=4),
    )
    crm.sources.add(source)
    newsletter = {"url": "https://n.example.com"}
    Destination.objects.create(
        name="Old newsletter", slug="old-newsletter", vendor="webhook", config=newsletter, paused=True
    )
    now = timezone.now()
    rng = random.Random(6)
    outcomes = []
    for minute in range(0, 24 * 60, 3):
        at = now - timedelta(minutes=minute)
        outcomes += [(crm.pk, at, "delivered", int(rng.lognormvariate(5.5, 0.6))) for _ in range(rng.randint(2, 6))]
        if 300 < minute < 420 or rng.random() < 0.05:
            outcomes += [(crm.pk, at, "failed", None)] * rng.randint(1, 3)
    rollups.add(outcomes)
    errors = [
        ("http_422", "HTTP 422: email is not valid", HINT, 6),
        ("http_503", "HTTP 503: Service Unavailable", "", 2),
    ]
    for code, message, hint, count in errors:
        for i in range(count):
            at = now - timedelta(minutes=5 + 17 * i)
            message_id = str(uuid.uuid4())
            payload = {
                "type": "track",
                "event": "Order Completed",
                "userId": f"user-{i}",
                "messageId": message_id,
                "properties": {"order_id": f"A-{1000 + i}", "total": 49.5},
                "context": {"traits": {"email": f"not-an-email-{i}"}},
            }
            event = Event.objects.create(
                source=source,
                message_id=message_id,
                type="track",
                event="Order Completed",
                user_id=f"user-{i}",
                payload=payload,
                received_at=at,
                timestamp=at,
            )
            status = "failed" if code == "http_422" else "retrying"
            delivery = Delivery.objects.create(
                event=event,
                destination=crm,
                status=status,
                attempts=1,
                error_code=code,
                error_message=message,
                hint=hint,
                next_attempt_at=now + timedelta(minutes=5) if status == "retrying" else None,
                created_at=at,
            )
            status_code = int(code[5:])
            Attempt.objects.create(
                delivery=delivery,
                number=1,
                started_at=at,
                duration_ms=87,
                outcome="failed" if status == "failed" else "retry",
                status_code=status_code,
                error_code=code,
                error_message=message,
                hint=hint,
                exchanges=[
                    {
                        "request": {
                            "method": "POST",
                            "url": "https://crm.example.com/in",
                            "headers": {"Content-Type": "application/json", "X-Api-Key": "••••••••"},
                            "body": json.dumps({"event": "Order Completed", "email": f"not-an-email-{i}"}),
                        },
                        "response": {
                            "status": status_code,
                            "headers": {"Content-Type": "application/json"},
                            "body": json.dumps({"error": message.split(": ", 1)[1]}),
                        },
                        "error": "",
                        "duration_ms": 87,
                    }
                ],
            )
    return crm


def test_a_marketer_follows_a_failing_destination_from_the_dashboard_to_its_samples(
    page: Page, live_server, django_user_model, artifacts: Path
):
    django_user_model.objects.create_superuser("admin", "admin@example.com", "correct horse")
    website = Source.objects.create(name="Website", slug="website", write_key="wk_browser_ed")
    crm = seed(website)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "correct horse")
    page.click("input[type=submit]")

    problems = page.locator("#db-problems")
    expect(problems).to_contain_text("CRM webhook")
    expect(problems).to_contain_text("Send a valid email in traits.email")
    expect(problems).to_contain_text("Old newsletter")
    page.screenshot(path=artifacts / "dashboard.png", full_page=True)

    problems.get_by_role("link", name="CRM webhook").click()
    expect(page.locator("h1")).to_have_text("Event Delivery: CRM webhook")
    expect(page.locator('[data-tile="failed"] .ed-value')).not_to_have_text("0")
    expect(page.locator('[data-tile="retrying"] .ed-value')).to_have_text("2")
    page.wait_for_function("() => Chart.getChart(document.getElementById('ed-trends')) !== undefined")

    page.screenshot(path=artifacts / "event-delivery-top.png")
    issues = page.locator("#ed-issues tbody.ed-issue")
    expect(issues).to_have_count(2)
    first = issues.first
    expect(first).to_contain_text("http_422")
    expect(first).to_contain_text("6")
    first.get_by_role("button", name="Show samples").click()
    samples = first.locator(".ed-sample")
    expect(samples).to_have_count(6)
    expect(samples.first).to_contain_text("Received")
    expect(samples.first.locator(".ed-received")).to_contain_text('"order_id": "A-1000"')
    samples.first.locator("details.exchange").first.scroll_into_view_if_needed()
    expect(samples.first.locator("details.exchange").first).to_contain_text("email is not valid")
    assert API_KEY not in page.content()
    page.screenshot(path=artifacts / "event-delivery.png", full_page=True)

    page.once("dialog", lambda dialog: dialog.accept())
    first.get_by_role("button", name="Retry these").click()
    expect(page.locator(".messagelist")).to_contain_text("6 deliveries to CRM webhook will be sent again now.")
    # Sync tasks in tests: the kick already tried them again (crm.example.com is not reachable from here).
    group = Delivery.objects.filter(destination=crm, event__event="Order Completed", attempts__gte=2)
    assert group.count() == 6

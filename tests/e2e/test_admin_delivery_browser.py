"""The admin in a real browser: add a destination through its form, send it an event that fails, read the
attempt's HTTP exchange, and retry it once the receiver is back."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.utils import timezone
from playwright.sync_api import Page, expect

from deliveries.models import Attempt, Delivery, Event
from integrations.models import Destination, Source
from tests.receiver import Receiver

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SIGNING_SECRET = "whsec_YnJvd3Nlci10ZXN0LXNpZ25pbmcta2V5"
API_KEY = "sk-browser-0123456789"


def seed_history(source: Source) -> None:
    """Another destination with a day of deliveries, so the lists look like a hub in use."""
    segment = Destination.objects.create(
        name="Segment copy",
        slug="segment-copy",
        vendor="segment",
        config={"base_url": "https://api.segment.io"},
        credentials={"write_key": "browser-segment-write-key"},
        last_delivered_at=timezone.now() - timedelta(minutes=12),
        last_error="HTTP 400: Invalid write key",
        last_error_at=timezone.now() - timedelta(hours=3),
    )
    # Fed by another source: the event this test sends must not go to api.segment.io.
    segment.sources.add(Source.objects.create(name="Mobile app", slug="mobile", write_key="wk_browser_mobile"))
    Destination.objects.create(
        name="Old CRM hook", slug="old-crm", vendor="webhook", config={"url": "https://crm.example.com/in"}, paused=True
    )
    now = timezone.now()
    for minutes, status, error in [
        (200, "failed", ("http_400", "HTTP 400: Invalid write key")),
        (120, "delivered", ("", "")),
        (60, "delivered", ("", "")),
        (30, "filtered", ("consent", "The user has not consented to Advertising.")),
        (12, "delivered", ("", "")),
    ]:
        at = now - timedelta(minutes=minutes)
        message_id = str(uuid.uuid4())
        event = Event.objects.create(
            source=source,
            message_id=message_id,
            type="track",
            event="Product Viewed",
            user_id="user-7",
            payload={"type": "track", "event": "Product Viewed", "userId": "user-7", "messageId": message_id},
            received_at=at,
            timestamp=at,
        )
        Delivery.objects.create(
            event=event,
            destination=segment,
            status=status,
            attempts=0 if status == "filtered" else 1,
            error_code=error[0],
            error_message=error[1],
            delivered_at=at + timedelta(seconds=1) if status == "delivered" else None,
            latency_ms=1000 if status == "delivered" else None,
            created_at=at,
        )


def test_a_marketer_adds_a_destination_reads_a_failed_delivery_and_retries_it(
    page: Page, live_server, django_user_model, artifacts: Path
):
    django_user_model.objects.create_superuser("admin", "admin@example.com", "correct horse")
    website = Source.objects.create(name="Website", slug="website", write_key="wk_browser_delivery")
    seed_history(website)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "correct horse")
    page.click("input[type=submit]")

    with Receiver() as receiver:
        # Add a webhook destination through the form.
        page.get_by_role("link", name="Destinations").first.click()
        page.get_by_role("link", name="Add destination").click()
        page.locator("#id_name").press_sequentially("Welcome webhook")  # keystrokes: the slug follows
        expect(page.locator("#id_slug")).to_have_value("welcome-webhook")
        page.select_option("#id_vendor", "webhook")
        expect(page.locator('.credential-group[data-vendor="segment"]')).to_be_hidden()
        page.get_by_label("Website").check()
        # First with mistakes: each is explained next to its field, the limits open to show theirs.
        page.fill("#id_config", '{"url": "hooks.example.com/in"}')
        page.locator("details", has_text="Limits and retries").locator("summary").click()
        page.fill("#id_retry_deadline", "40 00:00:00")
        page.get_by_role("button", name="Save", exact=True).click()
        expect(page.locator(".field-config .errorlist")).to_have_text("config.url: must start with http:// or https://")
        expect(page.locator(".field-retry_deadline .errorlist")).to_have_text(
            "retry_deadline: must be more than 0 seconds and at most 30 days"
        )
        page.screenshot(path=artifacts / "destination-errors.png", full_page=True)

        page.fill("#id_config", f'{{"url": "{receiver.url}"}}')
        page.fill("#id_retry_deadline", "4:00:00")
        page.fill("#id_credentials__webhook__signing_secret", SIGNING_SECRET)
        page.fill("#id_credentials__webhook__headers", f'{{"X-Api-Key": "{API_KEY}"}}')
        page.get_by_role("button", name="Save", exact=True).click()

        expect(page.locator(".messagelist")).to_contain_text("was added successfully")
        row = page.locator("#result_list tr", has_text="Welcome webhook")
        expect(row.locator("td.field-state")).to_have_text("Enabled")
        expect(row.locator("td.field-credentials_")).to_contain_text("signing_secret: ••••••••")
        segment_row = page.locator("#result_list tr", has_text="Segment copy")
        expect(segment_row.locator("td.field-delivered_24h")).to_have_text("3")
        expect(segment_row.locator("td.field-failed_24h")).to_have_text("1")
        page.screenshot(path=artifacts / "destinations.png", full_page=True)

        row.locator("th a").click()
        expect(page.locator(".field-credentials_")).to_contain_text("headers: X-Api-Key: ••••••••")
        expect(page.locator(".credential-state[data-key=headers]")).to_have_text("X-Api-Key: •••••••• Remove")
        expect(page.locator("#id_credentials__webhook__signing_secret")).to_have_value("")
        assert SIGNING_SECRET not in page.content()
        assert API_KEY not in page.content()
        page.screenshot(path=artifacts / "destination.png", full_page=True)

        # An event arrives while the receiver is down for maintenance: the attempt records the 503.
        receiver.answer(503, {"message": "Down for maintenance, back soon"})
        response = requests.post(
            f"{live_server.url}/v1/track",
            json={"userId": "user-1", "event": "Signed Up", "properties": {"plan": "pro"}},
            auth=(website.write_key, ""),
            timeout=10,
        )
        assert response.status_code == 200
        receiver.answer(None)

        page.locator(".object-tools").get_by_role("link", name="Deliveries").click()
        rows = page.locator("#result_list tbody tr")
        expect(rows).to_have_count(1)
        expect(rows.first.locator("td.field-status_")).to_have_text("Retrying")
        expect(rows.first.locator("td.field-error_")).to_contain_text("http_503")
        page.goto(f"{live_server.url}/admin/deliveries/delivery/")
        expect(page.locator("#result_list tbody tr")).to_have_count(6)
        page.screenshot(path=artifacts / "deliveries.png", full_page=True)

        page.locator("#result_list tr", has_text="Welcome webhook").locator("th a").click()
        exchange = page.locator("details.exchange").first
        expect(exchange).to_have_attribute("open", "")
        expect(exchange.locator("summary")).to_contain_text(f"POST {receiver.url}")
        expect(exchange.locator("summary")).to_contain_text("HTTP 503")
        expect(exchange).to_contain_text("X-Api-Key: [REDACTED]")
        expect(exchange).to_contain_text('"message": "Down for maintenance, back soon"')
        assert API_KEY not in page.content()
        page.screenshot(path=artifacts / "delivery.png", full_page=True)

        page.get_by_role("button", name="Retry now").click()
        expect(page.locator(".messagelist")).to_contain_text("Re-queued: the delivery is being sent now.")
        expect(page.locator(".field-status_")).to_contain_text("Delivered")
        attempts = page.locator(".inline-group tbody tr.has_original")
        expect(attempts).to_have_count(2)
        expect(attempts.first).to_contain_text("HTTP 200")
        page.screenshot(path=artifacts / "delivery-retried.png", full_page=True)
        assert re.search(r"/admin/deliveries/delivery/\d+/change/", page.url)

        # The event's page lists where it went.
        page.locator(".field-event_ a").click()
        deliveries = page.locator("#deliveries-group tbody tr.has_original")
        expect(deliveries).to_have_count(1)
        expect(deliveries.first).to_contain_text("Welcome webhook")
        expect(deliveries.first.locator(".status")).to_have_text("Delivered")
        page.screenshot(path=artifacts / "event-deliveries.png", full_page=True)

    delivery = Delivery.objects.get(destination__slug="welcome-webhook")
    assert delivery.status == Delivery.Status.DELIVERED
    assert list(Attempt.objects.filter(delivery=delivery).values_list("status_code", flat=True)) == [503, 200]

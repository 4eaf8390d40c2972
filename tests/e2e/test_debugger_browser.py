"""The Debugger in a real browser: an event posted to the Tracking API appears live within 2 seconds, Pause
holds new ones back, and the event's trace opens with its Pretty and Raw payload and the request it made."""

from __future__ import annotations

import base64
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.utils import timezone
from playwright.sync_api import Page, expect

from deliveries.models import Delivery, Event
from integrations.models import Destination, Source
from tests.factories import make_delivery, make_event
from tests.receiver import Receiver

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def track(live_server, source: Source, **event: object) -> None:
    auth = "Basic " + base64.b64encode(f"{source.write_key}:".encode()).decode()
    response = requests.post(f"{live_server.url}/v1/track", json=event, headers={"Authorization": auth}, timeout=10)
    assert response.status_code == 200, response.text


def seed(source: Source, hook: Destination) -> None:
    """Some history, so the list looks like a hub in use: delivered, failed, rejected."""
    now = timezone.now()
    for minutes, name, status in [(30, "Product Viewed", "delivered"), (20, "Cart Viewed", "failed")]:
        event = make_event(source, received_at=now - timedelta(minutes=minutes), event=name, user_id="user-7")
        make_delivery(hook, event, status=status, attempts=1, error_code="http_400" if status == "failed" else "")
    refused = make_event(source, received_at=now - timedelta(minutes=10), event="", user_id="")
    Event.objects.filter(pk=refused.pk).update(
        status=Event.Status.REJECTED, reject_reason="userId or anonymousId is required"
    )


def test_a_marketer_watches_an_event_arrive_live_and_reads_where_it_went(
    page: Page, live_server, marketer, artifacts: Path
):
    website = Source.objects.create(name="Website", slug="website", write_key="wk_browser_debugger")

    with Receiver() as receiver:
        hook = Destination.objects.create(
            name="Welcome webhook", slug="welcome-webhook", vendor="webhook", config={"url": receiver.url}
        )
        hook.sources.add(website)
        seed(website, hook)

        page.set_viewport_size({"width": 1440, "height": 900})
        page.goto(f"{live_server.url}/admin/")
        page.fill("#id_username", "mia")
        page.fill("#id_password", "pw")
        page.click("input[type=submit]")
        page.goto(f"{live_server.url}/admin/deliveries/event/")
        page.locator(".object-tools").get_by_role("link", name="Debugger").click()

        rows = page.locator("#debugger-rows tr.event-row")
        expect(rows).to_have_count(3)
        expect(rows.nth(0).locator(".rejected")).to_have_attribute("title", "userId or anonymousId is required")
        expect(rows.nth(1).locator(".failed-badge")).to_be_visible()
        expect(page.locator("#live-state")).to_contain_text("Live")

        # Live: an event posted now shows at the top within 2 seconds.
        track(live_server, website, userId="user-1", event="Signed Up", properties={"plan": "pro"})
        posted = time.monotonic()
        expect(rows.first.locator("td.name")).to_have_text("Signed Up", timeout=2000)
        assert time.monotonic() - posted < 2.0
        expect(rows).to_have_count(4)
        expect(rows.first.locator("td.summary")).to_contain_text("1 delivered")
        page.screenshot(path=artifacts / "debugger-live.png", full_page=True)

        # Paused: nothing new comes in; Live again brings it.
        page.get_by_role("button", name="Pause").click()
        expect(page.locator("#live-state")).to_contain_text("Paused")
        track(live_server, website, userId="user-2", event="Order Completed", properties={"revenue": 42})
        page.wait_for_timeout(2500)
        expect(rows).to_have_count(4)
        page.screenshot(path=artifacts / "debugger-paused.png", full_page=True)
        page.get_by_role("button", name="Live").click()
        expect(rows.first.locator("td.name")).to_have_text("Order Completed", timeout=2000)
        expect(rows).to_have_count(5)

        # Open it: the trace in the side panel, Pretty first, then Raw.
        rows.nth(1).locator("td.name").click()
        panel = page.locator("#event-panel")
        expect(panel).to_be_visible()
        expect(panel.locator(".panel-title")).to_have_text("track Signed Up")
        expect(panel.locator(".payload-pretty")).to_be_visible()
        expect(panel.locator(".payload-pretty")).to_contain_text('"plan": "pro"')
        expect(panel.locator(".trace")).to_have_count(1)
        expect(panel.locator(".trace-head .status")).to_have_text("Delivered")
        expect(panel.locator("details.exchange summary").first).to_contain_text(f"POST {receiver.url}")
        expect(panel.locator("details.exchange summary").first).to_contain_text("HTTP 200")
        expect(panel.get_by_role("link", name="Replay")).to_be_visible()
        page.screenshot(path=artifacts / "debugger-panel-pretty.png", full_page=False)

        panel.get_by_role("tab", name="Raw").click()
        expect(panel.locator(".payload-raw")).to_be_visible()
        expect(panel.locator(".payload-pretty")).to_be_hidden()
        expect(panel.locator(".raw-json")).to_contain_text('"event":"Signed Up"')
        page.screenshot(path=artifacts / "debugger-panel-raw.png", full_page=False)
        assert website.write_key not in page.content()

        # The event's own page shows the same trace.
        panel.locator(".panel-bar").get_by_role("link", name="Open as a page").click()
        expect(page.locator(".event-detail .trace")).to_have_count(1)
        expect(page.locator(".payload-pretty")).to_be_visible()
        page.screenshot(path=artifacts / "debugger-event.png", full_page=True)

    assert Delivery.objects.filter(destination=hook, status=Delivery.Status.DELIVERED).count() == 3

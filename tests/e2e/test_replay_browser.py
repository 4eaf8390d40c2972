"""Replay in a real browser: a marketer picks a failed event, counts what a replay would send, replays it through
the real worker to a local receiver, and watches the progress bar reach done."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from deliveries.models import Delivery, Event, Replay
from integrations.models import Destination, Source
from tests.e2e.conftest import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def stored_event(source: Source, name: str, minutes_ago: int) -> Event:
    at = timezone.now() - timedelta(minutes=minutes_ago)
    message_id = str(uuid.uuid4())
    payload = {"type": "track", "event": name, "userId": "user-7", "messageId": message_id, "properties": {}}
    return Event.objects.create(
        source=source,
        message_id=message_id,
        type="track",
        event=name,
        user_id="user-7",
        payload=payload,
        received_at=at,
        timestamp=at,
    )


def test_a_marketer_replays_a_failed_event_and_watches_it_delivered(
    page: Page, live_server, marketer, artifacts: Path, receivers, start_worker
):
    website = Source.objects.create(name="Website", slug="website", write_key="wk_browser_replay")
    receiver = receivers()
    hook = Destination.objects.create(
        name="Welcome webhook", slug="welcome-webhook", vendor="webhook", config={"url": receiver.url}
    )
    hook.sources.add(website)
    failed = stored_event(website, "Order Completed", 30)
    Delivery.objects.create(
        event=failed,
        destination=hook,
        status="failed",
        attempts=5,
        error_code="http_503",
        error_message="HTTP 503: Down for maintenance (gave up after 5 attempts: the retry deadline has passed)",
        created_at=failed.received_at,
    )
    delivered = stored_event(website, "Order Completed", 20)
    Delivery.objects.create(
        event=delivered, destination=hook, status="delivered", attempts=1, created_at=delivered.received_at
    )
    start_worker()

    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "mia")
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")

    # From the Debugger's "Replay by these filters" link: failed Order Completed events of the Website.
    page.goto(
        f"{live_server.url}/admin/deliveries/replay/add/?source={website.pk}&event=Order+Completed"
        f"&delivery_status=failed&destination={hook.pk}"
    )
    expect(page.locator("#id_delivery_status")).to_have_value("failed")
    expect(page.get_by_label("Welcome webhook (Webhook)")).to_be_checked()
    page.screenshot(path=artifacts / "replay-form.png", full_page=True)

    page.get_by_role("button", name="Count").click()
    row = page.locator("tr.replay-count")
    expect(row.locator("td.matched")).to_have_text("1")
    expect(row.locator("td.to-send")).to_have_text("1")
    page.screenshot(path=artifacts / "replay-count.png", full_page=True)

    # Any status: the delivered one is counted, and skipped.
    page.select_option("#id_delivery_status", "any")
    page.get_by_role("button", name="Count").click()
    expect(row.locator("td.matched")).to_have_text("2")
    expect(row.locator("td.delivered")).to_contain_text("1 · skipped")
    page.get_by_role("button", name="Replay 1 event").click()

    expect(page.locator("h1")).to_have_text(f"Replay {Replay.objects.get().pk}")
    expect(page.locator("[data-field=status_label]")).to_have_text("Done", timeout=30_000)
    expect(page.locator("[data-field=delivered]")).to_have_text("1")
    expect(page.locator("[data-field=skipped_delivered]")).to_have_text("1")
    assert page.locator("#replay-bar").evaluate("bar => bar.value") == 100
    page.screenshot(path=artifacts / "replay-progress.png", full_page=True)

    wait_until(lambda: receiver.successes[failed.message_id] == 1, 10, "the receiver got the replayed event")
    assert receiver.successes[delivered.message_id] == 0
    delivery = Delivery.objects.get(event=failed)
    assert (delivery.status, delivery.replay_id) == ("delivered", Replay.objects.get().pk)

    page.goto(f"{live_server.url}/admin/deliveries/replay/")
    list_row = page.locator("#result_list tbody tr").first
    expect(list_row.locator("td.field-status_")).to_have_text("Done")
    expect(list_row.locator("td.field-counts")).to_contain_text("1 delivered")
    page.screenshot(path=artifacts / "replay-list.png", full_page=True)

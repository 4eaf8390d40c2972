"""The marketer's whole path in a real browser, as a member of the Marketer group, against the vendor sandbox's
Marketing Cloud and a real worker: watch an identify arrive live in the Debugger, open it, send it to the
Event Tester, dry run, send, find the failure in Event Delivery with its sample, fix the destination's mapping,
replay the failed event and see it delivered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect

from deliveries.models import Delivery, Event, Replay
from integrations.models import Destination, Source
from integrations.sandbox import Sandbox
from tests.e2e.conftest import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.walkthrough, pytest.mark.django_db(transaction=True)]

CLIENT_SECRET = "sandbox-sfmc-secret"
WRITE_KEY = "wk_browser_marketer_path"


def test_a_marketer_finds_why_a_journey_did_not_fire_fixes_the_mapping_and_replays_the_event(
    page: Page, live_server, marketer, artifacts: Path, start_worker
):
    website = Source.objects.create(name="Website", slug="website", write_key=WRITE_KEY)

    with Sandbox(port=0) as sandbox:
        # Set up by an administrator: the mapping sends "planName", which the journey's entry data extension
        # does not have (its column is "plan").
        journey = Destination.objects.create(
            name="Welcome journey",
            slug="welcome-journey",
            vendor="sfmc_journey",
            config={
                "auth_base_url": sandbox.url + "/sfmc/auth",
                "rest_base_url": sandbox.url + "/sfmc/rest",
                "event_definition_key": "APIEvent-welcome",
            },
            credentials={"client_id": "sandbox-sfmc-client", "client_secret": CLIENT_SECRET},
            filter={"types": ["identify"], "events": [], "condition": None},
            mapping={"ContactKey": "userId", "Data": {"email": "traits.email", "planName": "traits.plan"}},
            timeout=5.0,
        )
        journey.sources.add(website)
        start_worker()

        page.set_viewport_size({"width": 1440, "height": 900})
        page.goto(f"{live_server.url}/admin/")
        page.fill("#id_username", "mia")
        page.fill("#id_password", "pw")
        page.click("input[type=submit]")
        page.get_by_role("link", name="Debugger", exact=True).first.click()
        expect(page.locator("h1")).to_have_text("Debugger")
        expect(page.locator("#live-state")).to_contain_text("Live")

        # 1. The app sends an identify: it shows in the Debugger within 2 seconds.
        response = requests.post(
            f"{live_server.url}/v1/identify",
            json={"userId": "user-42", "traits": {"email": "ada@example.com", "plan": "pro"}},
            auth=(WRITE_KEY, ""),
            timeout=10,
        )
        assert response.status_code == 200
        rows = page.locator("#debugger-rows tr.event-row")
        expect(rows.first).to_contain_text("user-42", timeout=2000)
        event = Event.objects.get(user_id="user-42")
        delivery = wait_until(
            lambda: Delivery.objects.filter(event=event, status=Delivery.Status.FAILED).first(),
            20,
            "the journey refused the event",
        )
        page.screenshot(path=artifacts / "path-1-debugger.png", full_page=True)

        # 2. Open it: the trace says the journey refused it, with the vendor's answer and how to fix it.
        page.reload()
        rows.first.locator("td.type").click()
        panel = page.locator("#event-panel")
        expect(panel.locator(".trace-head .status")).to_have_text("Failed")
        expect(panel).to_contain_text("planName")
        expect(panel).to_contain_text("does not exist")
        page.screenshot(path=artifacts / "path-2-event.png")

        # 3. Send it to the Event Tester: dry run, then send.
        panel.get_by_role("link", name="Send to Event Tester").click()
        expect(page.locator("h1")).to_have_text("Event Tester")
        page.select_option("#tester-destination", str(journey.pk))
        assert json.loads(page.locator("#tester-payload").input_value())["traits"]["plan"] == "pro"
        page.get_by_role("button", name="Dry run").click()
        expect(page.locator(".routing")).to_contain_text("Would be sent.")
        expect(page.locator(".preview-request")).to_contain_text('"planName": "pro"')
        page.screenshot(path=artifacts / "path-3-tester-dry-run.png", full_page=True)
        page.get_by_role("button", name="Send test event").click()
        sent = page.locator("#tester-sent")
        expect(sent.locator(".sent-status .status")).to_have_text("Failed", timeout=20_000)
        label = sent.locator(".pager-label")
        expect(label).to_contain_text("Exchange 1 of")
        while sent.get_by_role("button", name="Next").is_enabled():
            sent.get_by_role("button", name="Next").click()
        expect(sent.locator(".exchange-page:not([hidden])")).to_contain_text("does not exist")
        page.screenshot(path=artifacts / "path-4-tester-sent.png", full_page=True)

        # 4. Event Delivery for the journey: the issue, its hint and its sample.
        page.goto(f"{live_server.url}/admin/deliveries/delivery/event-delivery/{journey.pk}/?window=1h")
        expect(page.locator("h1")).to_have_text("Event Delivery: Welcome journey")
        issue = page.locator("#ed-issues tbody.ed-issue").first
        expect(issue).to_contain_text("unknown_data_field")
        expect(issue).to_contain_text("remove it from the mapping")
        issue.get_by_role("button", name="Show samples").click()
        sample = issue.locator(".ed-sample").first
        expect(sample.locator(".ed-received")).to_contain_text('"plan": "pro"')
        expect(sample).to_contain_text("planName")
        page.screenshot(path=artifacts / "path-5-event-delivery.png", full_page=True)

        # 5. Fix the destination: a marketer may change its mapping (not its credentials).
        page.goto(f"{live_server.url}/admin/integrations/destination/{journey.pk}/change/")
        mapping = {"ContactKey": "userId", "Data": {"email": "traits.email", "plan": "traits.plan"}}
        page.fill("#id_mapping", json.dumps(mapping))
        page.get_by_role("button", name="Save", exact=True).click()
        expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
        journey.refresh_from_db()
        assert journey.mapping == mapping
        assert journey.credentials["client_secret"] == CLIENT_SECRET  # untouched

        # 6. Replay the failed event to the journey: count first, confirm, watch it delivered.
        page.goto(
            f"{live_server.url}/admin/deliveries/replay/add/?destination={journey.pk}&delivery_status=failed"
            f"&source={website.pk}"
        )
        page.get_by_label("I understand what sending these events again does").check()
        page.get_by_role("button", name="Count").click()
        expect(page.locator("tr.replay-count td.to-send")).to_have_text("1")
        page.screenshot(path=artifacts / "path-6-replay-count.png", full_page=True)
        page.get_by_role("button", name="Replay 1 event").click()
        expect(page.locator("[data-field=status_label]")).to_have_text("Done", timeout=30_000)
        expect(page.locator("[data-field=delivered]")).to_have_text("1")
        page.screenshot(path=artifacts / "path-7-replay-done.png", full_page=True)

        # The contact entered the journey with the fixed field, and the Debugger's trace says delivered.
        [entry] = sandbox.journey_entries
        assert (entry["contactKey"], entry["data"].get("plan")) == ("user-42", "pro")
        delivery.refresh_from_db()
        assert (delivery.status, delivery.replay_id) == (Delivery.Status.DELIVERED, Replay.objects.get().pk)
        page.goto(f"{live_server.url}/admin/deliveries/event/debugger/{event.pk}/")
        expect(page.locator(".event-detail .trace .trace-head .status").first).to_have_text("Delivered")
        page.screenshot(path=artifacts / "path-8-event-delivered.png", full_page=True)
        assert CLIENT_SECRET not in page.content()

"""The Event Tester in a real browser, as a marketer: open it from a stored event, see the dry run filter it, turn
it into an identify with the form builder, dry run again, send it through a real worker to a local stand-in for
Marketing Cloud, and page through the token call and the journey call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from deliveries.models import Delivery, Event
from integrations.crypto import MASK
from integrations.models import Destination, Source
from tests.factories import make_event

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CLIENT_SECRET = "s3cr3t-browser-tester-Qm9vbi1z"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.browser-tester.fake"


def test_a_marketer_dry_runs_and_sends_an_event_and_pages_through_its_exchanges(
    page: Page, live_server, marketer, artifacts: Path, receivers, start_worker
):
    website = Source.objects.create(name="Website", slug="website", write_key="wk_browser_tester")
    # Marketing Cloud's token and REST hosts, both answered by one local receiver.
    sfmc = receivers()
    sfmc.answer(200, {"access_token": TOKEN, "expires_in": 1079, "eventInstanceId": "7f0c2a4e-b1d9-4c55"})
    base = sfmc.url.rsplit("/", 1)[0]
    journey = Destination.objects.create(
        name="Welcome journey",
        slug="welcome-journey",
        vendor="sfmc_journey",
        config={"auth_base_url": base, "rest_base_url": base, "event_definition_key": "APIEvent-welcome"},
        credentials={"client_id": "cid-browser-tester", "client_secret": CLIENT_SECRET},
        filter={"types": ["identify"], "events": [], "condition": None},
        timeout=5.0,
    )
    journey.sources.add(website)
    stored = make_event(website, event="Order Completed", user_id="user-7")
    start_worker()

    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "mia")
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")

    # Opened from the stored event (as the Debugger's "send to tester" does): the form follows its JSON.
    page.goto(f"{live_server.url}/admin/deliveries/event/tester/?event={stored.pk}&destination={journey.pk}")
    expect(page.locator("#tester-destination")).to_have_value(str(journey.pk))
    expect(page.locator("#tester-source")).to_have_value(str(website.pk))
    expect(page.locator("#b-type")).to_have_value("track")
    expect(page.locator("#b-name")).to_have_value("Order Completed")
    expect(page.locator("#b-user")).to_have_value("user-7")
    expect(page.locator("#b-rows .b-key")).to_have_value("plan")
    page.screenshot(path=artifacts / "tester-prefilled.png", full_page=True)

    page.get_by_role("button", name="Dry run").click()
    expect(page.locator(".routing")).to_have_text(
        "Would be filtered: The filter lets through identify only, not track. (Send test event sends it anyway.)"
    )
    page.screenshot(path=artifacts / "tester-dry-run-filtered.png", full_page=True)

    # Build the identify with the form: the JSON follows, values that parse as JSON stay numbers.
    page.select_option("#b-type", "identify")
    expect(page.locator("#b-rows-title")).to_have_text("Traits")
    expect(page.locator("#b-name")).to_be_hidden()  # an identify has no name
    page.locator("#b-rows .b-key").first.fill("email")
    page.locator("#b-rows .b-value").first.fill("ada@example.com")
    page.get_by_role("button", name="Add a row").click()
    page.locator("#b-rows .b-key").nth(1).fill("firstName")
    page.locator("#b-rows .b-value").nth(1).fill("Ada")
    page.get_by_role("button", name="Add a row").click()
    page.locator("#b-rows .b-key").nth(2).fill("visits")
    page.locator("#b-rows .b-value").nth(2).fill("12")
    event = json.loads(page.locator("#tester-payload").input_value())
    assert event["type"] == "identify"
    assert "event" not in event
    assert event["traits"] == {"email": "ada@example.com", "firstName": "Ada", "visits": 12}

    page.get_by_role("button", name="Dry run").click()
    expect(page.locator(".routing")).to_contain_text("Would be sent.")
    request = page.locator(".preview-request")
    expect(request).to_have_count(1)
    expect(request.locator(".preview-title")).to_contain_text(f"POST {base}/interaction/v1/events")
    expect(request).to_contain_text(f"After an OAuth token call to {base}/v2/token")
    expect(request).to_contain_text(f"Authorization: {MASK}")
    expect(page.locator("#tester-dry-run")).to_contain_text('"firstName": "Ada"')
    assert CLIENT_SECRET not in page.content()
    assert len(sfmc.requests) == 0  # a dry run sends nothing
    page.screenshot(path=artifacts / "tester-dry-run.png", full_page=True)

    # Send: the worker sends it while the page polls for the outcome.
    page.get_by_role("button", name="Send test event").click()
    panel = page.locator("#tester-sent")
    expect(panel.locator(".sent-status .status")).to_have_text("Delivered", timeout=20_000)
    expect(panel.locator(".pager-label")).to_have_text("Exchange 1 of 2")
    first = panel.locator(".exchange-page:not([hidden])")
    expect(first.locator(".exchange-line")).to_contain_text(f"POST {base}/v2/token")
    expect(first.locator(".exchange-line")).to_contain_text("HTTP 200")
    expect(panel.get_by_role("button", name="Previous")).to_be_disabled()
    page.screenshot(path=artifacts / "tester-sent-exchange-1.png", full_page=True)

    panel.get_by_role("button", name="Next").click()
    expect(panel.locator(".pager-label")).to_have_text("Exchange 2 of 2")
    second = panel.locator(".exchange-page:not([hidden])")
    expect(second.locator(".exchange-line")).to_contain_text(f"POST {base}/interaction/v1/events")
    expect(second).to_contain_text('"EventDefinitionKey": "APIEvent-welcome"')
    expect(second).to_contain_text("Authorization: [REDACTED]")
    expect(panel.get_by_role("button", name="Next")).to_be_disabled()
    page.screenshot(path=artifacts / "tester-sent-exchange-2.png", full_page=True)
    panel.get_by_role("button", name="Previous").click()
    expect(panel.locator(".pager-label")).to_have_text("Exchange 1 of 2")

    content = page.content()
    assert CLIENT_SECRET not in content
    assert TOKEN not in content
    assert [r.path for r in sfmc.requests] == ["/v2/token", "/interaction/v1/events"]
    delivery = Delivery.objects.get(is_test=True)
    assert delivery.status == Delivery.Status.DELIVERED
    assert delivery.event.status == Event.Status.TEST

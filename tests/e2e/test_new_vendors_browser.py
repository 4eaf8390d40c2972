"""A new vendor is picked up from its own declaration, end to end in a real browser: an administrator adds a
Zendesk destination from its preset and a Braze one with the form's generic inputs, the Event Tester dry-runs and
sends through a real worker, and the vendor sandbox's fakes get the ticket, the user's attributes and the event.
Nothing central names either vendor: the form, the tester and the sandbox read what the vendor modules declare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect

from deliveries.models import Delivery
from integrations.crypto import MASK
from integrations.models import Destination, Source
from tests.e2e.conftest import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ZENDESK_TOKEN = "sandbox-zendesk-token"
BRAZE_KEY = "sandbox-braze-rest-key"
CHECKOUT_FAILED = {
    "type": "track",
    "event": "Checkout Failed",
    "userId": "user-42",
    "context": {"traits": {"email": "ada@example.com", "firstName": "Ada", "lastName": "Lovelace"}},
    "properties": {"cart_id": "c-42", "reason": "card declined"},
}


def log_in(page: Page, live_server, django_user_model) -> None:
    django_user_model.objects.create_superuser("admin", "admin@example.com", "correct horse")
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "correct horse")
    page.click("input[type=submit]")


def add_destination(page: Page, live_server, name: str, vendor: str) -> None:
    page.goto(f"{live_server.url}/admin/integrations/destination/add/")
    page.locator("#id_name").press_sequentially(name)
    page.select_option("#id_vendor", vendor)
    page.get_by_label("Website").check()


def test_an_administrator_sets_up_zendesk_from_its_preset_and_the_tester_sends_a_ticket(
    page: Page, live_server, django_user_model, sandbox, start_worker, artifacts: Path
):
    Source.objects.create(name="Website", slug="website", write_key="wk_browser_zendesk")
    log_in(page, live_server, django_user_model)
    start_worker()

    add_destination(page, live_server, "Failed checkouts", "zendesk")
    expect(page.locator('.vendor-help[data-vendor="zendesk"]').first).to_contain_text("action")
    page.get_by_role("button", name="Ticket from a track event (Checkout Failed)").click()
    assert json.loads(page.locator("#id_filter").input_value())["events"] == ["Checkout Failed"]
    assert json.loads(page.locator("#id_mapping").input_value())["ticket"]["subject"] == "event"
    page.fill("#id_config", json.dumps({"base_url": sandbox.url + "/zendesk", "action": "ticket"}))
    page.fill("#id_credentials__zendesk__email", "sandbox-agent@example.com")
    page.fill("#id_credentials__zendesk__api_token", ZENDESK_TOKEN)
    page.screenshot(path=artifacts / "zendesk-destination.png", full_page=True)
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    destination = Destination.objects.get(vendor="zendesk")

    page.goto(f"{live_server.url}/admin/deliveries/event/tester/?destination={destination.pk}")
    page.fill("#tester-payload", json.dumps(CHECKOUT_FAILED))
    page.get_by_role("button", name="Dry run").click()
    request = page.locator(".preview-request")
    expect(request.locator(".preview-title")).to_contain_text(f"POST {sandbox.url}/zendesk/api/v2/tickets")
    expect(request).to_contain_text(f"Authorization: {MASK}")
    expect(request).to_contain_text("Idempotency-Key")
    expect(page.locator("#tester-dry-run")).to_contain_text('"subject": "Checkout Failed"')
    assert sandbox.zendesk_tickets() == []  # a dry run sends nothing
    page.screenshot(path=artifacts / "zendesk-tester-dry-run.png", full_page=True)

    page.get_by_role("button", name="Send test event").click()
    panel = page.locator("#tester-sent")
    expect(panel.locator(".sent-status .status")).to_have_text("Delivered", timeout=20_000)
    expect(panel.locator(".exchange-page:not([hidden]) .exchange-line")).to_contain_text("HTTP 201")
    page.screenshot(path=artifacts / "zendesk-tester-sent.png", full_page=True)

    [ticket] = sandbox.zendesk_tickets()
    assert ticket["subject"] == "Checkout Failed"
    [requester] = [user for user in sandbox.zendesk_users() if user["id"] == ticket["requester_id"]]
    assert (requester["email"], requester["name"]) == ("ada@example.com", "Ada Lovelace")
    assert ZENDESK_TOKEN not in page.content()
    assert Delivery.objects.get(is_test=True).status == Delivery.Status.DELIVERED


def test_an_administrator_sets_up_braze_with_the_generic_form_and_events_reach_its_fake(
    page: Page, live_server, django_user_model, sandbox, start_worker, artifacts: Path
):
    website = Source.objects.create(name="Website", slug="website", write_key="wk_browser_braze")
    log_in(page, live_server, django_user_model)
    start_worker()

    add_destination(page, live_server, "Braze", "braze")
    expect(page.locator('.vendor-help[data-vendor="braze"]').first).to_contain_text("rest_endpoint (required)")
    expect(page.locator("#id_credentials__braze__api_key")).to_be_visible()
    expect(page.locator("#id_credentials__zendesk__api_token")).to_be_hidden()  # another vendor's secrets
    page.fill("#id_config", json.dumps({"rest_endpoint": sandbox.url + "/braze"}))
    page.fill("#id_credentials__braze__api_key", BRAZE_KEY)
    page.screenshot(path=artifacts / "braze-destination.png", full_page=True)
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    destination = Destination.objects.get(vendor="braze")

    batch = [
        {"type": "identify", "userId": "user-7", "traits": {"email": "grace@example.com", "firstName": "Grace"}},
        {"type": "track", "userId": "user-7", "event": "Signed Up", "properties": {"plan": "pro"}},
    ]
    answer = requests.post(
        f"{live_server.url}/v1/batch", json={"batch": batch}, auth=(website.write_key, ""), timeout=10
    )
    assert answer.status_code == 200
    wait_until(
        lambda: destination.deliveries.filter(status=Delivery.Status.DELIVERED).count() == 2, 20, "both delivered"
    )

    page.goto(f"{live_server.url}/admin/integrations/destination/")
    row = page.locator("#result_list tr", has_text="Braze")
    expect(row.locator("td.field-state")).to_have_text("Enabled")
    expect(row.locator("td.field-delivered_24h")).to_have_text("2")
    page.screenshot(path=artifacts / "braze-destinations.png", full_page=True)
    users = sandbox.braze_users()
    assert users["user-7"]["attributes"] == {"email": "grace@example.com", "first_name": "Grace"}
    assert [event["name"] for event in sandbox.braze_events(user="user-7")] == ["Signed Up"]
    assert BRAZE_KEY not in page.content()

"""The admin in a real browser with the vendor sandbox: a marketer sets up an SFMC journey from a preset, types
the Event Definition Key with the wrong case, reads how to fix it where the error is shown, fixes the key, and
retries: the contact enters the journey."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect

from deliveries.models import Delivery
from integrations.models import Destination, Source
from integrations.sandbox import Sandbox

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CLIENT_SECRET = "sandbox-sfmc-secret"


def test_a_marketer_sets_up_a_journey_from_a_preset_and_fixes_the_key_the_hint_points_at(
    page: Page, live_server, django_user_model, artifacts: Path
):
    django_user_model.objects.create_superuser("admin", "admin@example.com", "correct horse")
    website = Source.objects.create(name="Website", slug="website", write_key="wk_browser_journey")
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "correct horse")
    page.click("input[type=submit]")

    with Sandbox(port=0) as sandbox:
        page.goto(f"{live_server.url}/admin/integrations/destination/add/")
        page.locator("#id_name").press_sequentially("Order journey")
        page.select_option("#id_vendor", "sfmc_journey")
        page.get_by_label("Website").check()
        # Presets of other vendors are hidden; this one fills the filter and the mapping.
        expect(page.locator('button.preset[data-vendor="sfmc_journey"]')).to_have_count(2)
        page.get_by_role("button", name="Journey on a track event (Order Completed)").click()
        assert json.loads(page.locator("#id_filter").input_value())["events"] == ["Order Completed"]
        assert json.loads(page.locator("#id_mapping").input_value())["Data"]["orderId"]
        config = {
            "auth_base_url": sandbox.url + "/sfmc/auth",
            "rest_base_url": sandbox.url + "/sfmc/rest",
            "event_definition_key": "APIEvent-Order-Completed",  # the real key is APIEvent-order-completed
        }
        page.fill("#id_config", json.dumps(config))
        page.fill("#id_credentials__sfmc_journey__client_id", "sandbox-sfmc-client")
        page.fill("#id_credentials__sfmc_journey__client_secret", CLIENT_SECRET)
        page.screenshot(path=artifacts / "journey-preset.png", full_page=True)
        page.get_by_role("button", name="Save", exact=True).click()
        expect(page.locator(".messagelist")).to_contain_text("was added successfully")
        destination = Destination.objects.get(slug="order-journey")
        assert destination.filter["events"] == ["Order Completed"]

        response = requests.post(
            f"{live_server.url}/v1/track",
            json={
                "userId": "user-42",
                "event": "Order Completed",
                "context": {"traits": {"email": "ada@example.com"}},
                "properties": {"order_id": "o-42", "total": 99, "currency": "EUR"},
            },
            auth=(website.write_key, ""),
            timeout=10,
        )
        assert response.status_code == 200

        # The destination list says what went wrong and how to fix it.
        page.goto(f"{live_server.url}/admin/integrations/destination/")
        row = page.locator("#result_list tr", has_text="Order journey")
        expect(row.locator("td.field-last_error_")).to_contain_text("APIEvent-Order-Completed")
        expect(row.locator("td.field-last_error_ .hint")).to_contain_text("case-sensitive")
        expect(row.locator("td.field-state")).to_have_text("Misconfigured")  # every delivery fails until fixed
        page.screenshot(path=artifacts / "journey-destinations.png", full_page=True)

        # So do the delivery and its attempt.
        delivery = Delivery.objects.get(destination=destination)
        page.goto(f"{live_server.url}/admin/deliveries/delivery/{delivery.pk}/change/")
        expect(page.locator(".field-hint")).to_contain_text("copy it from the journey's entry source")
        expect(page.locator(".inline-group .hint").first).to_contain_text("case-sensitive")
        expect(page.locator("details.exchange").last).to_contain_text("does not exist")
        assert CLIENT_SECRET not in page.content()
        page.screenshot(path=artifacts / "journey-delivery-failed.png", full_page=True)

        # The marketer fixes the key and retries.
        page.goto(f"{live_server.url}/admin/integrations/destination/{destination.pk}/change/")
        config["event_definition_key"] = "APIEvent-order-completed"
        page.fill("#id_config", json.dumps(config))
        page.get_by_role("button", name="Save", exact=True).click()
        expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
        page.goto(f"{live_server.url}/admin/deliveries/delivery/{delivery.pk}/change/")
        page.get_by_role("button", name="Retry now").click()
        expect(page.locator(".field-status_")).to_contain_text("Delivered")
        page.screenshot(path=artifacts / "journey-delivery-retried.png", full_page=True)
        page.goto(f"{live_server.url}/admin/integrations/destination/")
        expect(page.locator("#result_list tr", has_text="Order journey").locator("td.field-state")).to_have_text(
            "Enabled"
        )

        [entry] = sandbox.journey_entries
        assert entry["eventDefinitionKey"] == "APIEvent-order-completed"
        assert entry["contactKey"] == "user-42"
        assert entry["data"]["orderId"] == "o-42"

"""The admin in a real browser: a marketer adds a Customer.io source with its signing secret, pastes a payload
into Try a payload to see the events it makes, then sees Customer.io's first (forged, then genuine) requests
as the source's last request."""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect

from deliveries.models import Event
from integrations.models import Source

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "customerio"
SECRET = "cio-browser-signing-key-77"


def test_a_marketer_sets_up_a_customerio_source_and_tries_a_payload(
    page: Page, live_server, django_user_model, artifacts: Path
):
    django_user_model.objects.create_superuser("admin", "admin@example.com", "correct horse")
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "correct horse")
    page.click("input[type=submit]")

    page.goto(f"{live_server.url}/admin/integrations/source/add/")
    page.locator("#id_name").press_sequentially("Customer.io")
    page.select_option("#id_kind", "customerio")
    # Only Customer.io's secret input shows.
    expect(page.locator('.credential-group[data-vendor="generic"]')).to_be_hidden()
    page.fill("#id_settings__customerio__signing_secret", SECRET)
    page.screenshot(path=artifacts / "source-webhook-add.png", full_page=True)
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    expect(page.locator(".field-last_request")).to_contain_text("none yet")
    expect(page.locator('[data-vendor="customerio"] .credential-state[data-key="signing_secret"]')).to_contain_text(
        "••••••••"
    )
    assert SECRET not in page.content()
    webhook_url = page.locator("#webhook-url").text_content()
    assert webhook_url.endswith("/v1/webhooks/" + Source.objects.get(slug="customerio").write_key)

    page.get_by_role("link", name="Try a payload").click()
    page.fill("textarea[name=payload]", (FIXTURES / "email_bounced.json").read_text())
    page.get_by_role("button", name="Show the events").click()
    expect(page.locator("#try-result h2")).to_have_text("1 event")
    expect(page.locator("#try-result pre.event")).to_contain_text('"event": "Email Bounced"')
    page.screenshot(path=artifacts / "source-webhook-try.png", full_page=True)
    page.fill("textarea[name=payload]", '{"object_type": "email"}')
    page.get_by_role("button", name="Show the events").click()
    expect(page.locator("#try-result")).to_contain_text("Refused (HTTP 400)")
    assert not Event.objects.exists()

    # Customer.io's first requests: one forged, one genuine.
    body = (FIXTURES / "email_delivered.json").read_bytes()
    stamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", "X-CIO-Timestamp": stamp, "X-CIO-Signature": "0" * 64}
    assert requests.post(webhook_url, data=body, headers=headers, timeout=10).status_code == 401
    page.goto(f"{live_server.url}/admin/integrations/source/")
    row = page.locator("#result_list tr", has_text="Customer.io")
    expect(row.locator("td.field-last_request")).to_contain_text("HTTP 401: invalid_signature")
    page.screenshot(path=artifacts / "source-webhook-list-401.png", full_page=True)
    good = hmac.new(SECRET.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    headers["X-CIO-Signature"] = good
    assert requests.post(webhook_url, data=body, headers=headers, timeout=10).ok
    page.reload()
    expect(row.locator("td.field-last_request")).to_contain_text("HTTP 200: 1 event(s) stored")
    assert Event.objects.filter(status="accepted", event="Email Delivered").count() == 1

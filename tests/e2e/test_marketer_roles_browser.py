"""A Marketer in a real browser: a destination's page shows its settings read-only and says credentials are stored
without them; a preset fills the mapping and filter, the marketer edits the mapping, saves, and sees it saved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from integrations.models import Destination, Source

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CLIENT_SECRET = "sfmc-browser-roles-secret-3e4f"
WRITE_KEY = "wk_browser_roles_website"


def test_a_marketer_edits_a_journeys_mapping_and_never_sees_its_credentials(
    page: Page, live_server, marketer, artifacts: Path
):
    website = Source.objects.create(name="Website", slug="website", write_key=WRITE_KEY)
    journey = Destination.objects.create(
        name="Welcome journey",
        slug="welcome-journey",
        vendor="sfmc_journey",
        config={"subdomain": "mc563885gzs27c5t9-63k636ttgm", "event_definition_key": "APIEvent-welcome"},
        credentials={"client_id": "sfmc-browser-client", "client_secret": CLIENT_SECRET},
        filter={"types": ["identify"]},
        mapping={"ContactKey": "userId", "Data": {"email": "traits.email", "planName": "traits.plan"}},
    )
    journey.sources.add(website)

    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "mia")
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    page.goto(f"{live_server.url}/admin/integrations/destination/")
    expect(page.locator("#result_list")).to_contain_text("Welcome journey")
    expect(page.locator("#result_list th.column-credentials_")).to_have_count(0)
    page.get_by_role("link", name="Welcome journey").click()

    # Settings read as text, credentials as a sentence; only mapping and filter are inputs.
    expect(page.locator(".field-credentials_stored .readonly")).to_have_text(
        "stored — only an administrator can see or change them"
    )
    expect(page.locator("input[name^=credentials__]")).to_have_count(0)
    expect(page.locator("#id_name")).to_have_count(0)
    expect(page.locator(".field-config .readonly")).to_contain_text("APIEvent-welcome")
    assert CLIENT_SECRET not in page.content()
    page.screenshot(path=str(artifacts / "marketer-destination.png"), full_page=True)

    # A preset of this vendor fills both fields; the marketer then fixes the mapping by hand.
    page.get_by_role("button", name="Welcome journey on identify").click()
    expect(page.locator("#id_filter")).not_to_have_value(json.dumps(journey.filter))
    mapping = {"ContactKey": "userId", "Data": {"email": "traits.email", "plan": "traits.plan"}}
    page.fill("#id_mapping", json.dumps(mapping, indent=2))
    page.fill("#id_filter", json.dumps({"types": ["identify"]}))
    page.get_by_role("button", name="Save and continue editing").click()

    expect(page.locator(".messagelist .success")).to_contain_text("was changed successfully")
    # PostgreSQL's jsonb keeps keys in its own order: compare what the saved mapping means, not its text.
    assert json.loads(page.locator("#id_mapping").input_value()) == mapping
    page.screenshot(path=str(artifacts / "marketer-destination-saved.png"), full_page=True)
    journey.refresh_from_db()
    assert journey.mapping == mapping
    assert journey.credentials == {"client_id": "sfmc-browser-client", "client_secret": CLIENT_SECRET}
    assert journey.name == "Welcome journey"

    # A mistake is refused with the field's message, beside the field.
    page.fill("#id_filter", json.dumps({"types": ["purchase"]}))
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".field-filter .errorlist")).to_contain_text("'purchase' is not an event type")

    # The source page: no write key, snippets with a placeholder.
    page.goto(f"{live_server.url}/admin/integrations/source/{website.pk}/change/")
    expect(page.locator(".field-write_key")).to_contain_text("hidden — only an administrator can see it")
    expect(page.locator("#snippet-curl")).to_contain_text("curl -u YOUR_WRITE_KEY:")
    assert WRITE_KEY not in page.content()
    page.screenshot(path=str(artifacts / "marketer-source.png"), full_page=True)

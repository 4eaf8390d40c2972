"""The API docs in a real browser: Swagger UI, served from our static files with no network beyond the hub, reads
/api/schema/, lists every resource, takes an API token in Authorize and runs a call with it ("Try it out")."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from integrations.models import ApiToken, Source

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_swagger_ui_lists_the_api_and_runs_a_call_with_a_token(
    page: Page, live_server, django_user_model, artifacts: Path
) -> None:
    admin = django_user_model.objects.create_superuser("admin", "admin@example.com", "pw")
    _, token = ApiToken.issue(admin, "docs")
    Source.objects.create(name="Website", slug="website", write_key="wk_docs_site_0a1b2c")
    elsewhere: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(live_server.url) else elsewhere.append(r.url))
    page.set_viewport_size({"width": 1280, "height": 900})

    page.goto(f"{live_server.url}/api/docs/")

    expect(page.locator(".swagger-ui .info .title")).to_contain_text("cdphub management API")
    for tag in ("sources", "destinations", "events", "deliveries", "replays", "workspace"):
        expect(page.locator(f"#operations-tag-{tag}")).to_be_visible()
    page.screenshot(path=str(artifacts / "api-docs.png"), full_page=False)

    page.get_by_role("button", name="Authorize").first.click()
    bearer = page.locator(".modal-ux form").filter(has_text="apiToken (http, Bearer)")
    bearer.locator("input").fill(token)
    bearer.get_by_label("Apply credentials").click()
    page.locator(".modal-ux button.btn-done").first.click()

    operation = page.locator("#operations-sources-sources_list")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    expect(operation.locator(".live-responses-table tbody .response-col_status").first).to_contain_text("200")
    expect(operation.locator(".live-responses-table")).to_contain_text('"slug": "website"')
    expect(operation.locator(".live-responses-table")).not_to_contain_text("wk_docs_site_0a1b2c")
    page.screenshot(path=str(artifacts / "api-docs-try-it.png"), full_page=False)
    assert elsewhere == []  # everything from the hub: no CDN

"""API tokens in a real browser: an administrator creates one, copies it from the page that shows it once, calls the
management API with it, revokes it from its page, and the same call is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect

from integrations.models import ApiToken

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_admin_creates_a_token_uses_it_and_revokes_it(page: Page, live_server, django_user_model, artifacts: Path):
    django_user_model.objects.create_superuser("admin", "admin@example.com", "correct horse")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "correct horse")
    page.click("input[type=submit]")

    page.get_by_role("link", name="API tokens").first.click()
    page.get_by_role("link", name="Add API token").click()
    page.fill("#id_name", "CI: deploy workspace")
    page.screenshot(path=str(artifacts / "api-token-add.png"), full_page=True)
    page.get_by_role("button", name="Save", exact=True).click()

    # Shown once, with a Copy button: copy it as a developer would, then read the clipboard.
    expect(page.locator("#new-token")).to_contain_text("you will not see it again")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    copy = page.locator("button[data-copy=api-token]")
    copy.click()
    expect(copy).to_have_text("Copied")
    token = page.evaluate("navigator.clipboard.readText()")
    assert token.startswith("cdp_")
    assert token == page.locator("#api-token").inner_text()
    page.screenshot(path=str(artifacts / "api-token-issued.png"), full_page=True)

    api = f"{live_server.url}/api/v1/"
    bearer = {"Authorization": f"Bearer {token}"}
    assert requests.get(api, headers=bearer, timeout=10).status_code == 200

    # The token's page no longer shows it; its Revoke button refuses it from then on.
    page.get_by_role("link", name="I have copied it").click()
    assert token not in page.content()
    expect(page.locator(".field-state_")).to_contain_text("active")
    expect(page.locator(".field-last_used")).not_to_contain_text("never")
    page.screenshot(path=str(artifacts / "api-token.png"), full_page=True)
    page.get_by_role("button", name="Revoke this token").click()
    expect(page.locator(".messagelist")).to_contain_text("calls made with it are refused")
    expect(page.locator(".field-state_")).to_contain_text("revoked")
    page.screenshot(path=str(artifacts / "api-token-revoked.png"), full_page=True)

    refused = requests.get(api, headers=bearer, timeout=10)
    assert (refused.status_code, refused.json()) == (401, {"detail": "This API token was revoked."})

    page.get_by_role("link", name="API tokens").last.click()
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(page.locator("#result_list")).to_contain_text("revoked")
    page.screenshot(path=str(artifacts / "api-tokens.png"), full_page=True)
    assert ApiToken.objects.get().state == "revoked"

"""Functions in a real browser, as an administrator: write a destination function in the code editor, declare a
secret setting, Run test it with an event picked from the Debugger (fetch recorded, not sent) and read its console
and its fetch call, save it, change it, mark a syntax error on its line, roll back to the first version from its
diff, and choose it on a destination with its secret setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from integrations.models import Function, Source
from tests.factories import make_event

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots")
SECRET = "sk-browser-functions-5e1f9c"
FIRST = """async function onTrack(event, settings) {
  console.log("sending", event.event, "for", event.userId);
  const response = await fetch("https://api.example.com/orders", {
    method: "POST",
    headers: { Authorization: "Bearer " + settings.apiKey },
    body: JSON.stringify({ plan: event.properties.plan, region: settings.region }),
  });
  return { status: response.status };
}"""
SECOND = FIRST.replace('console.log("sending"', 'console.warn("now sending"')


def editor_text(page: Page) -> str:
    return page.locator("#id_code").evaluate("el => el.cdphubEditor.getValue()")


def shoot(page: Page, name: str) -> None:
    """A full-page screenshot for people to look at, each editor drawn as a reader scrolling to it sees it
    (CodeMirror measures an editor's lines once it is in view)."""
    page.evaluate(
        """async () => {
          for (const el of document.querySelectorAll(".cdphub-editor")) {
            el.scrollIntoView();
            await new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)));
          }
          window.scrollTo(0, 0);
        }"""
    )
    page.screenshot(path=SHOTS / name, full_page=True)


def test_an_administrator_writes_tests_saves_and_rolls_back_a_function(
    page: Page, live_server, django_user_model, artifacts: Path
):
    SHOTS.mkdir(exist_ok=True)
    django_user_model.objects.create_superuser("admin", "admin@example.com", "correct horse")
    website = Source.objects.create(name="Website", slug="website", write_key="wk_browser_functions")
    make_event(website, event="Order Completed", user_id="user-42")

    page.set_viewport_size({"width": 1440, "height": 1000})
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "correct horse")
    page.click("input[type=submit]")

    # Write it: name, the code typed into the editor, a secret setting.
    page.goto(f"{live_server.url}/admin/integrations/function/add/")
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.locator("#id_name").press_sequentially("Order hook")
    expect(page.locator("#id_slug")).to_have_value("order-hook")
    page.locator('.cm-content[data-for="id_code"]').fill(FIRST)
    assert editor_text(page) == FIRST
    page.fill('input[name="settings-0-name"]', "apiKey")
    page.check('input[name="settings-0-sensitive"]')
    page.get_by_role("button", name="Add a setting").click()
    page.fill('input[name="settings-1-name"]', "region")

    # Run test: an event from the Debugger, the secret typed for the test, fetch recorded.
    panel = page.locator("#run-test")
    secret = panel.locator('input[name="secret.apiKey"]')
    expect(secret).to_have_attribute("type", "password")
    secret.fill(SECRET)
    panel.locator('input[name="setting.region"]').fill("eu")
    pick = panel.locator("#run-event-pick")
    expect(pick.locator("option")).to_have_count(2)
    pick.select_option(index=1)
    assert '"user-42"' in page.locator("#run-event").evaluate("el => el.cdphubEditor.getValue()")
    panel.get_by_role("button", name="Run test").click()
    result = panel.locator(".run-result")
    expect(result.locator(".run-outcome")).to_contain_text("Returned")
    expect(result.locator(".console")).to_contain_text("sending Order Completed for user-42")
    exchange = result.locator("details.exchange")
    expect(exchange).to_have_count(1)
    expect(exchange.locator("summary")).to_contain_text("POST https://api.example.com/orders")
    expect(exchange).to_contain_text("not sent")
    expect(exchange).to_contain_text('"region": "eu"')
    assert SECRET not in page.content().replace(page.locator('input[name="secret.apiKey"]').input_value(), "")
    result.scroll_into_view_if_needed()
    shoot(page, "function-run-test.png")

    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    function = Function.objects.get(slug="order-hook")
    assert function.version == 1
    shoot(page, "function-saved.png")

    # A syntax error is refused, with its line marked in the editor.
    broken = SECOND.replace("  const response", "  let total = ;\n  const response", 1)
    page.locator("#id_code").evaluate("(el, code) => el.cdphubEditor.setValue(code)", broken)
    panel.get_by_role("button", name="Run test").click()
    expect(result.locator(".run-error")).to_contain_text("line 3, column 15: SyntaxError")
    expect(page.locator(".cm-cdphub-errorLine")).to_have_count(1)
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".field-code .errorlist")).to_contain_text("line 3")
    expect(page.locator(".cm-cdphub-errorLine")).to_have_count(1)
    shoot(page, "function-syntax-error.png")

    # Change it and save again: version 2.
    page.locator("#id_code").evaluate("(el, code) => el.cdphubEditor.setValue(code)", SECOND)
    page.fill("#id_note", "warn instead of log")
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    function.refresh_from_db()
    assert function.version == 2

    # History: the first version against the current one, then roll back to it.
    page.get_by_role("link", name="Versions").click()
    expect(page.locator("#versions tbody tr")).to_have_count(2)
    expect(page.locator("#versions tbody tr").first).to_contain_text("warn instead of log")
    shoot(page, "function-versions.png")
    page.get_by_role("link", name="v1").click()
    expect(page.locator("#code-diff .cm-changedLine").first).to_be_visible()
    shoot(page, "function-diff.png")
    page.get_by_role("link", name="Roll back to this version").click()
    shoot(page, "function-roll-back-confirm.png")
    page.get_by_role("button", name="Yes, roll back to version 1").click()
    expect(page.locator(".messagelist")).to_contain_text("Rolled back to version 1")
    assert editor_text(page) == FIRST
    function.refresh_from_db()
    assert function.version == 3
    assert function.code == FIRST
    shoot(page, "function-rolled-back.png")

    # A destination runs it: the function chosen by name, its secret setting typed once, never shown again.
    page.goto(f"{live_server.url}/admin/integrations/destination/add/")
    page.locator("#id_name").press_sequentially("Orders API")
    page.select_option("#id_vendor", "function")
    secret_input = page.locator('input[name="function_settings__order-hook__secret__apiKey"]')
    expect(secret_input).to_be_hidden()  # until the function is chosen
    page.select_option("#id_function", "order-hook")
    expect(secret_input).to_be_visible()
    secret_input.fill(SECRET)
    shoot(page, "destination-function.png")
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    expect(page.locator(".function-settings-group:not([hidden]) .credential-state")).to_have_text("••••••••")
    assert SECRET not in page.content()
    assert errors == []

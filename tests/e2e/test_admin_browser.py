"""The admin in a real browser: find a source, copy its curl snippet, send it, see the event arrive."""

from __future__ import annotations

import re
import shlex
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from django.utils import timezone
from playwright.sync_api import Page, expect

from deliveries.models import Event
from integrations.models import Source

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def seed_history(source: Source) -> None:
    """A few earlier events, so the lists look like a hub in use."""
    now = timezone.now()
    anonymous_id = str(uuid.uuid4())
    for minutes, kind, name, user, reason in [
        (90, "identify", "", "user-7", ""),
        (60, "track", "Product Viewed", "user-7", ""),
        (45, "track", "", "user-7", "missing_event: A track call needs an event name."),
        (30, "page", "", "", ""),
    ]:
        at = now - timedelta(minutes=minutes)
        payload = {"type": kind, "userId": user, "anonymousId": anonymous_id}
        Event.objects.create(
            source=source,
            message_id=str(uuid.uuid4()),
            type=kind,
            event=name,
            user_id=user,
            anonymous_id=anonymous_id,
            payload=payload,
            received_at=at,
            timestamp=at,
            status="rejected" if reason else "accepted",
            reject_reason=reason,
        )


def curl_to_request(snippet: str, base_url: str) -> dict:
    """Turn the page's curl snippet into requests.post arguments, aimed at `base_url`."""
    args = shlex.split(snippet.replace("\\\n", " "))
    assert args[0] == "curl"
    write_key = args[args.index("-u") + 1].removesuffix(":")
    header_name, _, header_value = args[args.index("-H") + 1].partition(": ")
    url = urlsplit(args[-1])
    return {
        "url": base_url.rstrip("/") + url.path,
        "auth": (write_key, ""),
        "headers": {header_name: header_value},
        "data": args[args.index("-d") + 1].encode(),
        "timeout": 10,
    }


def test_a_marketer_sends_the_curl_snippet_and_sees_the_event(
    page: Page, live_server, django_user_model, artifacts: Path
):
    django_user_model.objects.create_superuser("admin", "admin@example.com", "correct horse")
    website = Source.objects.create(name="Website", slug="website", write_key="wk_browser_website")
    Source.objects.create(name="Customer.io", slug="cio", kind="customerio", enabled=False)
    seed_history(website)
    page.set_viewport_size({"width": 1440, "height": 900})

    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "correct horse")
    page.click("input[type=submit]")
    page.get_by_role("link", name="Sources").first.click()
    expect(page.locator("#result_list")).to_contain_text("Website")
    expect(page.locator("tr", has_text="Website").locator("td.field-events_24h")).to_have_text("4")
    page.screenshot(path=artifacts / "sources.png", full_page=True)

    page.get_by_role("link", name="Website", exact=True).click()
    expect(page.locator("#write-key")).to_have_text("wk_browser_website")
    expect(page.locator("#endpoint-url")).to_have_text(f"{live_server.url}/v1/")
    page.screenshot(path=artifacts / "source.png", full_page=True)
    # Copy the snippet as a developer would: with its Copy button, then read the clipboard.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    copy = page.locator("button[data-copy=snippet-curl]")
    copy.click()
    expect(copy).to_have_text("Copied")
    snippet = page.evaluate("navigator.clipboard.readText()")
    assert snippet == page.locator("#snippet-curl").inner_text()

    page.get_by_role("link", name="See this source's events").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(4)

    response = requests.post(**curl_to_request(snippet, live_server.url))
    assert (response.status_code, response.json()) == (200, {"success": True})

    page.reload()
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(5)
    expect(rows.first).to_contain_text("Signed Up")
    expect(rows.first).to_contain_text("user-1")
    page.screenshot(path=artifacts / "events.png", full_page=True)

    rows.first.locator("th a").click()
    expect(page.locator("pre.payload")).to_contain_text('"event": "Signed Up"')
    expect(page.locator("pre.payload")).to_contain_text('"plan": "pro"')
    page.screenshot(path=artifacts / "event.png", full_page=True)
    assert re.search(r"/admin/deliveries/event/\d+/change/", page.url)

    page.go_back()
    page.locator("#result_list tbody tr", has_text="Rejected").locator("th a").click()
    expect(page.locator(".field-reject_reason")).to_contain_text("missing_event: A track call needs an event name.")
    page.screenshot(path=artifacts / "event-rejected.png", full_page=True)

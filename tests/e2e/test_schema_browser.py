"""Schema in a real browser: a week of a website's events, the volume chart, an event's properties with a type
change, the identify traits, and the link to the Debugger."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from deliveries.engine.schema_fold import fold
from deliveries.models import Event
from integrations.models import Source
from tests.factories import make_typed_event

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def stored(source: Source, kind: str, name: str, keys: dict[str, Any], days_ago: int, n: int) -> None:
    """n events received `days_ago` days ago (an hour before now, so every day is in the past)."""
    at = timezone.now() - timedelta(days=days_ago, hours=1)
    Event.objects.bulk_create(make_typed_event(source, kind, name, keys, at, save=False) for _ in range(n))


def seed(source: Source) -> None:
    for day in range(7):
        stored(
            source, "track", "Order Completed", {"order_id": "A-1", "total": 49.5, "currency": "EUR"}, day, 20 + 3 * day
        )
        stored(source, "track", "Product Viewed", {"sku": "SKU-1", "price": 12}, day, 40 - 2 * day)
        stored(source, "identify", "", {"email": "a@example.com", "plan": "pro"}, day, 8)
        stored(source, "page", "Pricing", {"path": "/pricing", "title": "Pricing"}, day, 15)
    # Lately the shop sends the total as a string: a type change the mapping will not expect.
    stored(source, "track", "Order Completed", {"order_id": "A-2", "total": "49.50"}, 0, 6)
    stored(source, "identify", "", {"email": "b@example.com", "age": 31}, 1, 4)
    stored(source, "group", "", {"name": "Acme", "employees": 120}, 2, 3)
    fold()


def test_a_marketer_reads_a_sources_schema_and_spots_a_type_change(
    page: Page, live_server, django_user_model, artifacts: Path
):
    django_user_model.objects.create_superuser("admin", "admin@example.com", "correct horse")
    website = Source.objects.create(name="Website", slug="website", write_key="wk_browser_schema")
    Source.objects.create(name="Mobile app", slug="mobile-app", write_key="wk_browser_schema_app")
    seed(website)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server.url}/admin/login/?next=/admin/deliveries/event/schema/?source={website.pk}")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "correct horse")
    page.click("input[type=submit]")

    expect(page.locator("h1")).to_have_text("Schema")
    expect(page.locator("#sc-source")).to_have_value(str(website.pk))
    page.wait_for_function("() => Chart.getChart(document.getElementById('sc-volume')) !== undefined")
    track = page.locator("#sc-track tbody.sc-event")
    expect(track).to_have_count(2)
    expect(track.first).to_contain_text("Product Viewed")
    expect(page.locator("#sc-identify")).to_contain_text("email")
    expect(page.locator("#sc-group")).to_contain_text("employees")

    order = page.locator('#sc-track tbody.sc-event[data-name="Order Completed"]')
    order.get_by_role("link", name="Order Completed").click()
    changed = order.locator("tr.sc-changed")
    expect(changed).to_have_count(1)
    expect(changed).to_contain_text("total")
    expect(changed).to_contain_text("type changed: number → string")
    assert "wk_browser_schema" not in page.content()
    page.screenshot(path=artifacts / "schema.png", full_page=True)

    page.get_by_role("link", name="30 days").click()
    expect(page.locator(".sc-window.current")).to_have_text("30 days")
    page.select_option("#sc-source", label="Mobile app")
    expect(page.locator("#sc-track")).to_contain_text("No track events in the last 30 days.")
    page.screenshot(path=artifacts / "schema-empty.png", full_page=True)

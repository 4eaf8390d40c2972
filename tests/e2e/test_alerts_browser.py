"""Alerts in a real browser: an administrator tightens a destination's success-rate rule, sends a test alert by
email, and reads it in the alert history with its notification; the open alert shows on Event Delivery."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.core import mail
from django.utils import timezone
from playwright.sync_api import Page, expect

from deliveries.engine.alerts.evaluate import evaluate
from deliveries.models import Alert
from integrations.models import Destination
from tests.factories import make_delivery, make_event

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_administrator_edits_a_rule_sends_a_test_alert_and_reads_the_history(
    page: Page, live_server, admin_user, source, artifacts: Path
):
    hook = Destination.objects.create(
        name="Welcome hook", slug="welcome-hook", vendor="webhook", config={"url": "https://hooks.example.com/in"}
    )
    hook.sources.add(source)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.click("input[type=submit]")

    page.goto(f"{live_server.url}/admin/deliveries/alertrule/")
    expect(page.locator("#result_list tbody tr")).to_have_count(4)  # the default rules
    page.locator("#result_list tr", has_text="success rate below 90%").get_by_role("link", name="Welcome hook").click()
    page.fill("#id_threshold", "95")
    page.uncheck("input[name=channels][value=webhook]")
    page.fill("#id_email_recipients", "ops@example.com")
    page.fill("#id_new_webhook_secret", "browser-alert-secret-91ab")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    row = page.locator("#result_list tr", has_text="success rate below 95%")
    expect(row).to_contain_text("email (ops@example.com)")
    page.screenshot(path=str(artifacts / "alerts-rules.png"), full_page=True)

    row.locator("input.action-select").check()
    page.select_option("select[name=action]", "send_test_alert")
    page.click("button[name=index]")
    expect(page.locator(".messagelist")).to_contain_text("test email sent to ops@example.com")
    assert [m.to for m in mail.outbox] == [["ops@example.com"]]

    page.goto(f"{live_server.url}/admin/deliveries/alert/?state=test")
    page.locator("#result_list td.field-opened a, #result_list th.field-opened a").first.click()
    expect(page.locator(".inline-group")).to_contain_text("ops@example.com")
    expect(page.locator(".inline-group")).to_contain_text("Sent")
    assert "browser-alert-secret-91ab" not in page.content()

    # A real incident: an hour-old backlog, evaluated, shows on the destination's Event Delivery page.
    make_delivery(hook, make_event(source, received_at=timezone.now() - timedelta(hours=1)))
    evaluate(timezone.now())
    assert Alert.objects.filter(resolved_at__isnull=True).count() == 1
    page.goto(f"{live_server.url}/admin/deliveries/delivery/event-delivery/{hook.pk}/")
    expect(page.locator("#ed-alerts")).to_contain_text("The oldest waiting delivery has waited 60 minutes")
    page.screenshot(path=str(artifacts / "alerts-event-delivery.png"), full_page=True)
    page.goto(f"{live_server.url}/admin/deliveries/alert/")
    page.screenshot(path=str(artifacts / "alerts-history.png"), full_page=True)

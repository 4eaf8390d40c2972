"""Alerts in the admin: the rules and the alert history listed and filtered, an alert's notifications, editing a
rule (its secret write-only), "Send test alert", and what a Marketer may see and do."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import responses
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from deliveries.engine.alerts import notify
from deliveries.engine.alerts.evaluate import evaluate
from deliveries.models import Alert, AlertNotification, AlertRule
from integrations.models import Destination
from tests.factories import cell, make_delivery, make_event

pytestmark = pytest.mark.django_db
RULES = reverse("admin:deliveries_alertrule_changelist")
ALERTS = reverse("admin:deliveries_alert_changelist")
HOOK = "https://alerts.example.com/hook"
SECRET = "rule-secret-7d1c2e"


def listed(client, **query) -> list[str]:
    """The destinations of the alerts the history lists with this query, in order."""
    page = client.get(ALERTS, query).content.decode()
    return [re.sub(r"<[^>]+>", "", c) for c in re.findall(r'<td class="field-destination_">(.*?)</td>', page)]


@pytest.fixture
def alerted(destination, source, settings, mocked):
    """An open backlog alert whose email went and whose webhook failed (HTTP 503), on the `destination`."""
    settings.ALERT_EMAILS = ["ops@example.com"]
    settings.ALERT_WEBHOOK_URL = HOOK
    mocked.add(responses.POST, HOOK, status=503, body="down for maintenance")
    destination.alert_rules.exclude(kind="backlog").update(enabled=False)
    make_delivery(destination, make_event(source, received_at=timezone.now() - timedelta(hours=1)))
    evaluate(timezone.now())
    notify.send_due(timezone.now())
    return Alert.objects.get()


def test_the_rules_list_shows_each_destinations_rules_and_their_state(admin_client, alerted, destination):
    page = admin_client.get(RULES).content.decode()
    assert cell(page, "backlog older than 30 minutes", "state") == "Alert open"
    assert cell(page, "no delivery for 60 minutes while events arrive", "state") == "OK"
    assert cell(page, "backlog older than 30 minutes", "channels_") == (f"email (ops@example.com), webhook ({HOOK})")
    filtered = admin_client.get(RULES, {"kind": "success_rate", "destination__id__exact": destination.pk})
    assert "success rate below 90% over 15 minutes" in cell(filtered.content.decode(), "Welcome hook", "condition_")
    assert "backlog older than" not in filtered.content.decode()


def test_the_alert_history_filters_by_state_kind_and_destination(admin_client, alerted, destination):
    other = Destination.objects.create(name="Other hook", slug="other", vendor="webhook", config={"url": HOOK})
    Alert.objects.create(
        rule=other.alert_rules.get(kind="misconfigured"),
        destination=other,
        kind="misconfigured",
        opened_at=timezone.now() - timedelta(hours=2),
        resolved_at=timezone.now() - timedelta(hours=1),
        message="The destination's settings are refused (http_401): nope",
        resolution="The destination's settings are accepted.",
    )
    page = admin_client.get(ALERTS).content.decode()
    assert cell(page, "Welcome hook", "state_") == "Open"
    assert cell(page, "Other hook", "state_") == "Resolved"
    assert cell(page, "Other hook", "lasted") == "1.0 h"
    assert "opened by email: sent" in cell(page, "Welcome hook", "notified")
    assert "opened by webhook: to send" in cell(page, "Welcome hook", "notified")
    assert listed(admin_client, state="open") == ["Welcome hook"]
    assert listed(admin_client, state="resolved") == ["Other hook"]
    assert listed(admin_client, kind="misconfigured") == ["Other hook"]
    assert listed(admin_client, kind="backlog") == ["Welcome hook"]
    assert listed(admin_client, destination__id__exact=other.pk) == ["Other hook"]


def test_an_alerts_page_shows_what_was_measured_and_each_notification_with_its_outcome(admin_client, alerted):
    page = admin_client.get(reverse("admin:deliveries_alert_change", args=[alerted.pk])).content.decode()
    assert "The oldest waiting delivery has waited 60 minutes, more than 30." in page
    assert "oldest_waiting_minutes" in page
    assert "ops@example.com" in page
    assert "Webhook refused: HTTP 503: down for maintenance" in page
    assert "backlog older than 30 minutes" in page  # the rule, linked


def test_a_rule_is_edited_and_its_secret_is_write_only(admin_client, destination):
    rule = destination.alert_rules.get(kind="success_rate")
    url = reverse("admin:deliveries_alertrule_change", args=[rule.pk])
    form = {
        "enabled": "on",
        "threshold": "95",
        "window_minutes": "30",
        "min_outcomes": "50",
        "channels": ["webhook"],
        "email_recipients": "",
        "webhook_url": "https://own.example.com/alerts",
        "new_webhook_secret": SECRET,
    }
    response = admin_client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    rule.refresh_from_db()
    assert (rule.threshold, rule.window_minutes, rule.min_outcomes) == (95.0, 30, 50)
    assert rule.channels == ["webhook"]
    assert rule.webhook_secret == {"signing_secret": SECRET}
    page = admin_client.get(url).content.decode()
    assert SECRET not in page
    assert "••••••••" in page
    assert SECRET not in admin_client.get(RULES).content.decode()

    admin_client.post(url, {**form, "new_webhook_secret": ""})  # blank keeps it
    rule.refresh_from_db()
    assert rule.webhook_secret == {"signing_secret": SECRET}
    admin_client.post(url, {**form, "new_webhook_secret": "", "clear_webhook_secret": "on"})
    rule.refresh_from_db()
    assert rule.webhook_secret == {}


def test_a_rule_with_an_impossible_threshold_or_window_is_refused(admin_client, destination):
    rule = destination.alert_rules.get(kind="success_rate")
    url = reverse("admin:deliveries_alertrule_change", args=[rule.pk])
    response = admin_client.post(
        url, {"threshold": "150", "window_minutes": "0", "min_outcomes": "1", "email_recipients": "not-an-address"}
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "A success rate rule needs a threshold between 0 and 100 (percent)." in page
    assert "Between 1 and 1440 minutes (a day)." in page
    assert "&#x27;not-an-address&#x27; is not an email address." in page


def test_send_test_alert_sends_now_and_records_a_test_alert(admin_client, destination, settings):
    settings.ALERT_EMAILS = ["ops@example.com"]
    rule = destination.alert_rules.get(kind="backlog")
    response = admin_client.post(RULES, {"action": "send_test_alert", "_selected_action": [rule.pk]}, follow=True)
    page = response.content.decode()
    assert "test email sent to ops@example.com" in page
    [message] = mail.outbox
    assert message.subject == "[cdphub] Test alert: Welcome hook, backlog older than a limit"
    assert "This is a test alert: nothing is wrong." in message.body
    alert = Alert.objects.get()
    assert alert.is_test
    assert alert.resolved_at is not None
    assert "Test" in cell(admin_client.get(ALERTS, {"state": "test"}).content.decode(), "Welcome hook", "state_")


def test_send_test_alert_with_nowhere_to_send_says_so(admin_client, destination):
    rule = destination.alert_rules.get(kind="backlog")
    page = admin_client.post(
        RULES, {"action": "send_test_alert", "_selected_action": [rule.pk]}, follow=True
    ).content.decode()
    assert "nowhere to send" in page
    assert AlertNotification.objects.count() == 0


def test_a_marketer_sees_rules_and_alerts_but_changes_nothing(marketer_client, alerted, destination):
    assert marketer_client.get(RULES).status_code == 200
    assert marketer_client.get(ALERTS).status_code == 200
    assert marketer_client.get(reverse("admin:deliveries_alert_change", args=[alerted.pk])).status_code == 200
    rule = destination.alert_rules.get(kind="backlog")
    url = reverse("admin:deliveries_alertrule_change", args=[rule.pk])
    page = marketer_client.get(url).content.decode()
    assert 'name="threshold"' not in page  # read only
    marketer_client.post(url, {"threshold": "10", "window_minutes": "1", "min_outcomes": "1"})
    rule.refresh_from_db()
    assert rule.window_minutes == 30
    listing = marketer_client.get(RULES).content.decode()
    assert "send_test_alert" not in listing
    marketer_client.post(RULES, {"action": "send_test_alert", "_selected_action": [rule.pk]})
    assert not Alert.objects.filter(is_test=True).exists()


def test_the_admin_index_lists_alerts_for_a_marketer(marketer_client):
    page = marketer_client.get(reverse("admin:app_list", args=["deliveries"])).content.decode()
    assert "Alert rules" in page
    assert RULES in page
    assert ALERTS in page


def test_the_rule_list_reads_a_fixed_number_of_queries(admin_client, django_assert_max_num_queries):
    for n in range(15):
        Destination.objects.create(name=f"Hook {n}", slug=f"hook-{n}", vendor="webhook", config={"url": HOOK})
    with django_assert_max_num_queries(12):
        assert admin_client.get(RULES).status_code == 200
    with django_assert_max_num_queries(12):
        assert admin_client.get(ALERTS).status_code == 200


def test_rules_of_a_deleted_destination_go_with_it(destination, alerted):
    destination.delete()
    assert AlertRule.objects.count() == 0
    assert Alert.objects.count() == 0


def test_event_delivery_shows_the_destinations_open_alerts(marketer_client, alerted, destination):
    url = reverse("admin:deliveries_delivery_event_delivery", args=[destination.pk])
    page = marketer_client.get(url).content.decode()
    assert 'id="ed-alerts"' in page
    assert "The oldest waiting delivery has waited 60 minutes, more than 30." in page
    assert reverse("admin:deliveries_alert_change", args=[alerted.pk]) in page
    Alert.objects.update(resolved_at=timezone.now())
    assert 'id="ed-alerts"' not in marketer_client.get(url).content.decode()


def test_a_second_rule_is_added_for_a_destination(admin_client, destination):
    add = reverse("admin:deliveries_alertrule_add")
    page = admin_client.get(add).content.decode()
    assert 'name="channels" value="email" checked' in page.replace('id="id_channels_0" ', "")
    response = admin_client.post(
        add,
        {
            "destination": destination.pk,
            "kind": "success_rate",
            "enabled": "on",
            "threshold": "50",
            "window_minutes": "5",
            "min_outcomes": "100",
            "channels": ["email"],
            "email_recipients": "oncall@example.com",
            "webhook_url": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    rule = destination.alert_rules.get(threshold=50)
    assert (rule.window_minutes, rule.min_outcomes, rule.channels) == (5, 100, ["email"])
    assert rule.email_recipients == "oncall@example.com"
    # Viewing it does not change what a new rule starts with.
    admin_client.get(reverse("admin:deliveries_alertrule_change", args=[rule.pk]))
    assert 'value="webhook" checked' in admin_client.get(add).content.decode().replace('id="id_channels_1" ', "")

"""Alerts: each rule kind opens and resolves, once per incident (two evaluators racing included), told by email
and by a signed webhook, a failing channel recorded and retried, the default rules, and no secret anywhere."""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib
import json
import logging
import threading
from datetime import timedelta

import pytest
import responses
from django.core import mail
from django.db import connection
from django.utils import timezone

from deliveries.engine import alerts
from deliveries.engine.alerts import notify
from deliveries.engine.alerts.defaults import DEFAULT_RULES, create_default_rules
from deliveries.engine.alerts.evaluate import evaluate, open_alert, resolve_alert
from deliveries.engine.alerts.measure import read
from deliveries.engine.rollups import minute_of
from deliveries.engine.sweep import sweep
from deliveries.models import Alert, AlertNotification, AlertRule, Delivery, DeliveryRollup
from integrations.models import Destination
from tests.factories import make_delivery, make_event

pytestmark = pytest.mark.django_db
HOOK = "https://alerts.example.com/hook"
SECRET = "alert-signing-secret-4f9a"


@pytest.fixture
def told(settings):
    """The hub tells ops@example.com and a webhook; no per-rule targets."""
    settings.ALERT_EMAILS = ["ops@example.com"]
    settings.ALERT_WEBHOOK_URL = HOOK
    settings.ALERT_WEBHOOK_SECRET = SECRET
    return settings


def rule_of(destination: Destination, kind: str) -> AlertRule:
    return destination.alert_rules.get(kind=kind)


def only(destination: Destination, kind: str) -> AlertRule:
    """The destination's rule of this kind, the others turned off."""
    destination.alert_rules.exclude(kind=kind).update(enabled=False)
    return rule_of(destination, kind)


def outcomes(destination: Destination, delivered: int = 0, failed: int = 0, ago: timedelta = timedelta()) -> None:
    minute = minute_of(timezone.now() - ago)
    if delivered:
        DeliveryRollup.objects.create(
            destination=destination, minute=minute, status="delivered", latency_bucket=3, count=delivered
        )
    if failed:
        DeliveryRollup.objects.create(
            destination=destination, minute=minute, status="failed", latency_bucket=-1, count=failed
        )


def waiting(destination: Destination, source, ago: timedelta, **fields) -> Delivery:
    event = make_event(source, received_at=timezone.now() - ago)
    return make_delivery(destination, event, **fields)


def open_alerts(destination: Destination) -> list[Alert]:
    return list(Alert.objects.filter(destination=destination, resolved_at__isnull=True))


# Default rules ---------------------------------------------------------------------------------------


def test_a_new_destination_gets_the_default_rules(destination):
    rules = {r.kind: r for r in destination.alert_rules.all()}
    assert set(rules) == {"success_rate", "no_delivery", "misconfigured", "backlog"}
    assert (rules["success_rate"].threshold, rules["success_rate"].window_minutes) == (90.0, 15)
    assert rules["success_rate"].min_outcomes == 20
    assert rules["no_delivery"].window_minutes == 60
    assert rules["backlog"].window_minutes == 30
    assert all(r.enabled and r.channels == ["email", "webhook"] for r in rules.values())


def test_saving_a_destination_again_adds_no_rules(destination):
    destination.name = "Renamed"
    destination.save()
    assert destination.alert_rules.count() == len(DEFAULT_RULES)


def test_defaults_for_existing_destinations_skip_those_that_have_rules(destination):
    other = Destination.objects.create(name="Other", slug="other", vendor="webhook", config={"url": HOOK})
    other.alert_rules.all().delete()
    destination.alert_rules.filter(kind="backlog").delete()  # changed on purpose: left as it is
    assert create_default_rules(AlertRule, [destination.pk, other.pk]) == len(DEFAULT_RULES)
    assert other.alert_rules.count() == len(DEFAULT_RULES)
    assert destination.alert_rules.count() == len(DEFAULT_RULES) - 1


# Each kind opens and resolves --------------------------------------------------------------------------


def test_success_rate_below_the_threshold_opens_and_recovering_resolves(destination, told):
    only(destination, "success_rate")
    outcomes(destination, delivered=15, failed=10, ago=timedelta(minutes=5))
    assert evaluate(timezone.now()) == {"opened": 1, "resolved": 0}
    [alert] = open_alerts(destination)
    assert alert.kind == "success_rate"
    assert alert.measured == {"delivered": 15, "failed": 10, "success_rate": 60.0, "window_minutes": 15}
    assert "Success rate 60.0%, below 90%" in alert.message

    outcomes(destination, delivered=300)
    assert evaluate(timezone.now()) == {"opened": 0, "resolved": 1}
    alert.refresh_from_db()
    assert alert.resolved_at is not None
    assert "Success rate 96.9% (315 delivered, 10 failed" in alert.resolution


def test_one_failure_of_one_is_not_an_incident(destination):
    only(destination, "success_rate")
    outcomes(destination, failed=1)
    assert evaluate(timezone.now()) == {"opened": 0, "resolved": 0}


def test_outcomes_older_than_the_window_do_not_count(destination):
    only(destination, "success_rate")
    outcomes(destination, failed=50, ago=timedelta(minutes=40))
    outcomes(destination, delivered=30)
    assert evaluate(timezone.now())["opened"] == 0


def test_no_delivery_while_events_arrive_opens_and_a_delivery_resolves(destination, source):
    only(destination, "no_delivery")
    waiting(destination, source, ago=timedelta(minutes=20), status="retrying", attempts=3)
    assert evaluate(timezone.now())["opened"] == 1
    [alert] = open_alerts(destination)
    assert "Nothing delivered for 60 minutes while events keep arriving" in alert.message
    assert "nothing delivered yet" in alert.message

    outcomes(destination, delivered=1)
    assert evaluate(timezone.now())["resolved"] == 1


def test_no_events_no_alert_and_the_first_event_after_a_quiet_hour_has_time_to_go(destination, source):
    only(destination, "no_delivery")
    assert evaluate(timezone.now())["opened"] == 0
    waiting(destination, source, ago=timedelta(seconds=20))  # just arrived: not late yet
    assert evaluate(timezone.now())["opened"] == 0
    waiting(destination, source, ago=timedelta(minutes=10), status="filtered")  # not for sending: not expected
    assert evaluate(timezone.now())["opened"] == 0


def test_misconfigured_opens_on_a_refused_credential_and_resolves_once_delivering(destination):
    only(destination, "misconfigured")
    now = timezone.now()
    Destination.objects.filter(pk=destination.pk).update(
        last_error_code="http_401",
        last_error="HTTP 401: invalid token",
        last_error_hint="Check the secret header.",
        last_error_at=now,
    )
    assert evaluate(now)["opened"] == 1
    [alert] = open_alerts(destination)
    assert alert.message == (
        "The destination's settings are refused (http_401): HTTP 401: invalid token "
        "How to fix: Check the secret header."
    )
    Destination.objects.filter(pk=destination.pk).update(last_delivered_at=now + timedelta(seconds=5))
    assert evaluate(now + timedelta(seconds=30))["resolved"] == 1


def test_a_retryable_error_is_not_misconfiguration(destination):
    only(destination, "misconfigured")
    Destination.objects.filter(pk=destination.pk).update(last_error_code="http_503", last_error_at=timezone.now())
    assert evaluate(timezone.now())["opened"] == 0


def test_a_backlog_older_than_the_limit_opens_and_resolves_once_sent(destination, source):
    only(destination, "backlog")
    old = waiting(destination, source, ago=timedelta(minutes=45))
    waiting(destination, source, ago=timedelta(minutes=1), status="retrying")
    assert evaluate(timezone.now())["opened"] == 1
    [alert] = open_alerts(destination)
    assert alert.measured["oldest_waiting_minutes"] == 45
    assert "has waited 45 minutes, more than 30" in alert.message

    Delivery.objects.filter(pk=old.pk).update(status="delivered")
    assert evaluate(timezone.now())["resolved"] == 1
    assert "has waited 1 minutes" in Alert.objects.get().resolution


def test_a_replayed_delivery_waits_from_its_replay_and_test_sends_do_not_count(destination, source):
    only(destination, "backlog")
    waiting(destination, source, ago=timedelta(days=3), retry_from=timezone.now() - timedelta(minutes=2))
    waiting(destination, source, ago=timedelta(hours=2), is_test=True, next_attempt_at=None)
    assert evaluate(timezone.now())["opened"] == 0


def test_a_paused_destination_says_so_in_its_backlog_alert(destination, source):
    only(destination, "backlog")
    Destination.objects.filter(pk=destination.pk).update(paused=True)
    waiting(destination, source, ago=timedelta(hours=1))
    evaluate(timezone.now())
    assert "The destination is paused: resume it to send them." in Alert.objects.get().message


def test_turning_a_rule_off_resolves_its_open_alert(destination, source, told):
    rule = only(destination, "backlog")
    waiting(destination, source, ago=timedelta(hours=1))
    evaluate(timezone.now())
    AlertRule.objects.filter(pk=rule.pk).update(enabled=False)
    assert evaluate(timezone.now())["resolved"] == 1
    assert Alert.objects.get().resolution == "The rule was turned off."
    assert evaluate(timezone.now()) == {"opened": 0, "resolved": 0}


def test_disabling_the_destination_resolves_its_alerts(destination, source):
    only(destination, "backlog")
    waiting(destination, source, ago=timedelta(hours=1))
    evaluate(timezone.now())
    Destination.objects.filter(pk=destination.pk).update(enabled=False)
    assert evaluate(timezone.now())["resolved"] == 1
    assert "turned off" in Alert.objects.get().resolution


# Once per incident -----------------------------------------------------------------------------------


def test_an_incident_notifies_once_when_it_opens_and_once_when_it_resolves(destination, source, told, mocked):
    mocked.add(responses.POST, HOOK, status=204)
    only(destination, "backlog")
    old = waiting(destination, source, ago=timedelta(hours=1))
    for _ in range(3):
        evaluate(timezone.now())
        notify.send_due(timezone.now())
    assert len(mail.outbox) == 1
    assert len(mocked.calls) == 1
    Delivery.objects.filter(pk=old.pk).update(status="delivered")
    for _ in range(3):
        evaluate(timezone.now())
        notify.send_due(timezone.now())
    assert [m.subject.split(":")[0] for m in mail.outbox] == ["[cdphub] Alert", "[cdphub] Resolved"]
    assert [json.loads(c.request.body)["type"] for c in mocked.calls] == ["alert.opened", "alert.resolved"]
    assert Alert.objects.count() == 1


def test_two_evaluators_that_both_saw_no_open_alert_open_one(destination, told):
    rule = only(destination, "success_rate")
    outcomes(destination, failed=30)
    now = timezone.now()
    readings = read([AlertRule.objects.select_related("destination").get(pk=rule.pk)], now)
    assert open_alert(rule, readings[rule.pk], now) is True
    assert open_alert(rule, readings[rule.pk], now) is False  # the second worker's insert meets the constraint
    assert Alert.objects.count() == 1
    assert AlertNotification.objects.filter(event="opened").count() == 2  # one email, one webhook

    outcomes(destination, delivered=1000)
    later = timezone.now()
    readings = read([AlertRule.objects.select_related("destination").get(pk=rule.pk)], later)
    stale = Alert.objects.get()
    assert resolve_alert(stale, rule, readings[rule.pk], later) is True
    assert resolve_alert(stale, rule, readings[rule.pk], later) is False
    assert AlertNotification.objects.filter(event="resolved").count() == 2


def test_two_workers_sending_at_once_send_each_notification_once(destination, source, told, mocked):
    mocked.add(responses.POST, HOOK, status=200)
    only(destination, "backlog")
    waiting(destination, source, ago=timedelta(hours=1))
    evaluate(timezone.now())
    now = timezone.now()
    [email, _webhook] = AlertNotification.objects.order_by("channel")
    assert notify.claim(email.pk, now) is True
    assert notify.claim(email.pk, now) is False  # the other worker's UPDATE finds it taken
    assert notify.send_due(now) == {"sent": 1, "failed": 0}  # only the webhook was left to take
    assert len(mocked.calls) == 1


@pytest.mark.django_db(transaction=True)
def test_two_evaluator_threads_racing_open_one_alert_and_send_one_message(destination, told, mocked):
    mocked.add(responses.POST, HOOK, status=200)
    only(destination, "success_rate")
    outcomes(destination, failed=40)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def evaluator() -> None:
        try:
            start.wait()
            now = timezone.now()
            evaluate(now)
            notify.send_due(now)
        except BaseException as exc:  # the assertion below shows it
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=evaluator) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert Alert.objects.count() == 1
    assert len(mail.outbox) == 1
    assert len(mocked.calls) == 1


# What is sent ----------------------------------------------------------------------------------------


def test_the_email_says_what_is_wrong_where_and_links_to_event_delivery(destination, told):
    told.PUBLIC_URL = "https://hub.example.com"
    only(destination, "success_rate")
    outcomes(destination, delivered=5, failed=20)
    evaluate(timezone.now())
    notify.send_due(timezone.now())
    [message] = mail.outbox
    assert message.to == ["ops@example.com"]
    assert message.from_email == told.ALERT_FROM
    assert message.subject == "[cdphub] Alert: Welcome hook, success rate below a threshold"
    assert "Destination: Welcome hook (welcome-hook)" in message.body
    assert "Rule: success rate below 90% over 15 minutes (at least 20 outcomes)" in message.body
    assert "Success rate 20.0%, below 90% (5 delivered, 20 failed in the last 15 minutes)." in message.body
    assert f"https://hub.example.com/admin/deliveries/delivery/event-delivery/{destination.pk}/" in message.body


def test_a_rules_own_recipients_replace_the_hubs(destination, told):
    rule = only(destination, "success_rate")
    AlertRule.objects.filter(pk=rule.pk).update(email_recipients="a@example.com, b@example.com", channels=["email"])
    outcomes(destination, failed=25)
    evaluate(timezone.now())
    notify.send_due(timezone.now())
    assert [m.to for m in mail.outbox] == [["a@example.com", "b@example.com"]]


def test_the_webhook_is_signed_like_the_webhook_vendor_signs(destination, told, mocked):
    mocked.add(responses.POST, HOOK, status=200)
    only(destination, "backlog")
    AlertRule.objects.filter(destination=destination).update(channels=["webhook"])
    evaluate(timezone.now())  # nothing waits: nothing opens
    make_delivery(destination, make_event(destination.sources.get(), received_at=timezone.now() - timedelta(hours=2)))
    evaluate(timezone.now())
    notify.send_due(timezone.now())
    [call] = mocked.calls
    request = call.request
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("cdphub/")
    message_id, timestamp = request.headers["webhook-id"], request.headers["webhook-timestamp"]
    # The Standard Webhooks check a receiver makes, written out here rather than calling the hub's own sign().
    expected = hmac.new(SECRET.encode(), f"{message_id}.{timestamp}.".encode() + request.body, hashlib.sha256)
    assert request.headers["webhook-signature"] == "v1," + base64.b64encode(expected.digest()).decode()
    body = json.loads(request.body)
    assert body["type"] == "alert.opened"
    assert body["destination"] == {"id": destination.pk, "name": "Welcome hook", "slug": "welcome-hook"}
    assert body["alert"]["kind"] == "backlog"
    assert body["alert"]["measured"]["oldest_waiting_minutes"] == 120
    assert body["alert"]["resolved_at"] is None


def test_a_rules_own_secret_signs_its_webhook_and_is_stored_encrypted(destination, told, mocked):
    mocked.add(responses.POST, "https://own.example.com/alerts", status=200)
    rule = only(destination, "misconfigured")
    rule.webhook_url = "https://own.example.com/alerts"
    rule.webhook_secret = {"signing_secret": "whsec_" + base64.b64encode(b"rule-key-0123456789").decode()}
    rule.channels = ["webhook"]
    rule.save()
    with connection.cursor() as cursor:
        cursor.execute("SELECT webhook_secret FROM deliveries_alertrule WHERE id = %s", [rule.pk])
        assert "whsec_" not in cursor.fetchone()[0]
    Destination.objects.filter(pk=destination.pk).update(last_error_code="http_403", last_error_at=timezone.now())
    evaluate(timezone.now())
    notify.send_due(timezone.now())
    request = mocked.calls[0].request
    signed = f"{request.headers['webhook-id']}.{request.headers['webhook-timestamp']}.".encode() + request.body
    digest = hmac.new(b"rule-key-0123456789", signed, hashlib.sha256).digest()
    assert request.headers["webhook-signature"] == "v1," + base64.b64encode(digest).decode()


# Failing channels ------------------------------------------------------------------------------------


def test_a_failing_webhook_is_recorded_on_the_alert_and_retried_on_a_later_sweep(destination, source, told, mocked):
    told.ALERT_EMAILS = []
    mocked.add(responses.POST, HOOK, status=503, json={"message": "receiver down"})
    only(destination, "backlog")
    waiting(destination, source, ago=timedelta(hours=1))
    evaluate(timezone.now())
    assert notify.send_due(timezone.now()) == {"sent": 0, "failed": 1}
    [notification] = Alert.objects.get().notifications.all()
    assert (notification.status, notification.attempts) == ("pending", 1)
    assert notification.error == "Webhook refused: HTTP 503: receiver down"
    assert notification.next_attempt_at > timezone.now()
    assert notify.send_due(timezone.now()) == {"sent": 0, "failed": 0}  # not due yet: it waits

    mocked.replace(responses.POST, HOOK, status=200)
    assert notify.send_due(notification.next_attempt_at + timedelta(seconds=1)) == {"sent": 1, "failed": 0}
    notification.refresh_from_db()
    assert (notification.status, notification.attempts, notification.error) == ("sent", 2, "")


def test_an_unreachable_smtp_server_is_recorded_and_the_email_retried(destination, source, told, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", 9  # discard: nothing listens
    told.ALERT_WEBHOOK_URL = ""
    only(destination, "backlog")
    waiting(destination, source, ago=timedelta(hours=1))
    evaluate(timezone.now())
    assert notify.send_due(timezone.now()) == {"sent": 0, "failed": 1}
    notification = AlertNotification.objects.get()
    assert notification.status == "pending"
    assert notification.error.startswith("Email not sent: ConnectionRefusedError")

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    notify.send_due(notification.next_attempt_at)
    notification.refresh_from_db()
    assert notification.status == "sent"
    assert len(mail.outbox) == 1


def test_a_notification_gives_up_after_its_last_try(destination, source, told, mocked):
    told.ALERT_EMAILS = []
    mocked.add(responses.POST, HOOK, status=500)
    only(destination, "backlog")
    waiting(destination, source, ago=timedelta(hours=1))
    evaluate(timezone.now())
    AlertNotification.objects.update(attempts=notify.MAX_ATTEMPTS - 1)
    notify.send_due(timezone.now())
    assert AlertNotification.objects.get().status == "failed"
    assert notify.send_due(timezone.now() + timedelta(days=1)) == {"sent": 0, "failed": 0}


def test_the_private_address_guard_applies_to_alert_webhooks(destination, source, told):
    told.ALLOW_PRIVATE_URLS = False
    told.ALERT_EMAILS = []
    told.ALERT_WEBHOOK_URL = "http://127.0.0.1:9/alerts"
    only(destination, "backlog")
    waiting(destination, source, ago=timedelta(hours=1))
    evaluate(timezone.now())
    notify.send_due(timezone.now())
    error = AlertNotification.objects.get().error
    assert "resolves to a private address (127.0.0.1); cdphub does not send there" in error


def test_a_worker_that_died_while_sending_leaves_the_notification_to_send_again(destination, source, told, mocked):
    told.ALERT_EMAILS = []
    mocked.add(responses.POST, HOOK, status=200)
    only(destination, "backlog")
    waiting(destination, source, ago=timedelta(hours=1))
    evaluate(timezone.now())
    now = timezone.now()
    notification = AlertNotification.objects.get()
    assert notify.claim(notification.pk, now)  # ... and the worker is killed here
    assert notify.send_due(now) == {"sent": 0, "failed": 0}  # its lease holds
    assert notify.send_due(now + notify.LEASE + timedelta(seconds=1)) == {"sent": 1, "failed": 0}


def test_no_channel_configured_still_records_the_alert(destination, source):
    only(destination, "backlog")
    waiting(destination, source, ago=timedelta(hours=1))
    assert evaluate(timezone.now())["opened"] == 1
    assert AlertNotification.objects.count() == 0


# Secrets ---------------------------------------------------------------------------------------------


def test_the_secret_never_appears_in_errors_or_logs(destination, source, told, mocked, caplog):
    told.ALERT_EMAILS = []
    mocked.add(responses.POST, HOOK, status=500, body=f"bad signature, expected secret {SECRET}")
    only(destination, "backlog")
    waiting(destination, source, ago=timedelta(hours=1))
    with caplog.at_level(logging.DEBUG):
        evaluate(timezone.now())
        notify.send_due(timezone.now())
    notification = AlertNotification.objects.get()
    assert "[REDACTED]" in notification.error
    assert SECRET not in notification.error
    assert SECRET not in caplog.text
    assert "alert" in caplog.text  # the failure was logged, without the secret


# The sweeper -------------------------------------------------------------------------------------------


def test_the_sweeper_evaluates_at_most_every_alert_evaluate_seconds(destination, source, settings, monkeypatch):
    settings.ALERT_EVALUATE_SECONDS = 3600
    monkeypatch.setattr(alerts, "_last_run", float("-inf"))
    only(destination, "backlog")
    waiting(destination, source, ago=timedelta(hours=1))
    assert sweep()["alerts_opened"] == 1
    Alert.objects.all().delete()
    assert "alerts_opened" not in sweep()  # within the hour: not evaluated again
    assert Alert.objects.count() == 0


def test_a_failing_evaluation_never_stops_the_sweeper(destination, monkeypatch, caplog):
    monkeypatch.setattr(alerts, "_last_run", float("-inf"))

    def broken(now):
        raise RuntimeError("boom")

    monkeypatch.setattr(alerts, "evaluate", broken)
    result = sweep()
    assert result["expired"] == 0
    assert "alerts_opened" not in result
    assert "alerts: broken failed" in caplog.text


def test_the_migration_gives_existing_destinations_the_default_rules(destination):
    from django.apps import apps

    migration = importlib.import_module("deliveries.migrations.0012_alerts")
    AlertRule.objects.all().delete()  # as before alerts existed
    migration.create_defaults(apps, None)
    assert sorted(destination.alert_rules.values_list("kind", flat=True)) == sorted(r["kind"] for r in DEFAULT_RULES)
    migration.create_defaults(apps, None)  # run twice: nothing more
    assert destination.alert_rules.count() == len(DEFAULT_RULES)

"""Alerts with two real `manage.py worker` processes sweeping at once: a destination whose credentials are
refused opens one alert and the receiver gets one "opened" post; fixed, it gets one "resolved" post; nothing
repeats while both workers keep evaluating every half second."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from deliveries.models import Alert, AlertNotification
from integrations.models import Destination
from tests.e2e.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_workers_evaluating_at_once_tell_each_incident_once(start_worker, receivers, source):
    receiver = receivers()
    hook = Destination.objects.create(
        name="Welcome hook", slug="welcome-hook", vendor="webhook", config={"url": receiver.url + "/events"}
    )
    hook.alert_rules.exclude(kind="misconfigured").update(enabled=False)
    env = {"CDPHUB_ALERT_EVALUATE_SECONDS": "0.5", "CDPHUB_ALERT_WEBHOOK_URL": receiver.url}
    start_worker(**env)
    start_worker(**env)

    Destination.objects.filter(pk=hook.pk).update(
        last_error_code="http_401", last_error="HTTP 401: bad key", last_error_at=timezone.now()
    )
    wait_until(lambda: len(receiver.requests) >= 1, 20, "the opened post")
    time.sleep(3)  # six more evaluations by each worker
    assert [r.body["type"] for r in receiver.requests] == ["alert.opened"]
    assert Alert.objects.count() == 1

    Destination.objects.filter(pk=hook.pk).update(last_delivered_at=timezone.now())
    wait_until(lambda: len(receiver.requests) >= 2, 20, "the resolved post")
    time.sleep(3)
    assert [r.body["type"] for r in receiver.requests] == ["alert.opened", "alert.resolved"]
    assert list(AlertNotification.objects.values_list("status", "attempts")) == [("sent", 1), ("sent", 1)]

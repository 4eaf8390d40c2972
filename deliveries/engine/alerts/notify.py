"""Send the notifications alerts queued: claim each with a conditional UPDATE (as deliveries are claimed, so two
workers never send the same one), send it outside any transaction, record the outcome. A channel that fails
keeps its error on the row and is tried again on later sweeps with a growing wait, until it gives up.

A worker that dies between sending and recording leaves the row claimed; after its lease the row is sent again
(at least once, as deliveries are).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from django.db.models import F, Q
from django.utils import timezone

from deliveries.engine.alerts.channels import NotSent, send
from deliveries.engine.alerts.evaluate import queue
from deliveries.models import Alert, AlertNotification, AlertRule

log = logging.getLogger("cdphub.alerts")

SEND_PER_SWEEP = 20
SEND_SECONDS = 5.0  # then the rest waits for the next run: dead channels must not hold up the sweeper's retries
LEASE = timedelta(minutes=2)  # longer than a webhook's timeout plus an SMTP conversation
RETRY_BASE = timedelta(seconds=30)
RETRY_CAP = timedelta(hours=1)
MAX_ATTEMPTS = 12  # about six hours of tries

Status = AlertNotification.Status


def due(now: datetime) -> Q:
    return Q(status=Status.PENDING, next_attempt_at__lte=now) | Q(status=Status.SENDING, lease_expires_at__lt=now)


def send_due(now: datetime) -> dict[str, int]:
    """Send the notifications that are due (oldest first); returns how many went and how many failed."""
    ids = list(
        AlertNotification.objects.filter(due(now))
        .order_by("next_attempt_at")
        .values_list("id", flat=True)[:SEND_PER_SWEEP]
    )
    counts = {"sent": 0, "failed": 0}
    stop_at = time.monotonic() + SEND_SECONDS
    for notification_id in ids:
        if time.monotonic() > stop_at:
            break
        if claim(notification_id, now):
            counts["sent" if send_claimed(notification_id) else "failed"] += 1
    return counts


def claim(notification_id: int, now: datetime) -> bool:
    """Take the notification for this worker: only one UPDATE changes it while it is due."""
    return bool(
        AlertNotification.objects.filter(due(now), pk=notification_id).update(
            status=Status.SENDING, lease_expires_at=now + LEASE, attempts=F("attempts") + 1
        )
    )


def send_claimed(notification_id: int) -> bool:
    """Send a claimed notification and record the outcome; True when it went."""
    notification = AlertNotification.objects.select_related("alert__rule", "alert__destination").get(pk=notification_id)
    try:
        send(notification)
    except NotSent as exc:
        error = str(exc)
    except Exception as exc:  # a bug in building the message must not stop the sweeper; it is recorded and retried
        log.exception("alert notification %s could not be sent", notification_id)
        error = f"Not sent: {type(exc).__name__} (the worker's log has the details)"
    else:
        error = ""
    now = timezone.now()
    mine = AlertNotification.objects.filter(pk=notification_id, status=Status.SENDING)
    if not error:
        mine.update(status=Status.SENT, sent_at=now, error="", lease_expires_at=None)
        return True
    gave_up = notification.attempts >= MAX_ATTEMPTS
    mine.update(
        status=Status.FAILED if gave_up else Status.PENDING,
        next_attempt_at=now + backoff(notification.attempts),
        lease_expires_at=None,
        error=error,
    )
    log.warning(
        "alert %s: %s notification by %s failed (try %s%s): %s",
        notification.alert_id,
        notification.event,
        notification.channel,
        notification.attempts,
        ", gave up" if gave_up else "",
        error,
    )
    return False


def backoff(attempts: int) -> timedelta:
    return min(RETRY_CAP, RETRY_BASE * 2 ** max(0, attempts - 1))


def send_test(rule: AlertRule) -> list[AlertNotification]:
    """Send a test alert for the rule now on each of its channels (the admin's "Send test alert"), recorded as a
    test alert that opened and resolved at once; returns its notifications with their outcome."""
    now = timezone.now()
    alert = Alert.objects.create(
        rule=rule,
        destination_id=rule.destination_id,
        kind=rule.kind,
        opened_at=now,
        resolved_at=now,
        message=f"Test alert for the rule: {rule.condition}.",
        resolution="A test: nothing is wrong.",
        is_test=True,
    )
    notifications = queue(alert, rule, AlertNotification.Event.TEST, now)
    for notification in notifications:
        if claim(notification.pk, now):
            send_claimed(notification.pk)
    return list(AlertNotification.objects.filter(alert=alert).order_by("id"))

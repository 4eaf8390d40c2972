"""Open and resolve alerts: each enabled rule is measured, and where its condition starts holding an alert opens,
where it stops the open alert resolves. Each transition writes the notifications to send in its own transaction.

Safe with several workers evaluating at once: opening inserts under a unique constraint (one open alert per
rule), so the second insert fails and the loser does nothing; resolving is a conditional UPDATE (only while
still open), so only the worker whose UPDATE changed the row queues the "resolved" message.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q

from deliveries.engine.alerts.measure import Reading, read
from deliveries.models import Alert, AlertNotification, AlertRule

log = logging.getLogger("cdphub.alerts")


def evaluate(now: datetime) -> dict[str, int]:
    """Measure the rules and open or resolve their alerts; returns how many opened and resolved."""
    open_alerts = {alert.rule_id: alert for alert in Alert.objects.filter(resolved_at__isnull=True, is_test=False)}
    # The enabled rules of enabled destinations, and any other rule with an alert open: it resolves.
    rules = list(
        AlertRule.objects.filter(Q(enabled=True, destination__enabled=True) | Q(pk__in=list(open_alerts)))
        .select_related("destination")
        .defer("webhook_secret", "destination__credentials", "destination__insert_secrets")
        .order_by("id")
    )
    readings = read(rules, now)
    opened = resolved = 0
    for rule in rules:
        reading, alert = readings[rule.pk], open_alerts.get(rule.pk)
        if reading.holds and alert is None:
            opened += open_alert(rule, reading, now)
        elif not reading.holds and alert is not None:
            resolved += resolve_alert(alert, rule, reading, now)
    return {"opened": opened, "resolved": resolved}


def open_alert(rule: AlertRule, reading: Reading, now: datetime) -> bool:
    """Open an alert for the rule and queue its "opened" messages; False when another worker opened it first."""
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                rule=rule,
                destination_id=rule.destination_id,
                kind=rule.kind,
                opened_at=now,
                measured=reading.measured,
                message=reading.message,
            )
            queue(alert, rule, AlertNotification.Event.OPENED, now)
    except IntegrityError:  # alert_one_open_per_rule: it is open already
        return False
    log.info("alert opened for %s: %s", rule.destination, reading.message)
    return True


def resolve_alert(alert: Alert, rule: AlertRule, reading: Reading, now: datetime) -> bool:
    """Resolve the alert and queue its "resolved" messages; False when another worker resolved it first."""
    with transaction.atomic():
        claimed = Alert.objects.filter(pk=alert.pk, resolved_at__isnull=True).update(
            resolved_at=now, resolution=reading.message
        )
        if claimed:
            alert.resolved_at, alert.resolution = now, reading.message
            queue(alert, rule, AlertNotification.Event.RESOLVED, now)
    if claimed:
        log.info("alert resolved for %s: %s", rule.destination, reading.message)
    return bool(claimed)


def queue(alert: Alert, rule: AlertRule, event: str, now: datetime) -> list[AlertNotification]:
    """Write one notification to send per channel of the rule that has somewhere to go."""
    notifications = [
        AlertNotification(alert=alert, event=event, channel=channel, target=target, next_attempt_at=now, created_at=now)
        for channel, target in targets(rule)
    ]
    return AlertNotification.objects.bulk_create(notifications)


def targets(rule: AlertRule) -> list[tuple[str, str]]:
    """(channel, target) for each of the rule's channels with a target: its own, or the hub's from the environment.
    A channel with nowhere to go is left out (the alert still opens, listed in the admin)."""
    found = []
    channels = rule.channels if isinstance(rule.channels, list) else []
    if AlertRule.Channel.EMAIL in channels:
        recipients = split_addresses(rule.email_recipients) or settings.ALERT_EMAILS
        if recipients:
            found.append((AlertRule.Channel.EMAIL, ", ".join(recipients)))
    if AlertRule.Channel.WEBHOOK in channels:
        url = rule.webhook_url or settings.ALERT_WEBHOOK_URL
        if url:
            found.append((AlertRule.Channel.WEBHOOK, url))
    return found


def split_addresses(text: str) -> list[str]:
    return [a.strip() for a in text.replace(";", ",").replace("\n", ",").split(",") if a.strip()]

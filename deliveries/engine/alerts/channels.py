"""The two ways an alert is told: an email through Django's email backend (SMTP settings from the environment) and
a JSON webhook signed the way the webhook vendor signs (Standard Webhooks, integrations/vendors/webhook.py),
posted through the vendors' HTTP client: a timeout, the private-address guard, secrets redacted.

Each sender raises NotSent with a message a person can act on; the secret is never part of it.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from django.conf import settings
from django.core.mail import EmailMessage
from django.urls import NoReverseMatch, reverse

from deliveries.models import Alert, AlertNotification, AlertRule
from integrations.crypto import Undecryptable
from integrations.vendors.http import HttpClient, describe_response
from integrations.vendors.results import DeliveryError
from integrations.vendors.webhook import sign

WEBHOOK_TIMEOUT = 5.0  # the sweeper waits for it
SUBJECT_PREFIX = {
    AlertNotification.Event.OPENED: "Alert",
    AlertNotification.Event.RESOLVED: "Resolved",
    AlertNotification.Event.TEST: "Test alert",
}


class NotSent(Exception):
    """A channel could not deliver the message; the text says why (never with a secret in it)."""


def send(notification: AlertNotification) -> None:
    """Send one notification on its channel; raises NotSent when it did not go."""
    if notification.channel == AlertRule.Channel.EMAIL:
        send_email(notification)
    elif notification.channel == AlertRule.Channel.WEBHOOK:
        send_webhook(notification)
    else:
        raise NotSent(f"Unknown channel {notification.channel!r}.")


def page_url(alert: Alert) -> str:
    """The destination's Event Delivery page, absolute when CDPHUB_PUBLIC_URL is set."""
    try:
        path = reverse("admin:deliveries_delivery_event_delivery", args=[alert.destination_id])
    except NoReverseMatch:
        return ""
    return settings.PUBLIC_URL.rstrip("/") + path


def subject(notification: AlertNotification) -> str:
    alert = notification.alert
    label = AlertRule.Kind(alert.kind).label.lower()
    return f"[cdphub] {SUBJECT_PREFIX[notification.event]}: {alert.destination.name}, {label}"


def body(notification: AlertNotification) -> str:
    alert, rule = notification.alert, notification.alert.rule
    lines = [f"Destination: {alert.destination.name} ({alert.destination.slug})", f"Rule: {rule.condition}", ""]
    if notification.event == AlertNotification.Event.TEST:
        lines += ["This is a test alert: nothing is wrong. Alerts for this rule will arrive like this one.", ""]
    lines += [f"Opened {alert.opened_at:%Y-%m-%d %H:%M:%S} UTC: {alert.message}"]
    if notification.event == AlertNotification.Event.RESOLVED and alert.resolved_at:
        lines += [f"Resolved {alert.resolved_at:%Y-%m-%d %H:%M:%S} UTC: {alert.resolution}"]
    url = page_url(alert)
    if url:
        lines += ["", f"Event Delivery: {url}"]
    lines += ["", "You get one message when an alert opens and one when it resolves."]
    return "\n".join(lines) + "\n"


def send_email(notification: AlertNotification) -> None:
    recipients = [a.strip() for a in notification.target.split(",") if a.strip()]
    message = EmailMessage(subject(notification), body(notification), settings.ALERT_FROM, recipients)
    try:
        message.send(fail_silently=False)
    except Exception as exc:  # smtplib, ssl and socket errors: whatever the server or network said
        raise NotSent(f"Email not sent: {type(exc).__name__}: {str(exc)[:300]}") from None


def payload(notification: AlertNotification) -> dict[str, Any]:
    """The webhook's JSON: what happened, to which destination, under which rule, and the page to look at."""
    alert = notification.alert
    return {
        "type": f"alert.{notification.event}",
        "alert": {
            "id": alert.pk,
            "kind": alert.kind,
            "condition": alert.rule.condition,
            "message": alert.message,
            "measured": alert.measured,
            "opened_at": alert.opened_at.isoformat(),
            "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
            "resolution": alert.resolution,
            "test": alert.is_test,
        },
        "destination": {"id": alert.destination_id, "name": alert.destination.name, "slug": alert.destination.slug},
        "url": page_url(alert),
    }


def signing_secret(rule: AlertRule) -> str:
    """The rule's own secret, else CDPHUB_ALERT_WEBHOOK_SECRET ("" signs nothing)."""
    stored = rule.webhook_secret
    if isinstance(stored, Undecryptable):
        raise NotSent(f"The rule's webhook secret {stored}.")
    own = stored.get("signing_secret", "") if isinstance(stored, dict) else ""
    return own or settings.ALERT_WEBHOOK_SECRET


def send_webhook(notification: AlertNotification) -> None:
    secret = signing_secret(notification.alert.rule)
    body_bytes = orjson.dumps(payload(notification))
    message_id = f"alert_{notification.alert_id}_{notification.pk}"
    headers = {"Content-Type": "application/json", "webhook-id": message_id}
    if secret:
        timestamp = int(time.time())
        try:
            signature = sign(secret, message_id, timestamp, body_bytes)
        except ValueError:
            raise NotSent("The webhook secret is whsec_ followed by something that is not base64.") from None
        headers |= {"webhook-timestamp": str(timestamp), "webhook-signature": signature}
    client = HttpClient(WEBHOOK_TIMEOUT, [secret], {"webhook-signature"})
    try:
        response = client.request("POST", notification.target, data=body_bytes, headers=headers)
    except DeliveryError as exc:  # the guard refused the address, or no answer: already redacted
        raise NotSent(f"Webhook not sent: {client.redact_text(exc.message)}") from None
    if not 200 <= response.status_code < 300:
        raise NotSent(f"Webhook refused: {client.redact_text(describe_response(response))}")

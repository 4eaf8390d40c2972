"""Customer.io reporting webhooks: one message event per request (email delivered, link clicked, SMS failed …)
becomes one track event, named as Segment's Customer.io source names it.

Contract: vendor-contracts.md §3; https://docs.customer.io/journeys/webhooks/ and https://docs.customer.io/api/webhooks/

Properties use the camelCase names of Segment's (and RudderStack's) Customer.io source (`deliveryId`,
`emailSubject`, `link.url`, `reason` …), so events look the same as those a Segment workspace receives from
Customer.io. The snake_case names of Segment's Email spec (`email_subject`, `link_url`) are not added alongside:
a destination mapping can rename one field, while two copies of each would disagree the day one of them changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from integrations.webhooks.base import (
    Incoming,
    SourceFunction,
    WebhookError,
    from_unix,
    header,
    hmac_digest,
    same,
)

# object_type: (the event name's first words, the metrics Segment's source names). Anything else is "Unknown Event".
_CHANNELS = {
    "email": (
        "Email",
        "drafted attempted sent delivered opened clicked converted unsubscribed subscribed bounced spammed "
        "dropped deferred failed",
    ),
    "customer": ("Customer", "subscribed unsubscribed"),
    "sms": ("SMS", "drafted attempted sent delivered clicked converted bounced failed"),
    "push": ("Push", "drafted attempted sent delivered opened clicked converted bounced dropped failed"),
    "slack": ("Slack Message", "drafted attempted sent clicked failed"),
    "webhook": ("Webhook Message", "drafted attempted sent clicked failed"),
}
_VERBS = {"clicked": "Link Clicked", "spammed": "Marked as Spam"}
NAMES = {
    (object_type, metric): f"{first} {_VERBS.get(metric, metric.capitalize())}"
    for object_type, (first, metrics) in _CHANNELS.items()
    for metric in metrics.split()
}
UNKNOWN = "Unknown Event"

# data field -> property. The last four come from the legacy (event_type) format only.
PROPERTIES = {
    "delivery_id": "deliveryId",
    "campaign_id": "campaignId",
    "action_id": "actionId",
    "parent_action_id": "parentActionId",
    "broadcast_id": "broadcastId",
    "journey_id": "journeyId",
    "newsletter_id": "newsletterId",
    "transactional_message_id": "transactionalMessageId",
    "trigger_event_id": "triggerEventId",
    "content_id": "contentId",
    "subject": "emailSubject",
    "content": "content",  # only when the webhook's "Body Content" setting is on
    "failure_message": "reason",
    "device_id": "deviceId",
    "device_platform": "devicePlatform",
    "recipients": "recipients",  # push: the devices, [{"device_id", "device_platform"}]
    "email_id": "emailId",
    "campaign_name": "campaignName",
    "template_id": "templateId",
}


@dataclass
class CustomerIoConfig:
    naming: Literal["segment", "customerio"] = "segment"  # customerio: "customerio:email_delivered"
    # Off by default: Customer.io retries for up to 7 days and may not re-sign a retry with a fresh timestamp, so a
    # window would stall the whole stream behind one old event. Retries are deduplicated on event_id instead.
    timestamp_tolerance: int | None = None

    def check(self) -> list[str]:
        if self.timestamp_tolerance is not None and self.timestamp_tolerance <= 0:
            return ["timestamp_tolerance: must be a positive number of seconds, or null to accept any timestamp"]
        return []


class CustomerIo(SourceFunction):
    kind = "customerio"
    label = "Customer.io"
    config_class = CustomerIoConfig

    def verify(self, incoming: Incoming) -> None:
        timestamp = header(incoming, "X-CIO-Timestamp")
        signature = header(incoming, "X-CIO-Signature")
        signed = b"v0:" + timestamp.encode() + b":" + incoming.body
        if not same(hmac_digest(self.secrets.signing_secret, signed).hex(), signature.lower()):
            raise WebhookError(
                401,
                "invalid_signature",
                "The X-CIO-Signature does not match this source's signing secret. In Customer.io, open the "
                "reporting webhook's settings and copy its signing key (not the Track API key) into the source's "
                "signing secret. A campaign's webhook action is signed with Customer.io's own key and cannot be "
                "verified: leave the signing secret blank for such a source.",
            )
        tolerance = self.config.timestamp_tolerance
        if tolerance is not None:
            skew = _skew(timestamp, incoming.received_at)
            if skew is None or skew > tolerance:
                raise WebhookError(
                    401,
                    "stale_signature",
                    f"The X-CIO-Timestamp {timestamp[:20]!r} is more than {tolerance} seconds away from cdphub's "
                    "clock. Check the server's clock, or clear the source's timestamp_tolerance: Customer.io "
                    "retries a webhook for up to 7 days, and retries are deduplicated on event_id anyway.",
                )

    def events(self, incoming: Incoming) -> list[dict[str, Any]]:
        payload = incoming.payload
        if not isinstance(payload, dict):
            raise WebhookError(
                400,
                "invalid_payload",
                f"A Customer.io reporting webhook posts one JSON object per event, not {_kind(payload)}.",
            )
        object_type, metric, original = _event_type(payload)
        event_id = _text(payload.get("event_id"))
        if not event_id:
            raise WebhookError(
                400,
                "missing_event_id",
                "The payload has no event_id. Customer.io puts one on every reporting webhook event; cdphub "
                "needs it to store a retried event once.",
            )
        data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
        identifiers = data.get("identifiers") if isinstance(data.get("identifiers"), dict) else {}

        if self.config.naming == "customerio":
            name = "customerio:" + (f"{object_type}_{metric}" if metric else object_type)
        else:
            name = NAMES.get((object_type, metric), UNKNOWN)
        properties: dict[str, Any] = {"eventId": event_id}
        if name == UNKNOWN:
            properties["eventType"] = original
        properties.update({prop: data[field] for field, prop in PROPERTIES.items() if data.get(field) is not None})
        link = {key: data[field] for field, key in (("href", "url"), ("link_id", "id")) if data.get(field) is not None}
        if link:
            properties["link"] = link

        # recipient is the address the message went to: an email, a phone number, a device token or a Slack
        # channel, depending on the channel, so it is an email only on email events.
        recipient = _text(data.get("recipient"))
        email = (
            _text(data.get("email_address"))
            or (recipient if object_type == "email" else "")
            or _text(identifiers.get("email"))
        )
        cio_id = _text(identifiers.get("cio_id"))
        traits = {"email": email, "phone": recipient if object_type == "sms" else "", "cioId": cio_id}
        traits = {key: value for key, value in traits.items() if value}
        user_id = _text(data.get("customer_id")) or _text(identifiers.get("id"))
        # Segment's Customer.io source: with no customer id, the email address is the anonymousId. Then Customer.io's
        # own person id: refusing the event would hold every later webhook back behind it (contract §3.1).
        anonymous_id = email or cio_id
        if not user_id and not anonymous_id:
            raise WebhookError(
                400,
                "missing_identity",
                f"The Customer.io event {event_id} names no person: it has no data.customer_id or "
                "data.identifiers.id (the userId), and no email address (data.email_address, data.recipient or "
                "data.identifiers.email) or data.identifiers.cio_id (the anonymousId).",
            )

        event: dict[str, Any] = {"type": "track", "event": name, "messageId": event_id}
        event.update({"userId": user_id} if user_id else {"anonymousId": anonymous_id})
        event["properties"] = properties
        event["context"] = {**({"traits": traits} if traits else {}), "integration": {"name": "customerio"}}
        timestamp = from_unix(payload.get("timestamp"))
        if timestamp:
            event["timestamp"] = timestamp
        return [event]


def _event_type(payload: dict[str, Any]) -> tuple[str, str, str]:
    """(object_type, metric, the type as sent: "email.delivered" or the legacy "email_delivered")."""
    object_type, metric, legacy = (_text(payload.get(key)) for key in ("object_type", "metric", "event_type"))
    if legacy and not object_type and not metric:
        object_type, _, metric = legacy.lower().partition("_")  # "customer_unsubscribed": object types have no "_"
        return object_type, metric, legacy
    missing = [key for key, value in (("object_type", object_type), ("metric", metric)) if not value]
    if missing:
        raise WebhookError(
            400,
            "missing_event_type",
            f"The payload has no {' and no '.join(missing)}: a Customer.io reporting webhook event says what "
            'happened in object_type and metric (e.g. "email" and "delivered"), or in a legacy event_type '
            '(e.g. "email_delivered").',
        )
    return object_type.lower(), metric.lower(), f"{object_type}.{metric}"


def _text(value: Any) -> str:
    """An id or address as a string ('' when absent); Customer.io sends some ids as numbers."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return ""


def _skew(timestamp: str, received_at: datetime) -> float | None:
    """Seconds between the signed Unix time and our clock; None when the header is not a whole number."""
    try:
        return abs(received_at.timestamp() - int(timestamp))
    except ValueError:
        return None


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else "a number"
    )

"""Zendesk: verify `X-Zendesk-Webhook-Signature` and map a Zendesk webhook to a Segment-spec track event.
https://developer.zendesk.com/documentation/webhooks/verifying

Two kinds of body arrive. A webhook subscribed to Zendesk events posts a fixed envelope
(`"type": "zen:event-type:ticket.status_changed"`, `detail` = the ticket, `event` = the change); a ticket event is
named "Ticket " + the change in Title Case ("Ticket Status Changed"), userId = the requester's Zendesk id.
A webhook connected to a trigger posts the body the admin wrote; the shape we read is

    {"event": "ticket.created",
     "ticket": {"id": "{{ticket.id}}", "title": "{{ticket.title}}", "status": "{{ticket.status}}",
                "requester": {"id": "{{ticket.requester.id}}", "email": "{{ticket.requester.email}}"}}}

or the same fields flat (`ticket_id`, `requester_email`, …). `event` names it ("Ticket Created"; without it,
"Ticket Updated"); every other field written in the body is kept as a property. A body without a ticket is kept
as "Zendesk Webhook". Without a requester id the requester's email (lower-cased) is the anonymousId, then
the ticket (`zen:ticket:123`). Status, priority and type are lower-cased: Zendesk writes them "OPEN", "Open" or
"open" depending on the kind of webhook and the agent's language.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any

from integrations.webhooks.base import Incoming, SourceFunction, WebhookError, header, hmac_digest, same

EVENT_PREFIX = "zen:event-type:"
REQUESTER_KEYS = ("requester", "requester_id", "requester_email", "requester_name")
ENVELOPE_KEYS = ("ticket", "event", "event_type", "timestamp")  # a trigger body's keys that are not properties
# Zendesk's field names → ours; fields not listed keep the name the trigger body gives them.
RENAMES = {
    "id": "ticketId",
    "title": "subject",
    "ticket_type": "type",
    "assignee_id": "assigneeId",
    "group_id": "groupId",
    "brand_id": "brandId",
    "organization_id": "organizationId",
}
DETAIL_FIELDS = (
    *("id", "subject", "status", "priority", "type", "tags", "via"),
    *("assignee_id", "group_id", "brand_id", "organization_id"),
)
LOWERED = ("status", "priority", "type")


class Zendesk(SourceFunction):
    kind = "zendesk"
    label = "Zendesk"

    def verify(self, incoming: Incoming) -> None:
        if not self.verifies:
            return
        signature = header(incoming, "X-Zendesk-Webhook-Signature")
        timestamp = header(incoming, "X-Zendesk-Webhook-Signature-Timestamp")
        # base64 of the raw HMAC-SHA256 digest of timestamp + body, with no separator
        digest = hmac_digest(self.secrets.signing_secret, timestamp.encode() + incoming.body)
        if not same(base64.b64encode(digest).decode(), signature):
            raise WebhookError(
                401,
                "invalid_signature",
                "The X-Zendesk-Webhook-Signature does not match this source's signing secret: copy the webhook's "
                "secret from Zendesk Admin Center → Apps and integrations → Webhooks → your webhook → Reveal secret.",
            )

    def events(self, incoming: Incoming) -> list[dict[str, Any]]:
        body = incoming.payload
        if not isinstance(body, dict):
            raise WebhookError(400, "invalid_payload", "The Zendesk webhook body must be a JSON object.")
        kind = body.get("type")
        if isinstance(kind, str) and kind.startswith(EVENT_PREFIX):
            event = _subscribed(body, kind.removeprefix(EVENT_PREFIX))
            event["messageId"] = str(body["id"]) if _present(body.get("id")) else _delivery_id(incoming)
        else:
            event = _trigger(body)
            event["messageId"] = _delivery_id(incoming)
        event["context"] = {"integration": {"name": "zendesk"}, **event.get("context", {})}
        return [{key: value for key, value in event.items() if value is not None}]


def _subscribed(body: dict[str, Any], kind: str) -> dict[str, Any]:
    """A webhook subscribed to Zendesk events: https://developer.zendesk.com/api-reference/webhooks/event-types/"""
    detail = body.get("detail") if isinstance(body.get("detail"), dict) else {}
    change = body.get("event") if isinstance(body.get("event"), dict) else {}
    domain, _, action = kind.partition(".")
    if domain == "ticket":
        fields = {key: detail[key] for key in DETAIL_FIELDS if key in detail}
        if isinstance(fields.get("via"), dict):
            fields["via"] = fields["via"].get("channel")
        properties = _ticket_properties(fields)
        for key, value in change.items():
            if key != "meta":  # previous/current, comment, …: what changed
                lowered = key in ("previous", "current") and action.removesuffix("_changed") in LOWERED
                properties.setdefault(key, _lower(value) if lowered else value)
        name, user = "Ticket " + _title(action), detail.get("requester_id")
    else:  # users, organizations, articles …: named after the Zendesk type ("Zendesk User Created")
        properties = {**detail, **{key: value for key, value in change.items() if key != "meta"}}
        name, user = "Zendesk " + _title(kind), detail.get("id") if domain == "user" else None
    subject = body.get("subject") if _present(body.get("subject")) else None
    if domain == "ticket" and not subject and _present(detail.get("id")):
        subject = f"zen:ticket:{detail['id']}"
    event = {"type": "track", "event": name, "properties": properties, "timestamp": _iso(body.get("time"))}
    if _present(user):
        return {**event, "userId": str(user)}
    if subject:
        return {**event, "anonymousId": str(subject)}
    raise _missing_identity()


def _trigger(body: dict[str, Any]) -> dict[str, Any]:
    """A webhook connected to a trigger or an automation: the body is what the admin wrote."""
    ticket = body.get("ticket")
    nested = isinstance(ticket, dict)
    if not nested and _present(body.get("ticket_id")):  # the flat shape
        ticket = {
            key.removeprefix("ticket_"): value
            for key, value in body.items()
            if key not in ENVELOPE_KEYS and not key.startswith("requester")
        }
    requester = _requester(ticket if isinstance(ticket, dict) else {}, body)
    if isinstance(ticket, dict):
        properties = _ticket_properties({key: value for key, value in ticket.items() if key not in REQUESTER_KEYS})
        if nested:  # whatever else the admin put next to the ticket
            extra = {key: value for key, value in body.items() if key not in (*ENVELOPE_KEYS, *REQUESTER_KEYS)}
            properties = {**extra, **properties}
        name = _trigger_name(body.get("event") or body.get("event_type"))
        ticket_id = ticket.get("id")
        timestamp = _iso(body.get("timestamp") or ticket.get("updated_at"))
    else:
        properties, name, ticket_id, timestamp = dict(body), "Zendesk Webhook", None, _iso(body.get("timestamp"))
    event: dict[str, Any] = {"type": "track", "event": name, "properties": properties, "timestamp": timestamp}
    traits = {key: requester[key] for key in ("email", "name") if key in requester}
    if traits:
        event["context"] = {"traits": traits}
    if "id" in requester:
        return {**event, "userId": str(requester["id"])}
    if "email" in requester:
        return {**event, "anonymousId": requester["email"].lower()}
    if _present(ticket_id):
        return {**event, "anonymousId": f"zen:ticket:{ticket_id}"}
    raise _missing_identity()


def _requester(ticket: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """The requester's id, email and name, wherever the trigger body puts them."""
    found: dict[str, Any] = {}
    for source in (ticket, body):
        nested = source.get("requester") if isinstance(source.get("requester"), dict) else {}
        for key in ("id", "email", "name"):
            for value in (nested.get(key), source.get(f"requester_{key}")):
                if key not in found and _present(value) and (key == "id" or isinstance(value, str)):
                    found[key] = value.strip() if isinstance(value, str) else value
    return found


def _ticket_properties(fields: dict[str, Any]) -> dict[str, Any]:
    properties = {RENAMES.get(key, key): value for key, value in fields.items()}
    for key in LOWERED:
        properties[key] = _lower(properties.get(key))
    if isinstance(properties.get("tags"), str):  # {{ticket.tags}} renders as "vip billing"
        properties["tags"] = properties["tags"].split()
    return {key: value for key, value in properties.items() if value is not None and value != ""}


def _trigger_name(value: Any) -> str:
    words = _title(value.removeprefix(EVENT_PREFIX)).split() if isinstance(value, str) else []
    if words[:1] == ["Ticket"]:
        words = words[1:]
    return "Ticket " + (" ".join(words) or "Updated")


def _delivery_id(incoming: Incoming) -> str:
    """The invocation id, the same on every retry of one invocation; without it, a hash of the body."""
    invocation = (incoming.headers.get("X-Zendesk-Webhook-Invocation-Id") or "").strip()
    if invocation:
        return f"zendesk-invocation-{invocation}"
    return f"zendesk-{hashlib.sha256(incoming.body).hexdigest()[:40]}"


def _missing_identity() -> WebhookError:
    return WebhookError(
        400,
        "missing_identity",
        "The Zendesk webhook body names no requester and no ticket, so the event has no one to belong to: "
        'add "ticket": {"id": "{{ticket.id}}", "requester": {"id": "{{ticket.requester.id}}", '
        '"email": "{{ticket.requester.email}}"}} to the trigger\'s JSON body.',
    )


def _present(value: Any) -> bool:
    """A real value: not empty, and not a placeholder Zendesk left unrendered ("{{ticket.id}}")."""
    if isinstance(value, str):
        return bool(value.strip()) and "{{" not in value
    return isinstance(value, int) and not isinstance(value, bool)


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _title(kind: str) -> str:
    return " ".join(word.capitalize() for word in kind.replace("_", " ").replace(".", " ").split())


def _iso(value: Any) -> str | None:
    """An ISO-8601 UTC time in milliseconds, or None when the value is not one (Zendesk times have nanoseconds)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        moment = moment.astimezone(UTC)  # overflows at the calendar's edge: 0001-01-01T00:00+05:00
    except (ValueError, OverflowError):
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

"""Validate and normalise one Segment-spec event as the Tracking API accepts it (the same for webhooks' events)."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from integrations.spec import EVENT_TYPES

MAX_EVENT_BYTES = 32 * 1024
MAX_ID_LENGTH = 255

# Fields that must be JSON objects when present, per type ("properties as a list" is refused).
_OBJECT_FIELDS = {
    "identify": ("traits",),
    "track": ("properties",),
    "page": ("properties",),
    "screen": ("properties",),
    "group": ("traits",),
    "alias": (),
}
_STRING_FIELDS = {"track": ("event",), "page": ("name", "category"), "screen": ("name", "category")}


class EventError(Exception):
    """An event that cannot be accepted; `code` is stable, `message` tells the sender what to fix."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Rejection:
    code: str
    reason: str
    message_id: str
    index: int | None = None
    item: Any = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"messageId": self.message_id, "code": self.code, "reason": self.reason}
        if self.index is not None:
            out = {"index": self.index, **out}
        return out


# A batch's events share receivedAt and often sentAt and timestamps: each distinct value is parsed and
# formatted once (the caches hold a few thousand recent values per process).


@lru_cache(maxsize=4096)
def iso(dt: datetime) -> str:
    """Format as Segment does: UTC, milliseconds, a Z."""
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@lru_cache(maxsize=4096)
def _from_iso(value: str) -> datetime:
    dt = datetime.fromisoformat(value)
    # Segment's precision is the millisecond; cutting here keeps the stored fields consistent with the rule.
    dt = dt.replace(microsecond=dt.microsecond // 1000 * 1000)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def parse_time(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise EventError("invalid_timestamp", f"{name} must be an ISO-8601 date-time string, not {_kind(value)}.")
    try:
        return _from_iso(value)
    except ValueError:
        raise EventError("invalid_timestamp", f"{name} is not an ISO-8601 date-time: {value[:60]!r}.") from None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return "a number"


def _identifier(item: dict[str, Any], name: str) -> str:
    """Return an id field as a string ('' when absent); numbers are accepted and stringified."""
    value = item.get(name)
    if value is None:
        return ""
    if isinstance(value, str):
        pass
    elif isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
        item[name] = value
    else:
        raise EventError("invalid_type", f"{name} must be a string, not {_kind(value)}.")
    if len(value) > MAX_ID_LENGTH:
        raise EventError("invalid_value", f"{name} is longer than {MAX_ID_LENGTH} characters.")
    return value


def normalise(
    item: Any,
    event_type: str,
    received_at: datetime,
    *,
    sent_at: Any = None,
    context: dict[str, Any] | None = None,
    integrations: dict[str, Any] | None = None,
    ip: str | None = None,
) -> dict[str, Any]:
    """Validate one event and return the payload destinations get; raise EventError when it is refused.

    `sent_at`, `context` and `integrations` are the batch-level values, merged under the item's own.
    """
    if not isinstance(item, dict):
        raise EventError("invalid_event", f"An event must be a JSON object, not {_kind(item)}.")
    if event_type not in EVENT_TYPES:
        raise EventError(
            "invalid_type",
            f"type must be one of {', '.join(EVENT_TYPES)}; got {str(event_type)[:40]!r}."
            if event_type is not None
            else "Every event in a batch needs a type (identify, track, page, screen, group or alias).",
        )
    payload = dict(item)
    payload.pop("writeKey", None)
    payload["type"] = event_type

    user_id = _identifier(payload, "userId")
    anonymous_id = _identifier(payload, "anonymousId")
    if event_type == "alias":
        previous_id = _identifier(payload, "previousId")
        if not previous_id or not user_id:
            raise EventError("missing_field", "An alias needs both previousId and userId.")
    elif not user_id and not anonymous_id:
        raise EventError("missing_identity", "Every event needs a userId or an anonymousId.")
    if event_type == "group" and not _identifier(payload, "groupId"):
        raise EventError("missing_field", "A group call needs a groupId.")

    for name in _STRING_FIELDS.get(event_type, ()):
        value = payload.get(name)
        if value is not None and not isinstance(value, str):
            raise EventError("invalid_type", f"{name} must be a string, not {_kind(value)}.")
    if event_type == "track":
        name = payload.get("event")
        if not name or not name.strip():
            raise EventError("missing_field", "A track call needs an event name (the event field).")
    for name in (*_OBJECT_FIELDS[event_type], "context", "integrations"):
        value = payload.get(name)
        if value is not None and not isinstance(value, dict):
            raise EventError("invalid_type", f"{name} must be an object, not {_kind(value)}.")
    for name in _OBJECT_FIELDS[event_type]:
        if payload.get(name) is None:
            payload[name] = {}
    if event_type == "identify" and not payload["traits"]:
        # RudderStack SDKs send identify traits in context.traits only; mappings look for traits.*
        context_traits = (payload.get("context") or {}).get("traits")
        if isinstance(context_traits, dict):
            payload["traits"] = dict(context_traits)

    message_id = payload.get("messageId")
    if message_id is None or message_id == "":
        payload["messageId"] = new_message_id()
    elif not isinstance(message_id, str):
        raise EventError("invalid_type", f"messageId must be a string, not {_kind(message_id)}.")
    elif len(message_id) > MAX_ID_LENGTH:
        raise EventError("invalid_value", f"messageId is longer than {MAX_ID_LENGTH} characters.")

    if context:
        payload["context"] = {**context, **(payload.get("context") or {})}
    if integrations:
        payload["integrations"] = {**integrations, **(payload.get("integrations") or {})}
    if ip:
        ctx = payload.get("context")
        if ctx is None:
            payload["context"] = {"ip": ip}
        elif "ip" not in ctx:
            payload["context"] = {**ctx, "ip": ip}

    _normalise_times(payload, received_at, sent_at)
    return payload


def _normalise_times(payload: dict[str, Any], received_at: datetime, batch_sent_at: Any) -> None:
    """Set receivedAt, originalTimestamp and the clock-skew-corrected timestamp (Segment's spec)."""
    original_raw = payload.get("originalTimestamp")
    if original_raw is None:
        original_raw = payload.get("timestamp")
    sent_raw = payload.get("sentAt")
    if sent_raw is None:
        sent_raw = batch_sent_at
    original = (
        parse_time(original_raw, "originalTimestamp" if "originalTimestamp" in payload else "timestamp")
        if original_raw is not None
        else None
    )
    sent = parse_time(sent_raw, "sentAt") if sent_raw is not None else None
    try:
        if original is not None and sent is not None:
            # The device clock may be wrong; the gap between call and send is not: timestamp = receivedAt -
            # (sentAt - originalTimestamp).
            timestamp = received_at - (sent - original)
        else:
            timestamp = original or received_at
        payload["timestamp"] = iso(timestamp)
        # Converting an offset date at the edge of the calendar to UTC can overflow too (0001-01-01T00:00+05:00).
        payload["originalTimestamp"] = iso(original or received_at)
        if sent is not None:
            payload["sentAt"] = iso(sent)
    except (OverflowError, ValueError):
        raise EventError("invalid_timestamp", "timestamp, sentAt and originalTimestamp are too far apart.") from None
    payload["receivedAt"] = iso(received_at)
    payload["_timestamp"] = timestamp  # a datetime for the column; removed before storing


def new_message_id() -> str:
    """A messageId for an event that came without one: a UUID version 7 (RFC 9562), milliseconds since the
    epoch then 74 random bits. The ids the hub assigns rise with time, so the two messageId indexes take each
    at their end instead of on a random page (with uuid4 each event changed two more pages of the database)."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")  # 80 bits, 74 of them used
    value = (ms & (1 << 48) - 1) << 80 | 7 << 76 | (rand >> 62 & 0xFFF) << 64 | 2 << 62 | rand & (1 << 62) - 1
    return str(uuid.UUID(int=value))


def rejection_for(item: Any, error: EventError, index: int | None = None) -> Rejection:
    message_id = item.get("messageId") if isinstance(item, dict) else None
    if not isinstance(message_id, str) or not message_id or len(message_id) > MAX_ID_LENGTH:
        message_id = str(uuid.uuid4())
    return Rejection(error.code, error.message, message_id, index, item)


def email_of(payload: dict[str, Any]) -> str:
    """The person's email, for the Debugger's search: traits, then context.traits, then properties."""
    context = payload.get("context")
    context_traits = context.get("traits") if isinstance(context, dict) else None
    for holder in (payload.get("traits"), context_traits, payload.get("properties")):
        if isinstance(holder, dict):
            email = holder.get("email")
            if isinstance(email, str) and email:
                return email[:255].lower()
    return ""

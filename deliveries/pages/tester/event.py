"""The tester's event: pasted as JSON or posted as an object, normalised as the Tracking API would accept it, or
the reason the Tracking API would refuse it (the page and the management API say the same)."""

from __future__ import annotations

import json
from typing import Any

from django.utils import timezone

from deliveries.ingest.normalisation import EventError, normalise


def parse_event(text: str) -> tuple[dict[str, Any], str]:
    """The event as the Tracking API would accept it (normalised), or why it would be refused."""
    if not text.strip():
        return {}, "Paste an event as JSON, or build one with the form."
    try:
        item = json.loads(text)
    except json.JSONDecodeError as exc:
        return {}, f"The event is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
    return normalised_event(item)


def normalised_event(item: Any) -> tuple[dict[str, Any], str]:
    """An event already read from JSON, normalised as the Tracking API would, or why it would be refused."""
    event_type = item.get("type") if isinstance(item, dict) else None
    try:
        return normalise(item, event_type, timezone.now()), ""
    except EventError as exc:
        return {}, f"The Tracking API would refuse this event ({exc.code}): {exc.message}"

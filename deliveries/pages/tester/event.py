"""The tester's event: pasted as JSON or posted as an object, normalised as the Tracking API would accept it, or
the reason the Tracking API would refuse it (the page and the management API say the same)."""

from __future__ import annotations

import json
from typing import Any

from django.utils import timezone

from deliveries.ingest.endpoint import RequestError
from deliveries.ingest.normalisation import EventError, normalise
from deliveries.ingest.parsing import parse_json


def parse_event(text: str) -> tuple[dict[str, Any], str]:
    """The event as the Tracking API would accept it (normalised), or why it would be refused."""
    if not text.strip():
        return {}, "Paste an event as JSON, or build one with the form."
    try:
        json.loads(text)  # for its line and column
    except json.JSONDecodeError as exc:
        return {}, f"The event is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
    try:  # read as the Tracking API reads it: \u0000 as U+FFFD, lone surrogates and deep nesting refused
        item = parse_json(text.encode("utf-8", "surrogatepass"))
    except RequestError as exc:
        return {}, f"The Tracking API would refuse this event ({exc.code}): {exc.message}"
    return normalised_event(item)


def normalised_event(item: Any) -> tuple[dict[str, Any], str]:
    """An event already read from JSON, normalised as the Tracking API would, or why it would be refused."""
    event_type = item.get("type") if isinstance(item, dict) else None
    try:
        return normalise(item, event_type, timezone.now()), ""
    except EventError as exc:
        return {}, f"The Tracking API would refuse this event ({exc.code}): {exc.message}"

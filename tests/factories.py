"""Rows and page readers the tests share: an accepted event (a track, or of any type), its outbox row, a changelist
cell."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from django.utils import timezone

from deliveries.engine.schema_fold import KEYS_OF
from deliveries.models import Delivery, Event
from integrations.models import Destination, Source


def make_event(source: Source, received_at: datetime | None = None, **fields: Any) -> Event:
    """An accepted track event written directly (no ingest, no routing)."""
    at = received_at or timezone.now()
    fields.setdefault("message_id", str(uuid.uuid4()))
    fields.setdefault("user_id", "u1")
    fields.setdefault("event", "Signed Up")
    payload = {
        "type": "track",
        "event": fields["event"],
        "userId": fields["user_id"],
        "messageId": fields["message_id"],
        "properties": {"plan": "pro"},
    }
    return Event.objects.create(source=source, type="track", payload=payload, received_at=at, timestamp=at, **fields)


def make_typed_event(
    source: Source,
    kind: str = "track",
    name: str = "Order Completed",
    keys: dict[str, Any] | None = None,
    at: datetime | None = None,
    status: str = "accepted",
    save: bool = True,
) -> Event:
    """An event as ingest stores it: the track name in its column, page/screen names and the properties or traits
    in the payload (unsaved with save=False, for bulk_create)."""
    at = at or timezone.now()
    message_id = str(uuid.uuid4())
    payload: dict[str, Any] = {"type": kind, "messageId": message_id, "userId": "u1"}
    if kind == "track":
        payload["event"] = name
    elif kind in ("page", "screen"):
        payload["name"] = name
    if keys is not None:
        payload[KEYS_OF.get(kind, "properties")] = keys
    event = Event(
        source=source,
        message_id=message_id,
        type=kind,
        event=name if kind == "track" else "",
        user_id="u1",
        payload=payload,
        received_at=at,
        timestamp=at,
        status=status,
    )
    if save:
        event.save()
    return event


def make_delivery(destination: Destination, event: Event, **fields: Any) -> Delivery:
    """The event's outbox row for the destination, due when the event was received (nothing kicks it)."""
    fields.setdefault("next_attempt_at", event.received_at)
    return Delivery.objects.create(event=event, destination=destination, created_at=event.received_at, **fields)


def cell(html: str, row_of: str, column: str) -> str:
    """The text of one changelist cell: the row that mentions `row_of`, the column's class."""
    for row in re.findall(r"<tr>.*?</tr>", html, re.S):
        if row_of in row:
            match = re.search(rf'class="field-{column}[^"]*">(.*?)</t[dh]>', row, re.S)
            assert match, f"no {column} cell in the row of {row_of}"
            return " ".join(re.sub(r"<[^>]+>", " ", match.group(1)).split())
    raise AssertionError(f"no row mentions {row_of}")

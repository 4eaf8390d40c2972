"""Store normalised events: deduplicated per source, routed to outbox rows, written in one transaction, then the
destinations with new work woken (the one write path of the Tracking API and webhooks)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction

from deliveries.engine.slots import kick
from deliveries.ingest.lookups import destinations_of
from deliveries.ingest.normalisation import Rejection
from deliveries.ingest.rows import event_rows, rejected_rows
from deliveries.ingest.write_turn import write_turn
from deliveries.ingest.writes import Write, stored_message_ids
from deliveries.models import Delivery
from deliveries.outage import Throttled, unreachable
from integrations.models import Source

log = logging.getLogger("cdphub.ingest")
_unqueued = Throttled(log)


@dataclass
class IngestResult:
    accepted: list[str] = field(default_factory=list)  # messageIds of the events stored
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)


def store(
    source: Source,
    payloads: list[dict[str, Any]],
    rejections: list[Rejection],
    received_at: datetime,
) -> IngestResult:
    """Write accepted events (deduplicated on messageId per source), their outbox rows and rejections in one
    transaction; `accepted` lists the messageIds of the events stored."""
    conn = transaction.get_connection()
    destinations = destinations_of(source) if payloads else []
    events, routes, repeated = event_rows(source.pk, payloads, destinations, received_at, conn)
    rejected = rejected_rows(source, rejections, received_at, conn)
    result = IngestResult(duplicates=repeated, rejected=rejections)

    # A batch asks which of its messageIds are stored already, before taking the write lock; a single new
    # event is inserted straight away and a duplicate shows as an IntegrityError (then it is asked, inside
    # the lock, as is everything a request that stored the same messageId meanwhile made fail).
    fresh = list(events)
    if len(fresh) > 1:
        stored = stored_message_ids(source, fresh)
        fresh = [m for m in fresh if m not in stored]
    write = Write(source, received_at, events, routes, rejected, fresh)
    if fresh or rejected:
        write_turn.write(conn, write)
    result.accepted = write.fresh
    result.duplicates += len(events) - len(write.fresh)
    # Committed: wake a worker for each destination with new work.
    for destination_id in {row[1] for row in write.outbox if row[2] == Delivery.Status.PENDING}:
        try:
            kick(destination_id)
        except Exception as exc:  # the events are stored; the sweeper queues them within seconds
            if not unreachable(exc):
                log.exception("could not queue delivery to destination %s", destination_id)
            else:  # the broker (Redis) or the database restarting: one line now and then, no traceback
                _unqueued.warn("could not queue deliveries (the sweeper will)", exc)
    return result

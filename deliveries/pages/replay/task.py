"""Starting a replay (its row, then its task), and the task: walk the matching events in id order, CHUNK at a time
per destination, and queue their deliveries (skipping what was delivered unless asked, leaving in-flight ones alone,
requeueing the others with a fresh retry deadline, creating missing ones), counting as it goes on the Replay row."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone
from django_q.tasks import async_task

from deliveries.engine.routing import SEND, decide
from deliveries.engine.slots import kick_on_commit
from deliveries.ingest.writes import insert_deliveries
from deliveries.models import Delivery, Event, Replay
from deliveries.pages.replay.progress import progress
from deliveries.pages.replay.selection import MAX_EVENTS, describe, events_for
from integrations.models import Destination

log = logging.getLogger("cdphub.replay")

CHUNK = 500  # events per transaction of a replay: short write locks, and progress the page can show
REPLAY_TASK = "deliveries.pages.replay.task.run_replay"


def start(criteria: dict[str, Any], destinations: list[Destination], include_delivered: bool, user: Any) -> Replay:
    """Record the replay (the admin's form or the management API) and queue its task once the row is committed."""
    with transaction.atomic():
        replay = Replay.objects.create(
            criteria=criteria,
            description=describe(criteria),
            include_delivered=include_delivered,
            created_by=user if user is not None and user.is_authenticated else None,
        )
        replay.destinations.set(destinations)
        transaction.on_commit(lambda: async_task(REPLAY_TASK, replay.pk, task_name="replay"))
    return replay


def run_replay(replay_id: int) -> str:
    """The background task: queue the replay's deliveries chunk by chunk, then leave the rest to the workers."""
    replay = Replay.objects.filter(pk=replay_id).first()
    if replay is None:
        return "gone"
    Replay.objects.filter(pk=replay.pk).update(status=Replay.Status.RUNNING, error="")
    try:
        destinations = list(replay.destinations.defer("credentials").order_by("name"))
        total = 0
        for destination in destinations:
            matched = events_for(replay.criteria, destination).order_by("pk").values("pk")[:MAX_EVENTS].count()
            total += matched
        Replay.objects.filter(pk=replay.pk).update(total=total)
        for destination in destinations:
            _replay_to(replay, destination)
    except Exception as exc:  # shown on the progress page: the marketer can replay again once it is fixed
        log.exception("replay %s failed", replay_id)
        Replay.objects.filter(pk=replay.pk).update(
            status=Replay.Status.FAILED,
            error=f"The replay stopped ({type(exc).__name__}: {exc}). Deliveries queued so far are being sent.",
            finished_at=timezone.now(),
        )
        return "failed"
    Replay.objects.filter(pk=replay.pk).update(status=Replay.Status.SENDING)
    replay.refresh_from_db()
    progress(replay)
    return f"queued {replay.queued}"


def _replay_to(replay: Replay, destination: Destination) -> None:
    events = events_for(replay.criteria, destination).order_by("pk")
    cursor, seen = 0, 0
    while seen < MAX_EVENTS:
        ids = list(events.filter(pk__gt=cursor).values_list("pk", flat=True)[: min(CHUNK, MAX_EVENTS - seen)])
        if not ids:
            return
        with transaction.atomic():
            _replay_chunk(replay, destination, ids)
            kick_on_commit([destination.pk])
        cursor, seen = ids[-1], seen + len(ids)


def _replay_chunk(replay: Replay, destination: Destination, event_ids: list[int]) -> None:
    """Queue one chunk of events for one destination and add to the replay's counts."""
    now = timezone.now()
    rows: dict[int, list[tuple[int, str]]] = {}
    existing = Delivery.objects.filter(destination=destination, event_id__in=event_ids, is_test=False)
    for delivery_id, event_id, status in existing.order_by("pk").values_list("pk", "event_id", "status"):
        rows.setdefault(event_id, []).append((delivery_id, status))
    requeue: list[int] = []
    create: list[int] = []
    skipped_delivered = 0
    for event_id in event_ids:
        statuses = [status for _, status in rows.get(event_id, [])]
        waiting = [i for i, status in rows.get(event_id, []) if status in Delivery.REQUEUEABLE]
        if Delivery.Status.IN_FLIGHT in statuses:
            continue  # being sent right now: counted as processed only
        if Delivery.Status.DELIVERED in statuses and not replay.include_delivered:
            skipped_delivered += 1
        elif waiting:
            requeue.append(waiting[-1])  # the newest row keeps the event's attempt history
        else:
            create.append(event_id)
    # The destination's filter applies on replay, as Segment applies it: dropped pairs are counted, not queued.
    deciding = {delivery_id: event_id for event_id, rows_ in rows.items() for delivery_id, _ in rows_}
    wanted = set(create) | {deciding[i] for i in requeue}
    payloads = dict(Event.objects.filter(pk__in=wanted).values_list("pk", "payload"))
    dropped = {event_id for event_id, payload in payloads.items() if not decide(destination, payload).send}
    requeue = [i for i in requeue if deciding[i] not in dropped]
    create = [event_id for event_id in create if event_id not in dropped]
    queued = 0
    if requeue:
        # A worker may have claimed one since: only rows still waiting to be queued again.
        again = Delivery.objects.filter(pk__in=requeue, status__in=Delivery.REQUEUEABLE)
        fields = {
            "status": Case(
                When(attempts=0, then=Value(Delivery.Status.PENDING)), default=Value(Delivery.Status.RETRYING)
            ),
            "next_attempt_at": now,
            "retry_from": now,
            "replay": replay,
            "lease_expires_at": None,
        }
        # A filtered row's reason no longer holds once the filter lets it through.
        queued += again.filter(status=Delivery.Status.FILTERED).update(
            **fields, error_code="", error_message="", hint=""
        )
        queued += again.exclude(status=Delivery.Status.FILTERED).update(**fields)
    if create:  # what ingest would have written had the filter let them through, queued by this replay
        insert_deliveries(create, destination, SEND, now, retry_from=now, replay_id=replay.pk)
        queued += len(create)
    Replay.objects.filter(pk=replay.pk).update(
        processed=F("processed") + len(event_ids),
        queued=F("queued") + queued,
        skipped_delivered=F("skipped_delivered") + skipped_delivered,
        skipped_filtered=F("skipped_filtered") + len(dropped),
    )

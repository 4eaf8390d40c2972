"""Record what a send did: one Attempt per try, the delivery moved on (delivered, retrying or failed), the outcome
counted in the rollups, the destination's last error or delivery noted, and its adaptive rate and circuit breaker
told (adaptive.py, circuit.py), in one write transaction."""

from __future__ import annotations

import logging
import random
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from deliveries.engine import adaptive, circuit, rollups
from deliveries.engine.claim import still_held
from deliveries.engine.send import Sent
from deliveries.engine.timing import Timing, backoff
from deliveries.models import Attempt, Delivery
from integrations.models import Destination

log = logging.getLogger("cdphub.engine")

RECORDED_FIELDS = (
    "status",
    "attempts",
    "throttled",
    "next_attempt_at",
    "lease_expires_at",
    "error_code",
    "error_message",
    "hint",
    "delivered_at",
    "latency_ms",
    "updated_at",
)


def record(destination: Destination, sent: list[Sent], timing: Timing) -> int:
    """Write one Attempt per delivery this worker still holds and move it on: delivered, retrying or failed.

    Returns how many were recorded; a delivery re-claimed by someone else meanwhile is left to its new holder.
    """
    if not sent:
        return 0
    now = timezone.now()
    held_open = circuit.held_seconds(destination.id, now)
    changes: list[tuple[Delivery, dict, Attempt]] = []
    for item in sent:
        delivery, result = item.delivery, item.result
        outcome = result.outcome
        throttled = outcome == "throttled"
        # A throttled try waits without counting: backoff and the attempt count see only the others.
        attempts = delivery.attempts + (0 if throttled else 1)
        number = delivery.attempts + delivery.throttled + 1
        message = result.error_message
        fields: dict[str, Any] = {"attempts": attempts, "lease_expires_at": None, "updated_at": now}
        if throttled:
            fields["throttled"] = delivery.throttled + 1
        if outcome in ("retry", "throttled"):
            if result.defer and result.retry_after is not None:  # a quota's reset, maybe hours away
                delay = min(result.retry_after, 26 * 3600.0) + random.uniform(0, 60)
            else:
                delay = backoff(max(attempts, 1), result.retry_after, timing)
            since = delivery.retry_from or delivery.event.received_at
            deadline = since + destination.retry_deadline
            if now + timedelta(seconds=delay) > deadline and not result.defer:
                # Time spent behind an open circuit does not count: the deadline moves on by that much.
                deadline += timedelta(seconds=held_open(since))
            if delivery.is_test:
                outcome, message = "failed", message + " (test sends are not retried)"
            elif now + timedelta(seconds=delay) > deadline and not result.defer:
                outcome = "failed"
                message += f" (gave up after {number} attempts: the retry deadline has passed)"
            else:
                fields["next_attempt_at"] = now + timedelta(seconds=delay)
        if outcome == "filtered":
            fields |= {"status": Delivery.Status.FILTERED, "error_code": result.error_code, "error_message": message}
            fields["hint"] = result.hint
        elif outcome == "delivered":
            latency = max(0, int((item.finished - delivery.event.received_at).total_seconds() * 1000))
            fields |= {"status": Delivery.Status.DELIVERED, "delivered_at": item.finished, "latency_ms": latency}
            fields |= {"error_code": "", "error_message": "", "hint": ""}
        else:
            status = Delivery.Status.FAILED if outcome == "failed" else Delivery.Status.RETRYING
            fields |= {"status": status, "error_code": result.error_code, "error_message": message}
            fields["hint"] = result.hint
        attempt = Attempt(
            delivery=delivery,
            number=number,
            started_at=item.started,
            duration_ms=item.duration_ms,
            outcome=outcome,
            status_code=result.status_code,
            error_code=result.error_code,
            error_message=message,
            hint=result.hint,
            exchanges=result.exchanges,
            logs=result.logs,
        )
        changes.append((delivery, fields, attempt))
    with transaction.atomic():
        query = Delivery.objects.filter(still_held([d for d, _, _ in changes]))
        if connection.features.has_select_for_update:
            query = query.select_for_update()
        held = set(query.values_list("id", flat=True))
        recorded = [change for change in changes if change[0].id in held]
        for delivery, _, attempt in changes:
            if delivery.id not in held:
                log.warning(
                    "delivery %s was taken over after its lease expired; this worker's late %s is not recorded",
                    delivery.id,
                    attempt.outcome,
                )
        for delivery, fields, _ in recorded:
            for name, value in fields.items():
                setattr(delivery, name, value)
        _save_rows([delivery for delivery, _, _ in recorded], RECORDED_FIELDS)
        Attempt.objects.bulk_create([attempt for _, _, attempt in recorded])
        rollups.add(
            (destination.id, fields.get("delivered_at") or now, fields["status"], fields.get("latency_ms"))
            for delivery, fields, _ in recorded
            if fields["status"] in rollups.OUTCOMES and not delivery.is_test
        )
        update = {}
        if any(fields["status"] == Delivery.Status.DELIVERED for _, fields, _ in recorded):
            update["last_delivered_at"] = now
        errors = [attempt for _, fields, attempt in recorded if fields["status"] not in ("delivered", "filtered")]
        if errors:
            last = errors[-1]
            update.update(
                last_error=last.error_message[:1000],
                last_error_code=last.error_code,
                last_error_hint=last.hint,
                last_error_at=now,
            )
        if update:
            Destination.objects.filter(id=destination.id).update(**update)
        results = [item.result for item in sent if item.delivery.id in held]
        adaptive.observe(destination, results, now)
        circuit.observe(destination, results, now)
    return len(recorded)


def _save_rows(deliveries: list[Delivery], names: tuple[str, ...]) -> None:
    """Write these fields of each delivery with one UPDATE statement run for every row (executemany).

    What bulk_update() or one update() per row would do, without compiling a query per row or a CASE per field
    and row: that compiling cost more CPU than the HTTP call being recorded.
    """
    if not deliveries:
        return
    fields = [Delivery._meta.get_field(name) for name in names]
    quote = connection.ops.quote_name
    sql = "UPDATE {} SET {} WHERE {} = %s".format(
        quote(Delivery._meta.db_table),
        ", ".join(f"{quote(f.column)} = %s" for f in fields),
        quote(Delivery._meta.pk.column),
    )
    rows = [[f.get_db_prep_save(getattr(d, f.attname), connection) for f in fields] + [d.pk] for d in deliveries]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)

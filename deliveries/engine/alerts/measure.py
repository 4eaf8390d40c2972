"""What each rule kind measures, as a Reading: does the condition hold now, the figures, and a sentence.

All of it reads the per-minute rollups and indexed queries, never a count over a destination's deliveries:
success rate sums the window's rollup rows of all watched destinations in one query, "no delivery" asks the
rollups whether anything was delivered and the (destination, status, created_at) index whether one event came,
backlog reads the oldest waiting delivery of each waiting status from the same index, and "misconfigured" reads
the destination row itself.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Sum

from deliveries.engine.rollups import minute_of
from deliveries.models import AlertRule, Delivery, DeliveryRollup
from integrations import vendors

# "While events arrive": an event routed in the last N minutes counts once it has had this long to be delivered
# (at most half the window), so the first event after a quiet hour does not raise an alert before it is sent.
ARRIVAL_GRACE = timedelta(minutes=2)
ROUTED = (*Delivery.WAITING, *Delivery.FINISHED)  # an event routed here, to be sent (filtered ones are not)

Kind = AlertRule.Kind


@dataclass
class Reading:
    """A rule's condition now: whether it holds, what was measured, and the state in words."""

    holds: bool
    message: str
    measured: dict[str, Any] = field(default_factory=dict)


def read(rules: Iterable[AlertRule], now: datetime) -> dict[int, Reading]:
    """Measure every rule (each kind in as few queries as it allows); rule id -> Reading."""
    by_kind: dict[str, list[AlertRule]] = defaultdict(list)
    readings: dict[int, Reading] = {}
    for rule in rules:
        if not rule.destination.enabled:
            readings[rule.pk] = Reading(False, "Delivery to the destination was turned off: it is no longer watched.")
        elif not rule.enabled:
            readings[rule.pk] = Reading(False, "The rule was turned off.")
        else:
            by_kind[rule.kind].append(rule)
    for kind, kind_rules in by_kind.items():
        readings.update(MEASURES[kind](kind_rules, now))
    return readings


def by_window(rules: list[AlertRule]) -> dict[int, list[AlertRule]]:
    grouped: dict[int, list[AlertRule]] = defaultdict(list)
    for rule in rules:
        grouped[max(rule.window_minutes, 1)].append(rule)
    return grouped


def success_rate(rules: list[AlertRule], now: datetime) -> dict[int, Reading]:
    readings = {}
    for minutes, window_rules in by_window(rules).items():
        counts: dict[int, dict[str, int]] = defaultdict(dict)
        rows = (
            DeliveryRollup.objects.filter(
                destination_id__in={r.destination_id for r in window_rules},
                minute__gte=minute_of(now - timedelta(minutes=minutes)),
            )
            .values("destination_id", "status")
            .annotate(n=Sum("count"))
            .order_by()
        )
        for row in rows:
            counts[row["destination_id"]][row["status"]] = row["n"]
        for rule in window_rules:
            delivered = counts[rule.destination_id].get(Delivery.Status.DELIVERED, 0)
            failed = counts[rule.destination_id].get(Delivery.Status.FAILED, 0)
            readings[rule.pk] = rate_reading(rule, delivered, failed)
    return readings


def rate_reading(rule: AlertRule, delivered: int, failed: int) -> Reading:
    total = delivered + failed
    rate = 100.0 * delivered / total if total else None
    threshold = rule.threshold if rule.threshold is not None else 90.0
    measured = {"delivered": delivered, "failed": failed, "success_rate": rate, "window_minutes": rule.window_minutes}
    counts = f"{delivered} delivered, {failed} failed in the last {rule.window_minutes} minutes"
    if total < rule.min_outcomes:
        return Reading(False, f"Too few outcomes to judge ({counts}; at least {rule.min_outcomes} needed).", measured)
    if rate < threshold:
        return Reading(True, f"Success rate {rate:.1f}%, below {threshold:g}% ({counts}).", measured)
    return Reading(False, f"Success rate {rate:.1f}% ({counts}).", measured)


def no_delivery(rules: list[AlertRule], now: datetime) -> dict[int, Reading]:
    readings = {}
    for minutes, window_rules in by_window(rules).items():
        since = now - timedelta(minutes=minutes)
        delivered = set(
            DeliveryRollup.objects.filter(
                destination_id__in={r.destination_id for r in window_rules},
                minute__gte=minute_of(since),
                status=Delivery.Status.DELIVERED,
            )
            .values_list("destination_id", flat=True)
            .distinct()
        )
        arrived_before = now - min(ARRIVAL_GRACE, timedelta(minutes=minutes) / 2)
        for rule in window_rules:
            measured = {"window_minutes": minutes, "last_delivered_at": _iso(rule.destination.last_delivered_at)}
            if rule.destination_id in delivered:
                readings[rule.pk] = Reading(False, f"Events were delivered in the last {minutes} minutes.", measured)
                continue
            arrived = Delivery.objects.filter(
                destination_id=rule.destination_id,
                status__in=ROUTED,
                created_at__gte=since,
                created_at__lte=arrived_before,
                is_test=False,
            ).exists()
            last = rule.destination.last_delivered_at
            last_text = f"last delivery {last:%Y-%m-%d %H:%M} UTC" if last else "nothing delivered yet"
            if arrived:
                paused = " The destination is paused: resume it to send them." if rule.destination.paused else ""
                message = f"Nothing delivered for {minutes} minutes while events keep arriving ({last_text}).{paused}"
            else:
                message = f"No events arrived in the last {minutes} minutes, so none were due ({last_text})."
            readings[rule.pk] = Reading(arrived, message, measured)
    return readings


def misconfigured(rules: list[AlertRule], now: datetime) -> dict[int, Reading]:
    readings = {}
    for rule in rules:
        destination = rule.destination
        if destination.vendor not in vendors.VENDORS:  # its module was removed: nothing to say about settings
            readings[rule.pk] = Reading(False, "The destination's vendor is not installed.")
            continue
        if destination.misconfigured:
            hint = f" How to fix: {destination.last_error_hint}" if destination.last_error_hint else ""
            message = (
                f"The destination's settings are refused ({destination.last_error_code}): "
                f"{destination.last_error[:300]}{hint}"
            )
            measured = {"error_code": destination.last_error_code, "since": _iso(destination.last_error_at)}
            readings[rule.pk] = Reading(True, message, measured)
        else:
            readings[rule.pk] = Reading(False, "The destination's settings are accepted.")
    return readings


def backlog(rules: list[AlertRule], now: datetime) -> dict[int, Reading]:
    readings = {}
    oldest: dict[int, datetime | None] = {}
    for rule in rules:
        if rule.destination_id not in oldest:
            oldest[rule.destination_id] = oldest_waiting(rule.destination_id)
        since = oldest[rule.destination_id]
        limit = timedelta(minutes=rule.window_minutes)
        if since is None:
            readings[rule.pk] = Reading(False, "Nothing is waiting to be sent.", {"oldest_waiting_minutes": 0})
            continue
        waited = now - since
        minutes = max(0, int(waited.total_seconds() // 60))
        measured = {"oldest_waiting_minutes": minutes, "oldest_waiting_since": _iso(since)}
        paused = " The destination is paused: resume it to send them." if rule.destination.paused else ""
        if waited > limit:
            message = (
                f"The oldest waiting delivery has waited {minutes} minutes, more than {rule.window_minutes}.{paused}"
            )
            readings[rule.pk] = Reading(True, message, measured)
        else:
            readings[rule.pk] = Reading(False, f"The oldest waiting delivery has waited {minutes} minutes.", measured)
    return readings


def oldest_waiting(destination_id: int) -> datetime | None:
    """When the oldest delivery still waiting to be sent was queued: the first row of each waiting status on the
    (destination, status, created_at) index. A replayed delivery counts from its replay (retry_from)."""
    found = []
    for status in Delivery.WAITING:
        row = (
            Delivery.objects.filter(destination_id=destination_id, status=status, is_test=False)
            .order_by("created_at")
            .values_list("created_at", "retry_from")
            .first()
        )
        if row is not None:
            created_at, retry_from = row
            found.append(max(created_at, retry_from) if retry_from else created_at)
    return min(found, default=None)


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when else None


MEASURES: dict[str, Callable[[list[AlertRule], datetime], dict[int, Reading]]] = {
    Kind.SUCCESS_RATE: success_rate,
    Kind.NO_DELIVERY: no_delivery,
    Kind.MISCONFIGURED: misconfigured,
    Kind.BACKLOG: backlog,
}

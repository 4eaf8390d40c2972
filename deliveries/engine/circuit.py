"""The circuit breaker: a destination whose calls fail again and again (5xx, timeouts, refused connections: 50 in
a row, counted across workers, over at least 10 s so a busy stream's one-second blip does not count) is set
aside, "circuit open", with the reason and since when. No drain sends there while it is open; the sweeper probes
it with one delivery now and then (30 s, then twice as long each time up to 10 minutes, probe.py) and the first
delivery that gets through closes it: its whole backlog is due at once (the rate limit paces it), retries
included.

Nothing it holds is lost: its deliveries stay pending or retrying, untouched. Nor do they fail for the wait: the
retry deadline counts only time the circuit was closed (held_seconds()), so each event still gets its hours of
retries against a destination that answers. This is apart from the manual Destination.paused flag.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from deliveries.models import Circuit, Delivery
from integrations.models import Destination
from integrations.vendors import Result

# The thresholds and the probes' timing are settings (CDPHUB_CIRCUIT_*): 50 failures over 10 s, probes from 30 s
# to 10 min.
KEPT_OPENINGS = timedelta(days=31)  # the longest retry deadline (30 days) and a margin
# Not the destination's doing: a bug in cdphub, a worker that died. They neither open nor close a circuit.
NOT_THE_DESTINATION = frozenset({"internal_error", "worker_lost"})


def verdict(result: Result) -> bool | None:
    """True: a call that failed in a way retrying may mend (5xx, timeout, no connection); False: the destination
    answered; None: says nothing about the destination (throttled, filtered, our own fault)."""
    if result.error_code in NOT_THE_DESTINATION:
        return None
    if result.outcome == "retry":
        return True
    if result.outcome == "delivered" or (result.outcome == "failed" and result.status_code is not None):
        return False
    return None


def observe(destination: Destination, results: list[Result], now: datetime) -> None:
    """Count these results into the destination's run of failures: open the circuit at CIRCUIT_FAILURES (over
    CIRCUIT_FAILING_SECONDS at least), close it when one gets through. Runs inside record()'s write transaction;
    a healthy batch costs one read."""
    verdicts = [(v, r) for v, r in ((verdict(r), r) for r in results) if v is not None]
    if not verdicts:
        return
    trailing = 0  # failures after the last call that got an answer
    for failed, _ in reversed(verdicts):
        if not failed:
            break
        trailing += 1
    answered = trailing < len(verdicts)
    if not trailing and not _troubled(destination.id):
        return  # the usual case: all got through, nothing counted: no row lock taken
    circuit = _locked(destination.id, create=bool(trailing))
    if circuit is None:
        return
    fields: dict[str, Any] = {}
    if answered and circuit.is_open:
        fields |= _closing(circuit, now, "closed: a delivery got through")
    if answered:
        failures, since = trailing, now if trailing else None
    else:
        failures, since = circuit.failures + trailing, (circuit.failing_since or now) if circuit.failures else now
    if (failures, since) != (circuit.failures, circuit.failing_since):
        fields |= {"failures": failures, "failing_since": since}
    long_enough = since is not None and (now - since).total_seconds() >= settings.CIRCUIT_FAILING_SECONDS
    if not circuit.is_open and not answered and failures >= settings.CIRCUIT_FAILURES and long_enough:
        last = verdicts[-1][1]
        what = f"{last.error_code}: {last.error_message}" if last.error_code else last.error_message
        first = settings.CIRCUIT_PROBE_SECONDS
        fields |= {
            "opened_at": now,
            "reason": f"{failures} calls in a row failed over {_duration(now - since)}; the last: {what}"[:1000],
            "changed_at": now,
            "probe_interval": first,
            "next_probe_at": now + timedelta(seconds=first),
            "openings": [*_kept(circuit.openings, now), [now.isoformat(), None]],
        }
    if fields:
        Circuit.objects.filter(id=circuit.id).update(**fields)
    if answered and circuit.is_open:
        _backlog_due(destination.id, now)


def _troubled(destination_id: int) -> bool:
    failing = Q(failures__gt=0) | Q(opened_at__isnull=False)
    return Circuit.objects.filter(failing, destination_id=destination_id).exists()


def _locked(destination_id: int, create: bool) -> Circuit | None:
    query = Circuit.objects.filter(destination_id=destination_id)
    if connection.features.has_select_for_update:
        query = query.select_for_update()
    circuit = query.first()
    if circuit is None and create:
        try:
            with transaction.atomic():
                circuit = Circuit.objects.create(destination_id=destination_id)
        except IntegrityError:
            circuit = query.get()
    return circuit


def _closing(circuit: Circuit, now: datetime, reason: str) -> dict[str, Any]:
    openings = [list(o) for o in circuit.openings]
    if openings and openings[-1][1] is None:
        openings[-1][1] = now.isoformat()
    return {
        "opened_at": None,
        "failures": 0,
        "failing_since": None,
        "reason": reason,
        "changed_at": now,
        "next_probe_at": None,
        "probe_interval": 0,
        "openings": openings,
    }


def _duration(span: timedelta) -> str:
    seconds = span.total_seconds()
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _backlog_due(destination_id: int, now: datetime) -> None:
    """The destination answers again: what waits for a retry goes now (the rate limit paces it), not at the
    backoff it got while the destination was down."""
    Delivery.objects.filter(
        destination_id=destination_id, status=Delivery.Status.RETRYING, next_attempt_at__gt=now
    ).update(next_attempt_at=now)


def _kept(openings: list[list[str | None]], now: datetime) -> list[list[str | None]]:
    """The openings that may still matter to a retry deadline."""
    oldest = (now - KEPT_OPENINGS).isoformat()
    return [list(o) for o in openings if o[1] is None or o[1] >= oldest]


def close(destination_id: int, reason: str) -> bool:
    """Close the destination's circuit (a person's "resume now", a probe with nothing to send); True if it was
    open. The caller kicks the backlog."""
    with transaction.atomic():
        circuit = _locked(destination_id, create=False)
        if circuit is None or not circuit.is_open:
            return False
        now = timezone.now()
        Circuit.objects.filter(id=circuit.id).update(**_closing(circuit, now, reason))
    _backlog_due(destination_id, now)  # after the circuit's lock: drains recording now hold delivery rows
    return True


def is_open(destination_id: int) -> bool:
    return Circuit.objects.filter(destination_id=destination_id, opened_at__isnull=False).exists()


def tripped(destination_id: int, results: list[Result]) -> bool:
    """Whether the circuit is open now, asked only after a batch with failures (a healthy drain never asks)."""
    return any(verdict(r) for r in results) and is_open(destination_id)


def held_seconds(destination_id: int, now: datetime) -> Callable[[datetime], float]:
    """A function giving, for a delivery's retry clock started at `since`, the seconds the destination's circuit
    was open since then: the retry deadline moves on by that much. Reads the circuit once, when first asked."""
    spans: list[tuple[datetime, datetime]] | None = None

    def held(since: datetime) -> float:
        nonlocal spans
        if spans is None:
            openings = Circuit.objects.filter(destination_id=destination_id).values_list("openings", flat=True)
            spans = [
                (datetime.fromisoformat(o), datetime.fromisoformat(c) if c else now)
                for o, c in next(iter(openings), None) or []
            ]
        return sum(max(0.0, (end - max(start, since)).total_seconds()) for start, end in spans)

    return held

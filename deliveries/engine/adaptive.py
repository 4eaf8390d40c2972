"""Adaptive rate limits: a destination starts at its limit (the vendor's ceiling, 1000/s for a webhook), halves
its rate when the vendor struggles (a 429, a 5xx, a timeout) and gives a twentieth of the limit back after every
quiet ten seconds, never below a floor nor above the limit. Additive increase, multiplicative decrease, as
RudderStack's adaptive throttler does (router/throttler/.../adaptive/algorithm); a fixed limit never moves.

The rate, why it is there and since when live on the destination's RateBucket row, so every worker sends at it;
the token bucket (rate.py) refills at that rate. Recovery is worked out when the bucket is next read, so nothing
has to run while a destination is quiet.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from http import HTTPStatus
from typing import Any

from django.db import IntegrityError, connection, transaction

from deliveries.models import RateBucket
from integrations.models import Destination
from integrations.vendors import Result

CUT = 0.5  # the rate after a slow-down, as a share of the rate before
FLOOR_SHARE = 0.02  # never below a fiftieth of the limit (nor below one request per rate period)
STEP_SHARE = 0.05  # each quiet period gives back a twentieth of the limit ...
QUIET_SECONDS = 10.0  # ... after this long without a slow-down
COOLDOWN_SECONDS = 2.0  # calls sent before a cut still answer after it: one cut per this long (or rate period)


def ceiling_of(destination: Destination) -> tuple[float, float]:
    """The destination's limit as (requests per second, rate period in seconds): where adaptive starts and stops."""
    rate, period, _ = destination.limits()
    return rate / period, period


def floor_of(ceiling: float, period: float) -> float:
    return min(ceiling, max(ceiling * FLOOR_SHARE, 1 / period))


def slowdown(result: Result) -> str:
    """What in a result says the vendor is struggling ("HTTP 429 Too Many Requests", "a timeout"), or ""."""
    status = result.status_code
    if result.outcome == "throttled":
        if status is None or result.defer:
            return ""  # our own rate gate said wait, or a daily quota: no sign of load
        return _status_text(status) if status != 200 else result.error_message[:120]
    if result.outcome == "retry":
        if result.error_code == "timeout":
            return "a timeout"
        if status is not None and (status >= 500 or status == 408):
            return _status_text(status)
    return ""


def _status_text(status: int) -> str:
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def observe(destination: Destination, results: list[Result], now: datetime) -> None:
    """Cut the destination's rate if any of these results says the vendor is struggling (adaptive mode only).

    Runs inside record()'s write transaction; a healthy batch costs nothing.
    """
    if not destination.adaptive:
        return
    signal = next((s for s in map(slowdown, results) if s), "")
    if signal:
        cut(destination, signal, now)


def cut(destination: Destination, signal: str, now: datetime) -> None:
    """Halve the rate (not below the floor), at most once per cooldown; the bucket's tokens follow the new rate."""
    with transaction.atomic():
        bucket = _locked_bucket(destination, now)
        ceiling, period = ceiling_of(destination)
        cooldown = timedelta(seconds=max(COOLDOWN_SECONDS, min(period, 20.0)))
        if bucket.cut_at is not None and now - bucket.cut_at < cooldown:
            RateBucket.objects.filter(id=bucket.id).update(slowed_at=now)  # the quiet period starts again
            return
        old = min(bucket.rate or ceiling, ceiling)
        new = max(floor_of(ceiling, period), old * CUT)
        reason = (
            f"cut to {rate_text(new, period)} after {signal}"
            if new < old
            else f"at the floor, {rate_text(new, period)}, after {signal}"
        )
        # A hold (negative tokens: the vendor's Retry-After) keeps its length at the new refill rate.
        tokens = bucket.tokens * new / old if bucket.tokens < 0 else min(bucket.tokens, max(1.0, new * min(period, 1)))
        RateBucket.objects.filter(id=bucket.id).update(
            rate=new, rate_reason=reason[:300], rate_changed_at=now, cut_at=now, slowed_at=now, tokens=tokens
        )


def _locked_bucket(destination: Destination, now: datetime) -> RateBucket:
    query = RateBucket.objects.filter(destination=destination)
    if connection.features.has_select_for_update:
        query = query.select_for_update()
    bucket = query.first()
    if bucket is None:
        try:
            with transaction.atomic():
                capacity = ceiling_of(destination)[0]
                bucket = RateBucket.objects.create(destination=destination, tokens=capacity, refilled_at=now)
        except IntegrityError:
            bucket = query.get()
    return bucket


def level(destination: Destination, bucket: RateBucket, now: datetime) -> tuple[float, dict[str, Any]]:
    """The share of its limit the destination sends at now, with the quiet periods since the last slow-down given
    back, and the bucket's fields to write for that (empty when nothing changed)."""
    if bucket.rate is None:
        return 1.0, {}
    ceiling, period = ceiling_of(destination)
    if not destination.adaptive:
        return 1.0, {"rate": None, "rate_reason": "fixed limit", "rate_changed_at": now}
    if bucket.rate >= ceiling:  # the limit was lowered below the rate
        return 1.0, {"rate": None, "rate_reason": "at the limit", "rate_changed_at": now}
    quiet_since = max(t for t in (bucket.slowed_at, bucket.rate_changed_at, bucket.cut_at) if t is not None)
    steps = int((now - quiet_since).total_seconds() // QUIET_SECONDS)
    if steps <= 0:
        return bucket.rate / ceiling, {}
    step = STEP_SHARE * ceiling
    rate = bucket.rate + steps * step
    if rate >= ceiling:
        reason = f"back at the limit after {QUIET_SECONDS * steps:g} s without a 429, 5xx or timeout"
        return 1.0, {"rate": None, "rate_reason": reason, "rate_changed_at": now}
    reason = f"recovering: +{rate_text(step, period)} every {QUIET_SECONDS:g} s without a 429, 5xx or timeout"
    changed = quiet_since + timedelta(seconds=steps * QUIET_SECONDS)  # keep the part of a period already waited
    return rate / ceiling, {"rate": rate, "rate_reason": reason, "rate_changed_at": changed}


def rate_text(per_second: float, period: float) -> str:
    """A rate the way the vendor counts it: "250/s", "22 per 20 s"."""
    if period <= 1:
        return f"{_number(per_second)}/s"
    return f"{_number(per_second * period)} per {period:g} s"


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}".removesuffix(".0")

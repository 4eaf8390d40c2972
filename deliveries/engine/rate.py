"""The rate limit: a token bucket row per destination, shared by all workers; a vendor's "slow down" empties it.
In adaptive mode (adaptive.py) the bucket refills at the rate the destination runs at now, a share of its limit."""

from __future__ import annotations

import time
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.db.models.functions import Least
from django.utils import timezone

from deliveries.engine import adaptive
from deliveries.models import RateBucket
from integrations.models import Destination
from integrations.vendors import DeliveryError


def bucket_shape(destination: Destination) -> tuple[float, float]:
    """The token bucket of a limit of `rate` calls per `period` seconds: (capacity, tokens per second).

    Up to a second, the bucket holds the whole rate (a burst within a second harms no one). For longer
    periods, which vendors count as a sliding window (Marketo: 100 calls per 20 s), it holds one second's worth
    and refills with the rest, so that no `period` ever sees more than `rate` calls: a full bucket of the whole
    rate would let twice the rate through in one window (the burst, then the refill).
    """
    rate, period, _ = destination.limits()
    if period <= 1:
        return float(rate), rate / period
    capacity = min(float(rate), max(1.0, rate / period))
    refill = rate - capacity if rate > capacity else rate  # a limit of 1 per period: at most 2 in a window
    return capacity, refill / period


def take_tokens(destination: Destination, want: int) -> tuple[int, float]:
    """Take up to `want` request tokens; return how many were granted and, if short, seconds to wait."""
    capacity, per_second = bucket_shape(destination)
    with transaction.atomic():
        now = timezone.now()
        query = RateBucket.objects.filter(destination=destination)
        if connection.features.has_select_for_update:
            query = query.select_for_update()
        bucket = query.first()
        if bucket is None:
            try:
                with transaction.atomic():
                    bucket = RateBucket.objects.create(destination=destination, tokens=capacity, refilled_at=now)
            except IntegrityError:
                bucket = query.get()
        share, changes = adaptive.level(destination, bucket, now)
        if share < 1:
            capacity, per_second = max(1.0, capacity * share), per_second * share
        tokens = min(capacity, bucket.tokens + (now - bucket.refilled_at).total_seconds() * per_second)
        granted = max(0, min(want, int(tokens)))  # negative while a vendor has the destination on hold
        RateBucket.objects.filter(id=bucket.id).update(tokens=tokens - granted, refilled_at=now, **changes)
    wait = 0.0 if granted == want else (1 - (tokens - granted)) / per_second
    return granted, wait


def hold(destination: Destination, seconds: float) -> None:
    """Empty the destination's bucket for `seconds`: the vendor said to slow down (429, 606, a quota), so no
    worker sends there until then."""
    now = timezone.now()
    rate = RateBucket.objects.filter(destination=destination).values_list("rate", flat=True).first()
    per_second = bucket_shape(destination)[1]
    if rate is not None and destination.adaptive:  # the bucket refills at the adaptive rate: hold as long in it
        per_second *= min(1.0, rate / adaptive.ceiling_of(destination)[0])
    tokens = -seconds * per_second
    if not RateBucket.objects.filter(destination=destination).update(tokens=tokens, refilled_at=now):
        try:
            with transaction.atomic():
                RateBucket.objects.create(destination=destination, tokens=tokens, refilled_at=now)
        except IntegrityError:
            RateBucket.objects.filter(destination=destination).update(tokens=tokens, refilled_at=now)


def rate_gate(destination: Destination, stop_at: float) -> Any:
    """What a vendor calls before each extra HTTP call (a token, a lookup): wait for a token of the rate limit,
    or, when the wait would outlast the drain, end the batch as throttled (it waits, no attempt is spent)."""

    def wait_for_token() -> None:
        while True:
            granted, wait = take_tokens(destination, 1)
            if granted:
                return
            if time.monotonic() + wait > stop_at:
                raise DeliveryError(
                    f"The destination's rate limit ({describe_limit(destination)}) allows no more calls now.",
                    code="rate_limited",
                    throttled=True,
                    retry_after=wait,
                )
            time.sleep(wait)

    return wait_for_token


def describe_limit(destination: Destination) -> str:
    rate, period, _ = destination.limits()
    return f"{rate} calls per {period:g} s"


def return_tokens(destination: Destination, count: int) -> None:
    """Give back tokens taken but not spent (the time box ended first), never above the bucket's size."""
    capacity = bucket_shape(destination)[0]
    RateBucket.objects.filter(destination=destination).update(tokens=Least(F("tokens") + count, capacity))

"""The engine's timings (from settings; tests shorten them) and the backoff between tries."""

from __future__ import annotations

import random
from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class Timing:
    """Engine timings from settings (tests shorten them)."""

    retry_base: float
    retry_cap: float
    lease_margin: float
    drain_seconds: float
    queue_lease: float
    linger: float = 0.0

    @classmethod
    def current(cls) -> Timing:
        return cls(
            settings.DELIVERY_RETRY_BASE,
            settings.DELIVERY_RETRY_CAP,
            settings.DELIVERY_LEASE_MARGIN,
            settings.DELIVERY_DRAIN_SECONDS,
            settings.DELIVERY_QUEUE_LEASE,
            settings.DELIVERY_LINGER_SECONDS,
        )


def backoff(attempts: int, retry_after: float | None, timing: Timing) -> float:
    """Exponential backoff with equal jitter; a vendor's Retry-After wins (capped at an hour)."""
    if retry_after is not None:
        return min(max(retry_after, 0.1), 3600.0) * random.uniform(1.0, 1.1)
    delay = min(timing.retry_cap, timing.retry_base * 2 ** max(attempts - 1, 0))
    return delay / 2 + random.uniform(0, delay / 2)

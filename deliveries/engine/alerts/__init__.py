"""Alerts per destination: rules (success rate, no delivery while events arrive, misconfigured, backlog age)
measured by the sweeper at most every CDPHUB_ALERT_EVALUATE_SECONDS, one message when an alert opens and one when
it resolves, by email and/or a signed webhook.

`defaults` (the rules a destination starts with), `measure` (each kind's reading, from the rollups and indexes),
`evaluate` (opening and resolving, safe with several workers), `channels` (email and webhook) and `notify`
(sending queued notifications, retrying failed ones). `run` is what the sweeper calls.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.utils import timezone

from deliveries.engine.alerts.evaluate import evaluate
from deliveries.engine.alerts.notify import send_due

log = logging.getLogger("cdphub.alerts")

_last_run = float("-inf")  # this process's last evaluation (time.monotonic)


def run() -> dict[str, int]:
    """Evaluate the rules and send due notifications, at most every ALERT_EVALUATE_SECONDS in this process.

    Never raises: the sweeper's other work (retries, expired leases) must go on whatever happens here.
    """
    global _last_run
    if time.monotonic() - _last_run < settings.ALERT_EVALUATE_SECONDS:
        return {}
    _last_run = time.monotonic()
    counts: dict[str, int] = {}
    for step in (evaluate, send_due):
        try:
            counts |= {f"alerts_{name}": n for name, n in step(timezone.now()).items()}
        except Exception:
            log.exception("alerts: %s failed; trying again on a later sweep", step.__name__)
    return counts

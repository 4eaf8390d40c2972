"""The test send task (Event Tester): one test delivery, sent once through the destination's vendor and recorded
like any other. It has no next_attempt_at, so no drain ever claims it; record() never retries it and keeps it out
of the rollups."""

from __future__ import annotations

import time

from deliveries.engine.claim import claim_test, lease_for
from deliveries.engine.record import record
from deliveries.engine.send import send_group, vendor_or_error
from deliveries.engine.timing import Timing
from deliveries.models import Delivery
from integrations.models import Destination


def send_once(delivery_id: int) -> str:
    """The task: claim the test delivery, send it once through the destination's vendor and record it."""
    timing = Timing.current()
    found = Delivery.objects.filter(pk=delivery_id, is_test=True).only("destination_id").first()
    if found is None:
        return "gone"
    destination = Destination.objects.get(pk=found.destination_id)
    # Extra calls (a token, a lookup) still wait for the destination's rate limit, for a drain's time at most.
    vendor, build_error = vendor_or_error(destination, time.monotonic() + timing.drain_seconds)
    delivery = claim_test(delivery_id, lease_for(destination, vendor, timing))
    if delivery is None:
        return "taken"
    sent = send_group(vendor, [delivery], build_error)
    record(destination, sent, timing)
    return sent[0].result.outcome

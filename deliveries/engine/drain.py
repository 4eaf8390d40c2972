"""The drain task: send one destination's due deliveries for a few seconds in one of its concurrency slots, then
hand the slot back. A drain that runs out of work waits a moment for more (a steady stream then needs no task per
event). A drain stops as soon as the destination's circuit opens (circuit.py): only the sweeper's probe sends
there then."""

from __future__ import annotations

import time
from datetime import timedelta

from django_q.conf import Conf

from deliveries.engine import circuit, cluster
from deliveries.engine.claim import claim_within_rate, has_due_work, lease_for, release, renew
from deliveries.engine.rate import hold, return_tokens
from deliveries.engine.record import record
from deliveries.engine.send import Sent, send_group, vendor_or_error
from deliveries.engine.slots import busy_slots, kick, release_slot, take_slot
from deliveries.engine.timing import Timing
from deliveries.models import Delivery
from deliveries.outage import rides_out_outages
from integrations.models import Destination
from integrations.vendors import DeliveryError, Vendor

CLAIM_LIMIT = 50
RECORD_EVERY = 25  # sends recorded in one write transaction ...
RECORD_SECONDS = 0.2  # ... or after this long, whichever comes first
LINGER_POLL = 0.02  # how often a drain with nothing to do looks for new work (see wait_for_work)


@rides_out_outages
def drain(destination_id: int, slot_id: int, token: str) -> str:
    """The worker task: send this destination's due deliveries for a few seconds, then hand the slot back."""
    timing = Timing.current()
    stop_at = time.monotonic() + timing.drain_seconds
    # Credentials are read (and decrypted) only when the vendor is built, not on every drain.
    destination = Destination.objects.filter(id=destination_id).defer("credentials", "insert_secrets").first()
    if destination is None:
        return "gone"
    slot_lease = timedelta(seconds=timing.drain_seconds + destination.timeout * 2 + timing.lease_margin)
    if not take_slot(slot_id, token, slot_lease):
        return "slot lost"
    try:
        if not destination.enabled or destination.paused:
            return "paused"
        if circuit.is_open(destination_id):
            return "circuit open"
        sent, out_of_time = _drain(destination, timing, stop_at)
    finally:
        release_slot(
            slot_id, token
        )  # whatever happened: a slot held by a crashed drain would idle until its lease ends
    # In sync mode (tests) the drain runs inside kick(); chaining another would recurse, the sweeper follows up.
    if (out_of_time or has_due_work(destination_id)) and not Conf.SYNC:
        kick(destination_id)
    return f"sent {sent}"


def _drain(destination: Destination, timing: Timing, stop_at: float) -> tuple[int, bool]:
    """Claim and send until nothing is due, the rate limit says wait, or the time box ends: (sent, out of time)."""
    vendor, build_error = vendor_or_error(destination, stop_at)
    batch_size = vendor.max_batch if vendor else 1
    lease = lease_for(destination, vendor, timing)
    sent = 0
    while time.monotonic() < stop_at:
        if sent and circuit.is_open(destination.id):
            return sent, False  # opened meanwhile (here or in another worker): the rest waits for the probe
        claimed, wait = claim_within_rate(destination, max(CLAIM_LIMIT, batch_size), lease, batch_size)
        if claimed:
            sent += _send_claimed(destination, vendor, build_error, claimed, batch_size, lease, timing, stop_at)
        if wait:
            if wait <= 1.0 and time.monotonic() + wait < stop_at:
                time.sleep(wait)  # the next token is close: the deliveries held back are due again then
                continue
            return sent, False  # the rest waits for the rate limit; the sweeper queues it when it is due
        if not claimed:
            if wait_for_work(destination.id, min(stop_at, time.monotonic() + timing.linger)):
                continue
            return sent, False
    return sent, True


def wait_for_work(destination_id: int, until: float) -> bool:
    """Stay a moment for more work while the cluster has a process to spare; True as soon as some is due.

    A steady stream of events then finds a drain already running and polling: no drain task per event to queue,
    pick up from the broker, start and acknowledge, which was most of an event's latency and database writes.
    """
    if Conf.SYNC:
        return False  # the drain runs inline (tests, a web request): never wait there
    while time.monotonic() + LINGER_POLL < until:
        if busy_slots() >= cluster.processes():
            return False  # every process may be wanted by a drain: hand this one back
        time.sleep(LINGER_POLL)
        if has_due_work(destination_id):
            return True
    return False


def _send_claimed(
    destination: Destination,
    vendor: Vendor | None,
    build_error: DeliveryError | None,
    claimed: list[Delivery],
    batch_size: int,
    lease: timedelta,
    timing: Timing,
    stop_at: float,
) -> int:
    """Send claimed deliveries (their rate-limit tokens taken) group by group until the time box ends; return
    how many were sent. What is left goes back untouched, and its tokens to the bucket.

    Results are recorded a few at a time (RECORD_EVERY sends or RECORD_SECONDS): one write transaction per
    send made the database lock, not the network, the limit. A worker killed in between loses at most that
    many records; their leases expire and the sweeper counts the lost attempt, so they are sent again.
    """
    groups = [claimed[i : i + batch_size] for i in range(0, len(claimed), batch_size)]
    lease_until = time.monotonic() + lease.total_seconds()
    unrecorded: list[Sent] = []
    recorded_at = time.monotonic()
    sent = done = 0  # deliveries, groups sent
    for group in groups:
        if done and time.monotonic() >= stop_at:
            break  # the time box is over (the slot's lease counts on it): the next drain sends the rest
        if lease_until - time.monotonic() < destination.timeout + 1:
            renew([s.delivery for s in unrecorded] + [d for g in groups[done:] for d in g], lease)
            lease_until = time.monotonic() + lease.total_seconds()
        just_sent = send_group(vendor, group, build_error)
        unrecorded += just_sent
        sent += len(group)
        done += 1
        throttled = [s.result for s in just_sent if s.result.outcome == "throttled"]
        if throttled:
            # The vendor said slow down: the whole destination waits, not only this group.
            wait = max((r.retry_after for r in throttled if r.retry_after is not None), default=1.0)
            hold(destination, wait)
            record(destination, unrecorded, timing)
            release([d for g in groups[done:] for d in g], wait)
            return sent
        if len(unrecorded) >= RECORD_EVERY or time.monotonic() - recorded_at >= RECORD_SECONDS:
            record(destination, unrecorded, timing)
            opened = circuit.tripped(destination.id, [s.result for s in unrecorded])
            unrecorded, recorded_at = [], time.monotonic()
            if opened:
                break  # the circuit opened: what is left goes back untouched for the probe to try
    record(destination, unrecorded, timing)
    if done < len(groups):
        return_tokens(destination, len(groups) - done)
        release([d for g in groups[done:] for d in g], 0)
    return sent

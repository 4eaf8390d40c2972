"""Send: build (and keep) a destination's vendor, hand it a group of deliveries, turn what happens into Results.

Nothing here writes a row: record() persists what comes back.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from deliveries.engine.rate import rate_gate
from deliveries.models import Delivery
from integrations.functions.insert import InsertStep
from integrations.models import Destination
from integrations.vendors import DeliveryError, Result, Vendor

log = logging.getLogger("cdphub.engine")

INTERNAL_ERROR_HINT = "This is a fault in cdphub, not in the destination: the worker's log has the details."


@dataclass
class Sent:
    """One delivery sent (or tried) and not yet recorded."""

    delivery: Delivery
    result: Result
    started: datetime
    finished: datetime
    duration_ms: int


_vendors: dict[int, tuple[datetime, Vendor]] = {}


def vendor_for(destination: Destination) -> Vendor:
    """The destination's vendor, kept per process while the destination is unchanged: its HTTP session keeps
    connections (and TLS sessions) open from one drain to the next, which is most of a single event's latency."""
    cached = _vendors.get(destination.id)
    if cached and cached[0] == destination.updated_at:
        return cached[1]
    vendor = destination.build_vendor()
    vendor.insert_step = InsertStep(destination) if destination.insert_function_id else None
    if len(_vendors) >= 256:
        _vendors.clear()
    _vendors[destination.id] = (destination.updated_at, vendor)
    return vendor


def internal_error(where: str, exc: BaseException) -> DeliveryError:
    """A bug in cdphub or a vendor: retried like a 5xx, with the exception's type only (its text may hold a
    secret: a URL with a token, a header value); the traceback goes to the worker log."""
    return DeliveryError(
        f"Internal error in {where} ({type(exc).__name__}); the delivery is retried.",
        code="internal_error",
        retryable=True,
        hint=INTERNAL_ERROR_HINT,
    )


def send(vendor: Vendor | None, deliveries: list[Delivery], build_error: DeliveryError | None) -> list[Result]:
    if vendor is None:
        assert build_error is not None
        return [build_error.result([]) for _ in deliveries]
    step = getattr(vendor, "insert_step", None)
    if step is None:
        return deliver(vendor, deliveries, [d.event.payload for d in deliveries])
    inserted = [step.apply(d.event.payload) for d in deliveries]
    passed = [(d, i) for d, i in zip(deliveries, inserted, strict=True) if i.result is None]
    sent = iter(deliver(vendor, [d for d, _ in passed], [i.event for _, i in passed]) if passed else [])
    results = []
    for item in inserted:
        if item.result is not None:
            results.append(item.result)
            continue
        result = next(sent)
        result.logs = item.logs + result.logs
        result.exchanges = item.exchanges + result.exchanges
        results.append(result)
    return results


def deliver(vendor: Vendor, deliveries: list[Delivery], payloads: list[dict]) -> list[Result]:
    """The vendor's deliver() on these payloads, a crash or a DeliveryError turned into a Result for each."""
    try:
        results = vendor.deliver(payloads)
        if len(results) != len(deliveries):
            raise RuntimeError(f"{type(vendor).__name__}.deliver returned {len(results)} results for {len(deliveries)}")
    except DeliveryError as exc:
        results = [exc.result(vendor.http.take_exchanges()) for _ in deliveries]
    except Exception as exc:  # a bug in a vendor must not lose the delivery, nor crash the drain every time
        log.exception("the %s vendor crashed on deliveries %s", vendor.key, [d.id for d in deliveries])
        error = internal_error(f"the {vendor.label} vendor", exc)
        exchanges = vendor.http.take_exchanges()
        results = [error.result(exchanges) for _ in deliveries]
    return results


def send_group(vendor: Vendor | None, group: list[Delivery], build_error: DeliveryError | None) -> list[Sent]:
    started = timezone.now()
    clock = time.monotonic()
    results = send(vendor, group, build_error)
    duration_ms = int((time.monotonic() - clock) * 1000)
    finished = timezone.now()
    return [Sent(d, r, started, finished, duration_ms) for d, r in zip(group, results, strict=True)]


def vendor_or_error(destination: Destination, stop_at: float) -> tuple[Vendor | None, DeliveryError | None]:
    """The destination's vendor, its extra calls (a token, a lookup) waiting for the rate limit until `stop_at`
    (time.monotonic()), or why it could not be built: each delivery then gets an attempt with that error."""
    try:
        vendor, build_error = vendor_for(destination), None
    except DeliveryError as exc:
        vendor, build_error = None, exc
    except Exception as exc:  # a bug building the vendor: each delivery gets an attempt, the retry rules apply
        log.exception("could not build the vendor of destination %s", destination.id)
        vendor, build_error = None, internal_error(f"the {destination.vendor} vendor's settings", exc)
    if vendor is not None:
        vendor.http.gate = rate_gate(destination, stop_at)
    return vendor, build_error

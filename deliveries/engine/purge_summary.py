"""Old attempts keep a summary of their HTTP exchanges: method, URL, status, duration and the sizes of the bodies;
headers and bodies are dropped and each exchange is marked `summarised` (with a note the admin shows). The
summaries are computed outside the transaction, which only writes them: attempts are never changed once recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import transaction

from deliveries.models import Attempt


def size_of(body: Any) -> int:
    if body in (None, ""):
        return 0
    return len(body.encode() if isinstance(body, str) else repr(body).encode())


def readable(size: int) -> str:
    return f"{size} B" if size < 1024 else f"{size / 1024:.1f} KB"


def summary(exchange: dict[str, Any], days: int) -> dict[str, Any]:
    """An exchange without its headers and bodies: what it was, how it ended, how big it was."""
    if exchange.get("summarised"):
        return exchange
    request = exchange.get("request") or {}
    response = exchange.get("response")
    sizes = {"request": size_of(request.get("body"))}
    kept: dict[str, Any] = {
        "request": {"method": request.get("method", ""), "url": request.get("url", ""), "size": sizes["request"]},
        "summarised": True,
    }
    if response:
        sizes["response"] = size_of(response.get("body"))
        kept["response"] = {"status": response.get("status"), "size": sizes["response"]}
    for key in ("duration_ms", "error"):
        if key in exchange:
            kept[key] = exchange[key]
    bodies = ", ".join(f"{part} body {readable(n)}" for part, n in sizes.items())
    kept["note"] = f"Headers and bodies were removed after {days} days (retention policy); {bodies}."
    return kept


def summarise_chunk(
    low: int, high: int, cutoff: datetime, days: int, save_cursor: Callable[[int], None]
) -> tuple[int, float]:
    """Summarise the exchanges of the attempts with ids low..high older than the cut-off; returns how many, and how
    long the write transaction held the lock."""
    rows = Attempt.objects.filter(id__gte=low, id__lte=high, started_at__lt=cutoff).values_list("id", "exchanges")
    changed = []
    for attempt_id, exchanges in rows.iterator(chunk_size=2000):
        if exchanges and not all(isinstance(x, dict) and x.get("summarised") for x in exchanges):
            short = [summary(x, days) if isinstance(x, dict) else x for x in exchanges]
            changed.append(Attempt(id=attempt_id, exchanges=short))
    with transaction.atomic():
        began = time.perf_counter()
        Attempt.objects.bulk_update(changed, ["exchanges"], batch_size=500)
        save_cursor(high)
    return len(changed), time.perf_counter() - began

"""How many delivery processes the hub has, across every `manage.py worker` on every machine: each worker beats in
the database at every sweep (a WorkerHeartbeat row), and a destination's concurrency and a drain's lingering are
measured against all of them.

Measured against one worker's CDPHUB_WORKERS instead, two workers of two processes each gave every destination one
drain at a time for the whole hub (the fault tests found it): a second worker could not make one destination faster.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import timedelta

from django.db.models import Sum
from django.utils import timezone
from django_q.conf import Conf

from deliveries.models import WorkerHeartbeat

STALE_AFTER = timedelta(seconds=30)  # a worker killed with -9 stops counting after this
CACHE_SECONDS = 5.0  # every accepted request kicks: read the sum at most this often per process

_cached: tuple[float, int] = (0.0, 0)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def beat(name: str, processes: int) -> None:
    """This worker is alive with `processes` delivery processes (called at every sweep)."""
    WorkerHeartbeat.objects.update_or_create(name=name, defaults={"processes": processes, "seen_at": timezone.now()})


def gone(name: str) -> None:
    """This worker stopped cleanly: its processes no longer count."""
    WorkerHeartbeat.objects.filter(name=name).delete()


def processes() -> int:
    """The delivery processes of every worker seen lately; this process's own setting when none has beaten yet
    (a web process before the first sweep, tests running drains inline)."""
    global _cached
    expires, value = _cached
    if time.monotonic() < expires:
        return value
    seen = WorkerHeartbeat.objects.filter(seen_at__gte=timezone.now() - STALE_AFTER).aggregate(n=Sum("processes"))
    value = seen["n"] or Conf.WORKERS
    _cached = (time.monotonic() + CACHE_SECONDS, value)
    return value


def forget() -> None:
    """Read the heartbeats again at the next call (tests)."""
    global _cached
    _cached = (0.0, 0)

"""django-q2's Redis and database brokers, riding out a restart of Redis or of the database.

django-q2's pusher (the process of a cluster that takes tasks from the broker) dies on the first error of
`dequeue()`: it logs a traceback, sleeps 10 s and exits, and the cluster's sentinel starts a new one. So every
restart of Redis (or of the database, for the database broker) stopped each worker's deliveries for 10 s and
printed a traceback per worker. Here `dequeue()` says so in one line now and then, waits half a second and tries
again on a new connection (redis-py and Django reconnect by themselves), so delivery resumes as soon as the
broker is back. What a restart of Redis loses (tasks queued in it) costs nothing: the sweeper queues the due
deliveries again once their concurrency slots' queue lease ends (deliveries/engine/slots.py).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.db import close_old_connections
from django_q.brokers.orm import ORM
from django_q.brokers.redis_broker import Redis

from deliveries.outage import Throttled, unreachable

log = logging.getLogger("cdphub.worker")
_unreachable = Throttled(log)
RETRY_SECONDS = 0.5


class _RidesOutRestarts:
    def dequeue(self) -> Any:
        try:
            return super().dequeue()
        except Exception as exc:
            if not unreachable(exc):
                raise
            _unreachable.warn("the task broker is unreachable; taking tasks again when it is back", exc)
            close_old_connections()  # the database broker's connection failed: the next try opens a new one
            time.sleep(RETRY_SECONDS)
            return None


class RedisBroker(_RidesOutRestarts, Redis):
    """The Redis broker (CDPHUB_BROKER=redis://…)."""


class DatabaseBroker(_RidesOutRestarts, ORM):
    """The database broker (the embedded default)."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections, connections
from django_q.cluster import Cluster

from deliveries.engine import sweep

log = logging.getLogger("cdphub.worker")


class Command(BaseCommand):
    help = "Run delivery: the django-q2 cluster that sends, and the sweeper that re-queues due and orphaned work."

    def handle(self, *args: Any, **options: Any) -> None:
        stopping = threading.Event()
        connections.close_all()  # the cluster forks: children must open their own connections
        cluster = Cluster()
        cluster.start()

        def stop(signum: int, frame: Any) -> None:
            stopping.set()

        # Replace the handlers Cluster installed: stop the sweeper first, then let the cluster finish its tasks.
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        broker = "redis" if "redis" in settings.Q_CLUSTER else "database"
        self.stdout.write(
            f"cdphub worker: {settings.Q_CLUSTER['workers']} delivery processes ({broker} broker), "
            f"sweeping every {settings.DELIVERY_SWEEP_SECONDS:g} s",
        )
        self.stdout.flush()
        while not stopping.is_set():
            try:
                sweep()
            except Exception:
                log.exception("sweep failed; trying again")
            finally:
                close_old_connections()
            stopping.wait(settings.DELIVERY_SWEEP_SECONDS)
        self.stdout.write("cdphub worker: stopping (finishing the tasks in hand)")
        cluster.stop()
        self.stdout.write("cdphub worker: stopped")

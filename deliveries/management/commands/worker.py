from __future__ import annotations

import contextlib
import logging
import signal
import threading
from multiprocessing.connection import wait
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections, connections
from django_q.cluster import Cluster

from deliveries.engine import cluster
from deliveries.engine.sweep import sweep
from deliveries.outage import Throttled, unreachable

log = logging.getLogger("cdphub.worker")
unreachable_warning = Throttled(log)


class Command(BaseCommand):
    help = "Run delivery: the django-q2 cluster that sends, and the sweeper that re-queues due and orphaned work."

    def handle(self, *args: Any, **options: Any) -> None:
        stopping = threading.Event()
        connections.close_all()  # the cluster forks: children must open their own connections
        tasks = Cluster()
        tasks.start()

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
        name = cluster.worker_name()
        while not stopping.is_set():
            try:
                cluster.beat(name, settings.Q_CLUSTER["workers"])  # the hub's processes count this worker's
                sweep()
            except Exception as exc:
                if unreachable(exc):  # a database or Redis restart: one line now and then, not a traceback a sweep
                    unreachable_warning.warn("sweep failed, the database or the broker unreachable; trying again", exc)
                else:
                    log.exception("sweep failed; trying again")
            finally:
                close_old_connections()
            stopping.wait(settings.DELIVERY_SWEEP_SECONDS)
        self.stdout.write("cdphub worker: stopping (finishing the tasks in hand)")
        self.stdout.flush()
        stop_cluster(tasks)
        with contextlib.suppress(Exception):  # the database may be the reason for stopping
            cluster.gone(name)
        self.stdout.write("cdphub worker: stopped")


def stop_cluster(tasks: Cluster) -> None:
    """The task cluster's stop(), without hanging when the cluster was killed with us.

    When the whole process group gets SIGTERM (systemd's default KillMode=control-group, a supervisor's
    stopasgroup), django-q2's sentinel dies at once (it keeps SIGTERM's default action) while it sleeps on the
    stop event, and Cluster.stop() then blocks for ever in stop_event.set(), waiting for that sleeper to wake.
    So stop from a helper thread and stop waiting for it shortly after the sentinel has exited.
    """
    stopper = threading.Thread(target=tasks.stop, name="cluster-stop", daemon=True)
    stopper.start()
    while stopper.is_alive():
        if wait([tasks.sentinel.sentinel], timeout=0.5):  # the sentinel process has ended
            stopper.join(2)
            if stopper.is_alive():
                log.warning("the task cluster was stopped by a signal to the whole process group")
            return

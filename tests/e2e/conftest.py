"""Fixtures for tests that run the real delivery worker (`manage.py worker`) as a child process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from deliveries.models import Delivery
from integrations.models import Destination, Source
from tests.conftest import basic_auth
from tests.receiver import Receiver

BASE_DIR = Path(__file__).resolve().parent.parent.parent
READY = "cdphub worker:"

# Short engine timings so retries, leases and the sweeper act within seconds.
WORKER_ENV = {
    "CDPHUB_RETRY_BASE_SECONDS": "0.2",
    "CDPHUB_RETRY_CAP_SECONDS": "1",
    "CDPHUB_SWEEP_SECONDS": "0.5",
    "CDPHUB_LEASE_MARGIN_SECONDS": "2",
    "CDPHUB_QUEUE_LEASE_SECONDS": "5",
    "CDPHUB_WORKERS": "4",
}


def test_database_url() -> str:
    """CDPHUB_DATABASE_URL for the database this test runs against (SQLite file or PostgreSQL)."""
    db = connection.settings_dict
    name = str(db["NAME"])
    if connection.vendor == "sqlite":
        if name == ":memory:" or "mode=memory" in name:
            pytest.fail("A worker process cannot share an in-memory SQLite test database: give it a file TEST NAME.")
        return f"sqlite:///{name}"
    if connection.vendor == "postgresql":
        user = quote(db.get("USER") or "", safe="")
        password = quote(db.get("PASSWORD") or "", safe="")
        auth = f"{user}:{password}@" if password else f"{user}@" if user else ""
        host = quote(db.get("HOST") or "", safe="")  # a socket directory is percent-encoded
        port = f":{db['PORT']}" if db.get("PORT") else ""
        return f"postgres://{auth}{host}{port}/{quote(name, safe='')}"
    pytest.fail(f"No CDPHUB_DATABASE_URL form for the {connection.vendor} test database")


test_database_url.__test__ = False  # not a test, whatever its name


class Worker:
    """One `python manage.py worker` process in a process group of its own; its output goes to a file."""

    def __init__(self, log_path: Path, env: dict[str, str]) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "worker"],
            cwd=BASE_DIR,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.process.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while READY not in self.output():
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"worker not ready within {timeout} s:\n{self.output()}")
            time.sleep(0.05)

    def terminate(self) -> None:
        """SIGTERM to the main process only: the graceful stop an operator (or systemd KillMode=mixed) asks for."""
        self.process.send_signal(signal.SIGTERM)

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        """Teardown: SIGKILL the group (orphans included). The tests that need a graceful stop ask for one
        themselves (terminate()); waiting for one here cost ~2.5 s per test for nothing."""
        self.kill_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        self._log.close()


@pytest.fixture
def start_worker(transactional_db, monkeypatch, tmp_path) -> Iterator[Callable[..., Worker]]:
    """Start real worker processes against the test database; kicks in this process go to them.

    The worker must see committed rows, hence `transactional_db`; django-q2 sync mode is switched off here so
    ingest enqueues drains for the worker instead of running them inline.
    """
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", False)
    workers: list[Worker] = []
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "cdphub.settings_test",
        "CDPHUB_Q_SYNC": "0",
        "CDPHUB_DATA_DIR": str(settings.DATA_DIR),
        "CDPHUB_DATABASE_URL": test_database_url(),
        "CDPHUB_ALLOW_PRIVATE_URLS": "1",
        "CDPHUB_WORKER_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
        **WORKER_ENV,
    }  # CDPHUB_BROKER (redis://…) passes through from the environment when set

    def start(wait: bool = True, **extra: str) -> Worker:
        worker = Worker(tmp_path / f"worker-{len(workers) + 1}.log", {**env, **extra})
        workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    yield start

    for worker in workers:
        worker.stop()
    for worker in workers:  # shown by pytest when the test failed
        print(f"----- {worker.log_path.name} (pid {worker.pid}, exit {worker.process.returncode}) -----")
        print(worker.output()[-20000:])


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    """Make local HTTP receivers; all are shut down at the end."""
    made: list[Receiver] = []

    def make(**attrs: Any) -> Receiver:
        receiver = Receiver().__enter__()
        made.append(receiver)
        for name, value in attrs.items():
            setattr(receiver, name, value)
        return receiver

    yield make
    for receiver in made:
        receiver.down()


def statuses(destination: Destination | None = None) -> dict[str, int]:
    """How many deliveries (of one destination, or all) are in each status."""
    rows = Delivery.objects.all() if destination is None else Delivery.objects.filter(destination=destination)
    out: dict[str, int] = {}
    for status in rows.values_list("status", flat=True):
        out[status] = out.get(status, 0) + 1
    return out


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll `check` until it returns something true; fail with the deliveries' statuses after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}; deliveries: {statuses()}")
        time.sleep(interval)


def post(source: Source, batch: list[dict[str, Any]]) -> None:
    """Send a batch through the Tracking API, as an SDK does."""
    response = Client().post(
        "/v1/batch", {"batch": batch}, content_type="application/json", HTTP_AUTHORIZATION=basic_auth(source.write_key)
    )
    assert response.status_code == 200, response.content


def settled(destination: Destination, count: int) -> bool:
    """Whether `count` of the destination's deliveries have an outcome (delivered or failed)."""
    counts = statuses(destination)
    return counts.get("delivered", 0) + counts.get("failed", 0) >= count

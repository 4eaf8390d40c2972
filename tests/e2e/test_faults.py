"""The hub's real processes survive faults under a steady stream of events (tests/faults.py runs them and checks
the promises): on PostgreSQL + Redis (make test's second pass) two gunicorn workers and two `manage.py worker`
processes, a worker killed with -9 every 10 s, a gunicorn worker killed, PostgreSQL and Redis restarted, the
receiver down for 10 s and failing 30% of its answers; on SQLite (the first pass) one of each, the worker killed
and the receiver down. Every event answered 2xx arrives, the success log has it once, nothing stays in flight,
and the refusals while the database restarts are 503s with Retry-After.

Bounded for `make test` (2,000 events, about a minute on two cores); the long version (20,000 events, the
receiver down for 60 s) is bench/faults.py, or this test with CDPHUB_FAULTS_FULL=1.
"""

from __future__ import annotations

import os

import pytest
from django.db import connection, connections

from tests.e2e.conftest import test_database_url
from tests.faults import FULL, FULL_SQLITE, FaultRun, Plan, Services
from tests.receiver import Receiver

pytestmark = pytest.mark.e2e

POSTGRES_PLAN = Plan(
    events=2000,
    rate=100,  # 20 s of offering: workers killed at 8 s and 16 s
    web_workers=2,
    workers=2,
    kill_worker_every=8,
    kill_web_at=0.3,
    restart_database_at=0.5,
    restart_redis_at=0.7,
    receiver_down_at=0.15,
    receiver_down_for=10,
    settle_timeout=40,
)
SQLITE_PLAN = Plan(
    events=1000,
    rate=100,  # 10 s of offering: the worker killed at 6 s, while the receiver is down
    web_workers=1,
    workers=1,
    kill_worker_every=6,
    receiver_down_at=0.1,
    receiver_down_for=10,
    settle_timeout=30,
)


def plan_for(vendor: str) -> Plan:
    if os.environ.get("CDPHUB_FAULTS_FULL") == "1":
        return FULL if vendor == "postgresql" else FULL_SQLITE
    return POSTGRES_PLAN if vendor == "postgresql" else SQLITE_PLAN


def test_every_acknowledged_event_arrives_through_killed_processes_and_restarts(transactional_db, tmp_path):
    postgres = connection.vendor == "postgresql"
    broker = os.environ.get("CDPHUB_BROKER", "")
    if postgres and not broker.startswith("redis"):
        pytest.fail("the PostgreSQL pass runs with the Redis broker: run under tests/services.sh")
    with Receiver() as receiver:
        run = FaultRun(
            plan_for(connection.vendor),
            test_database_url(),
            broker if postgres else "",
            tmp_path,
            receiver,
            services=Services.from_env(),
        )
        try:
            report = run.execute()
        finally:
            connections.close_all()  # this process's connection did not survive the restart: open a new one
    print(report)
    assert report.problems == []
    figures = report.figures
    assert figures["events_acknowledged_2xx"] == figures["events_offered"]
    if postgres:  # the restart happened under load (its refusals, if any fell in the ~0.5 s it lasts, were 503s)
        assert any("database back" in entry for entry in report.timeline)
        assert any("Redis restarted" in entry for entry in report.timeline)

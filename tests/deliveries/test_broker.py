"""The brokers of deliveries/broker.py ride out a restart: a dequeue while Redis or the database is unreachable
returns nothing (one warning line), instead of killing django-q2's pusher for 10 s with a traceback."""

from __future__ import annotations

import logging
import sqlite3

import pytest
import redis
from django.db import OperationalError, connection
from redis.backoff import NoBackoff
from redis.retry import Retry

from deliveries import broker as brokers
from tests.deliveries.ingest.test_outage import TRANSACTION_CONTROL


@pytest.fixture(autouse=True)
def fast(monkeypatch):
    monkeypatch.setattr(brokers, "RETRY_SECONDS", 0)
    monkeypatch.setattr(brokers, "_unreachable", brokers.Throttled(brokers.log))


def test_the_redis_broker_waits_for_a_redis_that_refuses_connections(caplog):
    broker = brokers.RedisBroker.__new__(brokers.RedisBroker)
    broker.list_key = "django_q:test:q"
    broker.connection = redis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))  # nothing listens there

    assert broker.dequeue() is None
    assert broker.dequeue() is None
    lines = [r for r in caplog.records if r.name == "cdphub.worker"]
    assert len(lines) == 1
    assert "task broker is unreachable" in lines[0].getMessage()
    assert not lines[0].exc_info


@pytest.mark.django_db
def test_the_database_broker_waits_for_the_database(caplog):
    def locked(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith(TRANSACTION_CONTROL):
            return execute(sql, params, many, context)
        raise OperationalError("database is locked") from sqlite3.OperationalError("database is locked")

    broker = brokers.DatabaseBroker(list_key="test")
    with connection.execute_wrapper(locked):
        assert broker.dequeue() is None
    assert [r.levelno for r in caplog.records if r.name == "cdphub.worker"] == [logging.WARNING]


def test_any_other_error_still_reaches_the_pusher():
    broker = brokers.RedisBroker.__new__(brokers.RedisBroker)
    broker.list_key = "django_q:test:q"
    broker.connection = None  # a bug, not an outage
    with pytest.raises(AttributeError):
        broker.dequeue()

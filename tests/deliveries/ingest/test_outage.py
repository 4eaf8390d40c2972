"""The database unreachable (PostgreSQL restarting, a refused or cut connection, SQLite locked beyond its busy
timeout): the Tracking API, the webhook endpoint, the management API and the admin answer 503 with Retry-After and
a JSON error, store nothing, log one warning line (no traceback), and serve the next request once it is back.

The outage is simulated with Django's execute_wrapper: every statement fails the way the driver fails it. The
fault tests (tests/e2e/test_faults.py) restart a real PostgreSQL under load.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator

import pytest
from django.db import InterfaceError, OperationalError, ProgrammingError, connection
from django.test import Client

from deliveries import outage
from deliveries.models import Event
from integrations.models import ApiToken, Source
from tests.conftest import basic_auth

pytestmark = pytest.mark.django_db

TRACK = {"type": "track", "userId": "u-1", "event": "Order Completed", "messageId": "m-outage-1"}
TRANSACTION_CONTROL = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK")  # the test's own transaction keeps working


def locked(execute, sql, params, many, context):
    """Every statement fails as SQLite's does when the write lock stayed taken beyond the busy timeout."""
    if sql.lstrip().upper().startswith(TRANSACTION_CONTROL):
        return execute(sql, params, many, context)
    raise OperationalError("database is locked") from sqlite3.OperationalError("database is locked")


def refused(execute, sql, params, many, context):
    """Every statement fails as psycopg's does while PostgreSQL restarts."""
    if sql.lstrip().upper().startswith(TRANSACTION_CONTROL):
        return execute(sql, params, many, context)
    raise OperationalError("connection failed: Connection refused\n\tIs the server running on that host?")


@contextlib.contextmanager
def database_down(how=locked) -> Iterator[None]:
    with connection.execute_wrapper(how):
        yield


@pytest.fixture(autouse=True)
def fresh_throttle(monkeypatch):
    """Each test sees its first refusal logged (the throttle is per process)."""
    monkeypatch.setattr(outage, "_refusals", outage.Throttled(outage.log))


def assert_unavailable(response) -> dict:
    assert response.status_code == 503, response.content
    assert response["Retry-After"] == str(outage.RETRY_AFTER_SECONDS)
    assert response["Content-Type"].startswith("application/json")
    return response.json()


def no_tracebacks(caplog) -> None:
    assert [r for r in caplog.records if r.exc_info] == [], "a traceback was logged"
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize("how", [locked, refused], ids=["sqlite-locked", "connection-refused"])
def test_a_tracked_event_is_refused_with_503_and_retry_after_and_not_stored(source, caplog, how):
    caplog.set_level(logging.WARNING)
    with database_down(how):
        response = Client().post(
            "/v1/track", TRACK, content_type="application/json", HTTP_AUTHORIZATION=basic_auth(source.write_key)
        )

    body = assert_unavailable(response)
    assert body == {"success": False, "code": "database_unavailable", "message": outage.MESSAGE}
    assert response["Access-Control-Allow-Origin"] == "*"  # a browser SDK can read the refusal too
    assert not Event.objects.exists()
    warnings = [r.getMessage() for r in caplog.records if r.name == "cdphub.outage"]
    assert len(warnings) == 1
    assert "database unavailable" in warnings[0]
    assert "POST /v1/track" in warnings[0]
    no_tracebacks(caplog)


def test_a_batch_is_refused_whole_and_the_next_request_after_the_outage_is_stored(source, destination):
    batch = {"batch": [{**TRACK, "messageId": f"m-{i}"} for i in range(3)]}
    auth = basic_auth(source.write_key)
    with database_down():
        refused_response = Client().post("/v1/batch", batch, content_type="application/json", HTTP_AUTHORIZATION=auth)
    assert_unavailable(refused_response)
    assert not Event.objects.exists()

    # The sender retries the same batch once the database is back: stored once, delivered from the outbox.
    response = Client().post("/v1/batch", batch, content_type="application/json", HTTP_AUTHORIZATION=auth)
    assert response.status_code == 200, response.content
    assert sorted(Event.objects.values_list("message_id", flat=True)) == ["m-0", "m-1", "m-2"]


def test_a_write_key_looked_up_during_the_outage_is_a_503_not_a_401(caplog):
    Source.objects.create(name="Fresh", slug="fresh", write_key="wk_never_seen_before")
    with database_down(refused):
        response = Client().post(
            "/v1/track", TRACK, content_type="application/json", HTTP_AUTHORIZATION=basic_auth("wk_never_seen_before")
        )
    assert_unavailable(response)
    no_tracebacks(caplog)


def test_a_webhook_is_refused_with_503_and_nothing_recorded(caplog):
    source = Source.objects.create(name="Tool", slug="tool", kind="generic", write_key="wk_tool")
    url, payload = f"/v1/webhooks/{source.write_key}", {"id": "evt_1", "email": "a@example.com"}
    with database_down():
        response = Client().post(url, payload, content_type="application/json")

    body = assert_unavailable(response)
    assert body["code"] == "database_unavailable"
    assert not Event.objects.exists()
    no_tracebacks(caplog)  # the view's "a bug in a source function" traceback is not logged for an outage

    response = Client().post(url, payload, content_type="application/json")
    assert response.status_code == 200, response.content
    assert Event.objects.filter(message_id="evt_1").exists()


def test_the_management_api_answers_503_in_drfs_shape(django_user_model, caplog):
    admin = django_user_model.objects.create_superuser("ada", "ada@example.com", "pw")
    token = ApiToken.issue(admin, "script")[1]
    with database_down(refused):
        response = Client().get("/api/v1/sources/", HTTP_AUTHORIZATION=f"Bearer {token}")

    body = assert_unavailable(response)
    assert body == {"detail": outage.MESSAGE}
    no_tracebacks(caplog)


def test_an_admin_page_answers_503_not_djangos_500(admin_client, caplog):
    with database_down(refused):
        response = admin_client.get("/admin/deliveries/event/")
    body = assert_unavailable(response)
    assert body["code"] == "database_unavailable"
    no_tracebacks(caplog)


def test_refusals_under_load_are_one_warning_line_with_their_count(source, caplog):
    caplog.set_level(logging.WARNING)
    auth = basic_auth(source.write_key)
    with database_down(refused):
        for _ in range(20):
            response = Client().post("/v1/track", TRACK, content_type="application/json", HTTP_AUTHORIZATION=auth)
            assert response.status_code == 503
    assert len([r for r in caplog.records if r.name == "cdphub.outage"]) == 1


def test_only_an_unreachable_database_is_an_outage_not_a_mistake_in_sql():
    def from_sqlite(message: str) -> OperationalError:
        try:
            raise OperationalError(message) from sqlite3.OperationalError(message)
        except OperationalError as exc:
            return exc

    assert outage.is_outage(from_sqlite("database is locked"))
    assert outage.is_outage(from_sqlite("unable to open database file"))
    assert not outage.is_outage(from_sqlite("no such table: deliveries_event"))  # a bug: a 500, with its traceback
    assert outage.is_outage(OperationalError("terminating connection due to administrator command"))
    assert outage.is_outage(InterfaceError("connection already closed"))
    assert not outage.is_outage(ProgrammingError("syntax error at or near"))
    assert not outage.is_outage(ValueError("database is locked"))

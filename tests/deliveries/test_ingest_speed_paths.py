"""The ingest fast paths keep their shape: index-backed dedupe, cached look-ups, a write lock for inserts only."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from deliveries.models import Event
from tests.conftest import basic_auth

pytestmark = pytest.mark.django_db

WRITE_KEY = "wk_test_website"


def post(client, endpoint: str, body: Any, key: str = WRITE_KEY):
    return client.post(
        f"/v1/{endpoint}", data=orjson.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=basic_auth(key)
    )


def track(message_id: str) -> dict[str, Any]:
    return {"type": "track", "userId": "u1", "event": "Order Completed", "messageId": message_id}


def dedupe_queries(queries: list[dict[str, str]]) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].startswith('SELECT "deliveries_event"."message_id"')]


def test_the_batch_dedupe_query_has_no_order_by_and_probes_the_unique_index(client, source):
    post(client, "batch", {"batch": [track(f"old-{n}") for n in range(50)]})

    with CaptureQueriesContext(connection) as captured:
        response = post(client, "batch", {"batch": [track("old-1"), track("new-1"), track("new-2")]})

    assert response.json() == {"success": True, "duplicates": 1}
    [sql] = dedupe_queries(captured.captured_queries)
    # Event.Meta.ordering would make SQLite walk every row of the source in time order instead.
    assert "ORDER BY" not in sql
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN QUERY PLAN " + sql)
            plan = " ".join(str(row[-1]) for row in cursor.fetchall())
        assert "event_unique_message_per_source" in plan
        assert "event_source_received" not in plan
    assert Event.objects.filter(status=Event.Status.ACCEPTED).count() == 52

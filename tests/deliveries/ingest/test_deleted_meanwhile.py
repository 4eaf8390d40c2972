"""A source or destination deleted by another process while this one still remembers it is never a 500."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import override_settings

from deliveries.models import Delivery, Event
from integrations.models import Destination, Source
from tests.conftest import basic_auth

pytestmark = pytest.mark.django_db(transaction=True)

BODY = b'{"userId": "u-1", "event": "Signed Up"}'


def track(client):
    return client.post("/v1/track", data=BODY, content_type="application/json", HTTP_AUTHORIZATION=basic_auth("wk_x"))


def delete_elsewhere(*tables: str) -> None:
    """Delete as another process would: plain SQL, so no signal tells this process's look-ups."""
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"DELETE FROM {table}")


@pytest.fixture
def routed(db):
    source = Source.objects.create(name="Website", slug="website", write_key="wk_x")
    # paused: the event is routed (a Delivery row that references the destination) but nothing is sent
    destination = Destination.objects.create(
        name="Hook", slug="hook", vendor="webhook", paused=True, config={"url": "http://127.0.0.1:9/hook"}
    )
    destination.sources.add(source)
    return source, destination


@override_settings(INGEST_CACHE_SECONDS=60)
def test_a_source_deleted_elsewhere_gets_a_401_not_a_500(client, routed):
    assert track(client).status_code == 200  # the source and its destinations are remembered now

    delete_elsewhere(
        "deliveries_attempt",
        "deliveries_delivery",
        "deliveries_event",
        "integrations_destination_sources",
        "integrations_source",
    )
    response = track(client)

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_write_key"


@override_settings(INGEST_CACHE_SECONDS=60)
def test_a_destination_deleted_elsewhere_is_looked_up_again_and_the_event_kept(client, routed):
    assert track(client).status_code == 200

    delete_elsewhere(
        "deliveries_attempt",
        "deliveries_delivery",
        "deliveries_slot",
        "deliveries_ratebucket",
        "deliveries_circuit",
        "deliveries_alertnotification",
        "deliveries_alert",
        "deliveries_alertrule",
        "integrations_destination_sources",
        "integrations_destination",
    )
    response = track(client)

    assert response.status_code == 200, response.content
    assert Event.objects.filter(status=Event.Status.ACCEPTED).count() == 2
    assert not Delivery.objects.exists()

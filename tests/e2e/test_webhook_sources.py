"""A tool's webhook end to end: Customer.io posts signed reporting webhooks to /v1/webhooks/<write key>, the
real worker (`manage.py worker`) delivers the events to a webhook destination. A retried webhook is delivered
once; a forged one is refused and never delivered."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path

import pytest
from django.test import Client

from deliveries.models import Delivery, Event
from integrations.models import Destination, Source
from tests.e2e.conftest import wait_until

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "customerio"
SECRET = "cio-reporting-signing-key-e2e"


def post_signed(source: Source, body: bytes, secret: str = SECRET) -> int:
    timestamp = str(int(time.time()))
    signature = hmac.new(secret.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
    response = Client().post(
        f"/v1/webhooks/{source.write_key}",
        body,
        content_type="application/json",
        HTTP_X_CIO_TIMESTAMP=timestamp,
        HTTP_X_CIO_SIGNATURE=signature,
    )
    return response.status_code


def test_customerio_webhooks_reach_a_webhook_destination_once_each(start_worker, receivers, transactional_db):
    receiver = receivers()
    source = Source.objects.create(
        name="Customer.io", slug="cio", kind="customerio", write_key="wk_e2e_cio", settings={"signing_secret": SECRET}
    )
    destination = Destination.objects.create(name="Hook", slug="hook", vendor="webhook", config={"url": receiver.url})
    destination.sources.add(source)
    start_worker()

    delivered = (FIXTURES / "email_delivered.json").read_bytes()
    clicked = (FIXTURES / "email_clicked.json").read_bytes()
    assert post_signed(source, delivered) == 200
    assert post_signed(source, clicked) == 200
    assert post_signed(source, delivered) == 200  # Customer.io retrying: acknowledged, not stored again
    assert post_signed(source, clicked, secret="someone-else") == 401  # forged: refused, recorded

    wait_until(lambda: len(receiver.successes) >= 2, 30, "both events delivered")
    time.sleep(1)  # anything more would arrive now
    bodies = [r.body for r in receiver.requests if r.status == 200]
    assert sorted(b["event"] for b in bodies) == ["Email Delivered", "Email Link Clicked"]
    by_name = {b["event"]: b for b in bodies}
    assert by_name["Email Delivered"]["userId"] == "user-123"
    assert by_name["Email Delivered"]["messageId"] == json.loads(delivered)["event_id"]
    assert by_name["Email Delivered"]["context"]["traits"]["email"] == "ada@example.com"
    assert by_name["Email Delivered"]["timestamp"] == "2023-01-31T20:26:59.000Z"
    assert by_name["Email Link Clicked"]["properties"]["link"]["url"]
    assert receiver.duplicates() == {}
    assert Delivery.objects.filter(destination=destination, status="delivered").count() == 2
    rejected = Event.objects.get(source=source, status="rejected")
    assert rejected.reject_reason.startswith("invalid_signature")
    assert not rejected.deliveries.exists()

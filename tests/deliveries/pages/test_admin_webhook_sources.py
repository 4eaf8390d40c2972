"""The admin of a webhook source: its signing secret (encrypted, never shown again), its function's config
checked on save, the last request's result, and Try a payload (the events a body would make, nothing stored)."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from deliveries.models import Event
from integrations.models import Source

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "customerio"
SECRET = "cio-signing-key-5e2f9a"


@pytest.fixture
def cio(db) -> Source:
    return Source.objects.create(
        name="Customer.io", slug="cio", kind="customerio", write_key="wk_cio_admin", settings={"signing_secret": SECRET}
    )


def test_a_marketer_adds_a_customerio_source_with_its_signing_secret(admin_client):
    response = admin_client.post(
        reverse("admin:integrations_source_add"),
        {
            "name": "Customer.io",
            "slug": "customerio",
            "kind": "customerio",
            "write_key": "wk_cio_new",
            "enabled": "on",
            "config": '{"naming": "customerio"}',
            "settings__customerio__signing_secret": f"  {SECRET}\n",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    source = Source.objects.get(slug="customerio")
    assert (source.config, source.settings) == ({"naming": "customerio"}, {"signing_secret": SECRET})
    page = admin_client.get(reverse("admin:integrations_source_change", args=[source.pk])).content.decode()
    assert SECRET not in page
    assert 'data-key="signing_secret">••••••••' in page
    assert "/v1/webhooks/wk_cio_new" in page
    assert reverse("admin:integrations_source_try", args=[source.pk]) in page


def test_a_bad_config_is_explained_beside_its_field_and_nothing_is_saved(admin_client, cio):
    response = admin_client.post(
        reverse("admin:integrations_source_change", args=[cio.pk]),
        {"name": "Customer.io", "slug": "cio", "kind": "customerio", "enabled": "on", "config": '{"naming": "cio"}'},
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "config.naming: must be one of 'segment', 'customerio', not 'cio'" in errors["config"][0]
    cio.refresh_from_db()
    assert cio.config == {}


def test_saving_without_typing_the_secret_keeps_it(admin_client, cio):
    response = admin_client.post(
        reverse("admin:integrations_source_change", args=[cio.pk]),
        {"name": "Customer.io (prod)", "slug": "cio", "kind": "customerio", "enabled": "on", "config": ""},
    )

    assert response.status_code == 302
    cio.refresh_from_db()
    assert (cio.name, cio.settings) == ("Customer.io (prod)", {"signing_secret": SECRET})


def test_the_source_list_and_page_show_the_last_webhook_request(admin_client, cio):
    body = (FIXTURES / "email_delivered.json").read_bytes()
    Client().post(
        f"/v1/webhooks/{cio.write_key}",
        body,
        content_type="application/json",
        HTTP_X_CIO_TIMESTAMP="1675196819",
        HTTP_X_CIO_SIGNATURE="0" * 64,
    )

    listing = admin_client.get(reverse("admin:integrations_source_changelist")).content.decode()
    assert "HTTP 401: invalid_signature" in listing
    timestamp = b"1675196819"
    signature = hmac.new(SECRET.encode(), b"v0:" + timestamp + b":" + body, hashlib.sha256).hexdigest()
    ok = Client().post(
        f"/v1/webhooks/{cio.write_key}",
        body,
        content_type="application/json",
        HTTP_X_CIO_TIMESTAMP=timestamp.decode(),
        HTTP_X_CIO_SIGNATURE=signature,
    )
    assert ok.status_code == 200
    page = admin_client.get(reverse("admin:integrations_source_change", args=[cio.pk])).content.decode()
    assert "HTTP 200: 1 event(s) stored" in page
    # Try a payload starts from what the tool last sent.
    tried = admin_client.get(reverse("admin:integrations_source_try", args=[cio.pk])).content.decode()
    assert "the last body the tool sent" in tried
    assert "01ER4R5WB62QWCNREKFB4DYXGR" in tried


def test_try_a_payload_shows_the_events_without_storing_anything(admin_client, cio):
    url = reverse("admin:integrations_source_try", args=[cio.pk])
    assert "Show the events" in admin_client.get(url).content.decode()

    page = admin_client.post(url, {"payload": (FIXTURES / "email_clicked.json").read_text()}).content.decode()

    assert "1 event</h2>" in page
    assert "&quot;event&quot;: &quot;Email Link Clicked&quot;" in page
    assert "&quot;receivedAt&quot;" in page  # normalised as the Tracking API does
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ("not json", "invalid_json: The body is not valid JSON"),
        ('{"object_type": "email", "metric": "delivered"}', "missing_event_id"),
    ],
)
def test_try_a_payload_explains_why_a_body_is_refused(admin_client, cio, payload, says):
    page = admin_client.post(reverse("admin:integrations_source_try", args=[cio.pk]), {"payload": payload})

    assert "Refused (HTTP 400)" in page.content.decode()
    assert says in page.content.decode()
    assert not Event.objects.exists()


def test_an_http_source_has_no_payload_to_try(admin_client, source):
    response = admin_client.get(reverse("admin:integrations_source_try", args=[source.pk]))

    assert response.status_code == 302
    page = admin_client.get(reverse("admin:integrations_source_change", args=[source.pk])).content.decode()
    assert "Try a payload" not in page

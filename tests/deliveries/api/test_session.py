"""The browsable API with the admin's session: a logged-in person reads it in the browser, and a write from the
session needs Django's CSRF token (a token in the Authorization header does not: no cookie rides along)."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from integrations.models import Source

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(admin_user) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    return client


def test_the_admins_session_reads_the_browsable_api(browser: Client) -> None:
    page = browser.get("/api/v1/sources", HTTP_ACCEPT="text/html")
    assert page.status_code == 200
    assert "Source List" in page.content.decode()


def test_a_session_write_without_the_csrf_token_is_refused_and_with_it_accepted(browser: Client) -> None:
    body = json.dumps({"name": "Shop", "slug": "shop", "kind": "http"})

    refused = browser.post("/api/v1/sources", body, content_type="application/json")

    assert refused.status_code == 403
    assert refused.json()["detail"].startswith("CSRF Failed")
    assert not Source.objects.exists()

    browser.get("/api/v1/sources", HTTP_ACCEPT="text/html")  # the page's forms set the CSRF cookie
    token = browser.cookies["csrftoken"].value
    accepted = browser.post("/api/v1/sources", body, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 201
    assert Source.objects.get().slug == "shop"


def test_a_logged_out_browser_gets_a_401_not_the_data(client: Client) -> None:
    response = client.get("/api/v1/sources", HTTP_ACCEPT="application/json")
    assert response.status_code == 401

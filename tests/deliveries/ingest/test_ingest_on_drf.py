"""The Tracking API and the webhooks as DRF views, kept apart from the management API's settings: never throttled, no
session (so no CSRF), not in the OpenAPI document, JSON whatever Accept says, and nothing left to the cycle
collector."""

from __future__ import annotations

import gc

import orjson
import pytest
from django.core.cache.backends.locmem import LocMemCache
from django.test import Client
from rest_framework.request import Request

from deliveries.api.auth import AnonymousThrottle, UserThrottle
from deliveries.models import Event
from integrations.models import Source
from tests.conftest import basic_auth

pytestmark = pytest.mark.django_db

WRITE_KEY = "wk_test_website"
TRACK = {"type": "track", "userId": "u1", "event": "Signed Up"}


@pytest.fixture
def hook_source(db) -> Source:
    return Source.objects.create(name="Any JSON", slug="hook", kind="generic", write_key="wk_hook")


def track(client: Client, **extra: str):
    return client.post(
        "/v1/track",
        data=orjson.dumps(TRACK),
        content_type="application/json",
        **{"HTTP_AUTHORIZATION": basic_auth(WRITE_KEY), **extra},
    )


def test_ingest_is_never_throttled_even_when_the_management_api_allows_one_call_a_minute(
    client, source, hook_source, monkeypatch
):
    for throttle in (AnonymousThrottle, UserThrottle):
        monkeypatch.setattr(throttle, "cache", LocMemCache(f"test-{throttle.__name__}", {}))
        monkeypatch.setattr(throttle, "rate", "1/min", raising=False)
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/schema/").status_code == 429  # the management API's throttle is on

    tracked = [track(client).status_code for _ in range(5)]
    hooked = [client.post("/v1/webhooks/wk_hook", b"{}", content_type="application/json").status_code for _ in range(3)]

    assert tracked == [200] * 5
    assert 429 not in hooked
    assert Event.objects.filter(status=Event.Status.ACCEPTED).count() == 5


def test_a_signed_in_browser_posting_without_a_csrf_token_still_ingests(source, django_user_model):
    client = Client(enforce_csrf_checks=True)
    client.force_login(django_user_model.objects.create_user("ada", password="pw", is_staff=True))

    with_key_in_body = client.post(
        "/v1/t", data=orjson.dumps({**TRACK, "writeKey": WRITE_KEY}), content_type="text/plain"
    )
    with_basic_auth = track(client)

    assert (with_key_in_body.status_code, with_basic_auth.status_code) == (200, 200)
    assert Event.objects.filter(status=Event.Status.ACCEPTED).count() == 2


def test_the_management_apis_openapi_document_leaves_out_the_tracking_api_and_the_webhooks(client):
    paths = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]

    assert [path for path in paths if path.startswith("/v1/")] == ["/v1/admin/integrations"]  # Signal's: management


def test_an_accept_header_asking_for_html_still_gets_json(client, source):
    response = track(client, HTTP_ACCEPT="text/html")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"success": True}


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("get", "/v1/track", "POST, OPTIONS"),
        ("get", "/v1/webhooks/wk_hook", "POST"),
        ("options", "/v1/webhooks/wk_hook", "POST"),
    ],
)
def test_a_405_says_use_post_and_names_the_methods_allowed(client, hook_source, method, path, allow):
    response = getattr(client, method)(path)

    assert response.status_code == 405
    assert response.json() == {"success": False, "code": "method_not_allowed", "message": "Use POST."}
    assert response["Allow"] == allow


def test_only_a_405_names_the_methods_allowed(client, source):
    assert "Allow" not in track(client)


def test_a_request_and_its_parsed_batch_are_freed_as_it_ends_not_by_the_cycle_collector(client, source):
    batch = {"batch": [{**TRACK, "messageId": f"m{i}"} for i in range(50)]}
    gc.collect()
    gc.disable()
    try:
        response = client.post(
            "/v1/batch",
            data=orjson.dumps(batch),
            content_type="application/json",
            HTTP_AUTHORIZATION=basic_auth(WRITE_KEY),
        )
        # type(), not isinstance(): a dead weak proxy among the objects raises on __class__
        # (other tests' schema generation may leave DRF Requests of its own: only this batch's count)
        left = [obj for obj in gc.get_objects() if issubclass(type(obj), Request) and obj._request.path == "/v1/batch"]
    finally:
        gc.enable()

    assert response.status_code == 200
    assert left == []

"""Bearer API tokens: acting as their user, refused when unknown, revoked or expired; the browsable API's session."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from integrations.models import ApiToken
from tests.deliveries.api.conftest import client_with

pytestmark = pytest.mark.django_db


def test_a_token_is_stored_as_a_digest_and_shown_only_when_issued(admin_user) -> None:
    row, token = ApiToken.issue(admin_user, "ci")
    assert token.startswith("cdp_")
    stored = ApiToken.objects.values().get(pk=row.pk)
    assert token not in str(stored)
    assert stored["prefix"] == token[:10]


def test_the_schema_is_served_without_a_token(anonymous_api) -> None:
    response = anonymous_api.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("Bearer cdp_nope", "Unknown API token."),
        ("Bearer ", "Send the token as `Authorization: Bearer <token>`."),
    ],
)
def test_a_bad_token_is_a_401_that_says_why(header: str, message: str) -> None:
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/")
    assert response.status_code == 401
    assert response.json() == {"detail": message}


def test_a_revoked_token_is_refused(revoked_api) -> None:
    response = revoked_api.get("/api/v1/")
    assert response.status_code == 401
    assert response.json() == {"detail": "This API token was revoked."}


def test_an_expired_token_is_refused(admin_user) -> None:
    _, token = ApiToken.issue(admin_user, "short", expires_at=timezone.now() - timedelta(seconds=1))
    response = client_with(token).get("/api/v1/")
    assert response.status_code == 401
    assert response.json() == {"detail": "This API token has expired."}


def test_using_a_token_records_when(admin_user) -> None:
    row, token = ApiToken.issue(admin_user, "ci")
    assert client_with(token).get("/api/v1/").status_code == 200
    row.refresh_from_db()
    assert row.last_used_at is not None


def test_the_command_prints_a_working_token_once_and_alone(admin_user) -> None:
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("create_api_token", "--name", "ci", "--expires-in-days", "30", stdout=out)
    token = out.getvalue().strip()
    assert token.startswith("cdp_")
    assert "\n" not in token
    row = ApiToken.objects.get()
    assert (row.user, row.name, row.state) == (admin_user, "ci", "active")
    assert row.expires_at is not None
    assert client_with(token).get("/api/v1/").status_code == 200


def test_the_command_refuses_an_unknown_user(db) -> None:
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="There is no user 'nobody'"):
        call_command("create_api_token", "--name", "ci", "--username", "nobody")


# Throttling: the management API counts calls per user (per address when anonymous) in the shared broker cache;
# the Tracking API never throttles, an SDK's retries would only pile up. settings_test sets huge rates, and DRF reads
# the rates when the throttle classes are made, so these tests patch the classes' rates themselves.


@pytest.fixture
def small_rates(monkeypatch):
    from django.core.cache import caches

    from deliveries.api.auth import AnonymousThrottle, UserThrottle

    rates = {"user": "3/min", "anon": "2/min"}
    monkeypatch.setattr(UserThrottle, "THROTTLE_RATES", rates)
    monkeypatch.setattr(AnonymousThrottle, "THROTTLE_RATES", rates)
    caches["qcluster"].clear()
    yield rates
    caches["qcluster"].clear()


def test_the_management_api_answers_429_with_retry_after_past_a_users_rate(small_rates, api, marketer_api) -> None:
    assert [api.get("/api/v1/").status_code for _ in range(3)] == [200, 200, 200]

    throttled = api.get("/api/v1/")

    assert throttled.status_code == 429
    assert 0 < int(throttled["Retry-After"]) <= 60
    assert throttled.json()["detail"].startswith("Request was throttled.")
    assert marketer_api.get("/api/v1/").status_code == 200  # counted per user: another user is not held back


def test_anonymous_callers_are_throttled_by_address(small_rates, anonymous_api) -> None:
    statuses = [anonymous_api.get("/api/schema/").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_the_tracking_api_is_never_throttled(small_rates, anonymous_api, source) -> None:
    from tests.conftest import basic_auth

    sdk = basic_auth(source.write_key)
    track = {"userId": "user-1", "event": "Signed Up"}
    answers = [anonymous_api.post("/v1/track", track, format="json", HTTP_AUTHORIZATION=sdk) for _ in range(10)]
    assert [answer.status_code for answer in answers] == [200] * 10  # past both rates, from one address
    assert anonymous_api.get("/api/schema/").status_code == 200  # and it spent none of the management API's calls

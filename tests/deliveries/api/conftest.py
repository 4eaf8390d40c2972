"""The management API's callers: an administrator's and a Marketer's API tokens, a DRF client per caller, and a
caller with a token that was revoked (each resource's permission matrix runs over these); for the record resources
(events, deliveries, replays, the tester): an event through the Tracking API, the secrets crawl's workspace, and
the secrets found in an answer."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient


def client_with(token: str | None) -> APIClient:
    client = APIClient()
    if token is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser("ada", "ada@example.com", "pw")


@pytest.fixture
def admin_token(admin_user) -> str:
    from integrations.models import ApiToken

    return ApiToken.issue(admin_user, "admin script")[1]


@pytest.fixture
def marketer_token(marketer) -> str:
    from integrations.models import ApiToken

    return ApiToken.issue(marketer, "marketer script")[1]


@pytest.fixture
def revoked_token(admin_user) -> str:
    from integrations.models import ApiToken

    row, token = ApiToken.issue(admin_user, "old script")
    row.revoke()
    return token


@pytest.fixture
def api(admin_token) -> APIClient:
    """An administrator's token: sees and changes everything, secrets write-only all the same."""
    return client_with(admin_token)


@pytest.fixture
def marketer_api(marketer_token) -> APIClient:
    return client_with(marketer_token)


@pytest.fixture
def anonymous_api() -> APIClient:
    return client_with(None)


@pytest.fixture
def revoked_api(revoked_token) -> APIClient:
    return client_with(revoked_token)


@pytest.fixture(params=["admin", "marketer", "anonymous", "revoked"])
def caller(request) -> tuple[str, APIClient]:
    """Each caller of the permission matrix in turn, by name."""
    return request.param, request.getfixturevalue({"admin": "api"}.get(request.param, f"{request.param}_api"))


# Records (events, deliveries, replays, the tester) ---------------------------------------------------------


def track(client, write_key: str, body: dict, kind: str = "track") -> None:
    """An event through the Tracking API, as an SDK sends it: the write key in HTTP Basic auth."""
    from tests.conftest import basic_auth

    response = client.post(
        f"/v1/{kind}", data=json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=basic_auth(write_key)
    )
    assert response.status_code == 200, response.content


@pytest.fixture
def seeded(db):
    """The secrets crawl's workspace: a destination of every vendor with credentials, events through the Tracking
    API with write keys, attempts recorded by the real vendors (tests/test_marketer_sees_no_secrets.py)."""
    from django.test import Client

    from tests.test_marketer_sees_no_secrets import seed

    return seed(Client())


def every_page(client, url: str) -> list[dict]:
    """Follow `next` from the first page to the last: every page's body."""
    pages = []
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        pages.append(response.json())
        url = pages[-1]["next"]
    return pages


def leaks(text: str, secrets: list[str]) -> list[str]:
    """The secrets found in an answer, in any form the crawl looks for (plain, base64, URL-encoded …)."""
    from tests.test_marketer_sees_no_secrets import encodings

    return [secret for secret in secrets if any(form in text for form in encodings(secret))]

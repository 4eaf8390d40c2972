"""Every vendor in VENDORS through the same HTTP situations: one honest, secret-free Result per event."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses

from integrations.vendors import VENDORS, Vendor
from integrations.vendors.contract import Result

WEBHOOK_SIGNING_SECRET = "whsec_" + base64.b64encode(b"contract-signing-key-0123456789").decode()

SFMC_SUBDOMAIN = "mc563885gzs27c5t9-63k636ttgm"
SFMC_TOKEN = {
    "access_token": "eyJhbGciOiJIUzI1NiJ9.contract.sfmc-token",
    "token_type": "Bearer",
    "expires_in": 1079,
    "rest_instance_url": f"https://{SFMC_SUBDOMAIN}.rest.marketingcloudapis.com/",
}
MARKETO_TOKEN = {
    "access_token": "cdf01657-110d-4155-99a7-f986b2ff13a0:ab",
    "token_type": "bearer",
    "expires_in": 3599,
    "scope": "api@example.com",
}

# One profile per vendor key: how to build it, the calls it makes first (a token), where it then sends, which
# sent headers carry secrets, and any other value that must never be logged. A new vendor in VENDORS fails
# this module until it gets a profile here.
PROFILES: dict[str, dict[str, Any]] = {
    "webhook": {
        "config": {"url": "https://hooks.example.com/cdp", "headers": {"X-Team": "growth"}},
        "credentials": {"signing_secret": WEBHOOK_SIGNING_SECRET, "headers": {"X-Api-Key": "key_live_hook_4f9a2c"}},
        "method": "POST",
        "url": "https://hooks.example.com/cdp",
        "secret_headers": ["X-Api-Key", "webhook-signature"],
        "also_secret": [WEBHOOK_SIGNING_SECRET.removeprefix("whsec_")],  # the key itself, without its prefix
    },
    "sfmc_journey": {
        "config": {"subdomain": SFMC_SUBDOMAIN, "event_definition_key": "APIEvent-contract"},
        "credentials": {"client_id": "sfmc-client-contract", "client_secret": "sfmc-secret-contract-7f3a"},
        "setup": [("POST", f"https://{SFMC_SUBDOMAIN}.auth.marketingcloudapis.com/v2/token", SFMC_TOKEN)],
        "method": "POST",
        # The cases send two events: the async batch route.
        "url": f"https://{SFMC_SUBDOMAIN}.rest.marketingcloudapis.com/interaction/v1/async/events",
        "secret_headers": ["Authorization"],
        "also_secret": [SFMC_TOKEN["access_token"]],
    },
    "sfmc_data_extension": {
        "config": {"subdomain": SFMC_SUBDOMAIN, "data_extension_key": "Contacts"},
        "credentials": {"client_id": "sfmc-client-contract", "client_secret": "sfmc-secret-contract-7f3a"},
        "setup": [("POST", f"https://{SFMC_SUBDOMAIN}.auth.marketingcloudapis.com/v2/token", SFMC_TOKEN)],
        "method": "POST",
        "url": f"https://{SFMC_SUBDOMAIN}.rest.marketingcloudapis.com/hub/v1/dataevents/key:Contacts/rowset",
        "secret_headers": ["Authorization"],
        "also_secret": [SFMC_TOKEN["access_token"]],
    },
    "marketo": {
        "config": {"munchkin_id": "284-RPR-133", "upsert_leads": True},
        "credentials": {"client_id": "mkto-client-contract", "client_secret": "mkto-secret-contract-9b1c"},
        "setup": [("GET", "https://284-RPR-133.mktorest.com/identity/oauth/token", MARKETO_TOKEN)],
        "method": "POST",
        "url": "https://284-RPR-133.mktorest.com/rest/v1/leads.json",
        # Marketo answers 200 with a result per record; {"success": true} alone says nothing about them.
        "success": {
            "requestId": "e42b#1",
            "success": True,
            "result": [{"id": 1, "status": "created"}, {"id": 2, "status": "updated"}],
        },
        "secret_headers": ["Authorization"],
        "also_secret": [MARKETO_TOKEN["access_token"]],
    },
    "segment": {
        "config": {"base_url": "https://api.segment.io"},
        "credentials": {"write_key": "wk_segment_9d8c7b6a5f"},
        "method": "POST",
        "url": "https://api.segment.io/v1/batch",
        "secret_headers": ["Authorization"],
    },
}


def make_event(n: int) -> dict[str, Any]:
    return {
        "type": "identify",
        "userId": f"user-{n}",
        "traits": {"email": f"ada{n}@example.com", "plan": "pro"},
        "context": {"ip": "203.0.113.7"},
        "messageId": f"msg-contract-{n}",
        "timestamp": "2024-05-01T10:00:00.000Z",
    }


def leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in leaves(v)]
    return [value]


def no_secret_in(text: str, secrets: list[str]) -> list[str]:
    """Return the secrets found in `text` (empty means clean)."""
    return [s for s in secrets if s and s in text]


# Each case: how the receiver answers, then the outcome, error code and retry_after expected of every Result.
CASES: dict[str, dict[str, Any]] = {
    "success": {"status": 200, "json": {"success": True}, "outcome": "delivered"},
    "server_error": {"status": 503, "json": {"message": "upstream unavailable"}, "outcome": "retry"},
    "rate_limited": {
        "status": 429,
        "json": {"message": "slow down"},
        "headers": {"Retry-After": "7"},
        "outcome": "throttled",
        "retry_after": 7.0,
    },
    "bad_request": {"status": 400, "json": {"message": "bad field"}, "outcome": "failed", "says": "bad field"},
    "timeout": {"raises": requests.Timeout("Read timed out."), "outcome": "retry", "code": "timeout"},
    "connection_refused": {
        "raises": requests.ConnectionError("[Errno 111] Connection refused"),
        "outcome": "retry",
        "code": "connection_error",
    },
}


# Vendors with an OAuth token keep it in the database, shared by the worker processes.
pytestmark = pytest.mark.django_db


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def build_with_setup(key: str, mock: responses.RequestsMock) -> Vendor:
    """The vendor, with the calls it makes before the one under test (a token) answered as the vendor does."""
    for method, url, answer in PROFILES[key].get("setup", []):
        mock.add(method, url, json=answer)
    return build(key)


def profile_of(key: str) -> dict[str, Any]:
    if key not in PROFILES:
        pytest.fail(f"The vendor {key!r} is in VENDORS but has no contract profile: add one to PROFILES in {__name__}.")
    return PROFILES[key]


def build(key: str) -> Vendor:
    profile = profile_of(key)
    return VENDORS[key](profile["config"], profile["credentials"], None, timeout=5.0)


def events_for(vendor: Vendor) -> list[dict[str, Any]]:
    return [make_event(n) for n in range(min(2, vendor.max_batch))]


def secrets_of(key: str, mock: responses.RequestsMock) -> list[str]:
    """Credential values, and the values of secret headers as actually sent."""
    profile = PROFILES[key]
    secrets = [v for v in leaves(profile["credentials"]) if isinstance(v, str) and v]
    secrets += profile.get("also_secret", [])
    for call in mock.calls:
        secrets += [call.request.headers[h] for h in profile["secret_headers"] if h in call.request.headers]
    return secrets


def assert_secret_free(results: list[Result], secrets: list[str]) -> None:
    for result in results:
        assert not no_secret_in(json.dumps(result.exchanges), secrets), result.exchanges
        assert not no_secret_in(result.error_message, secrets), result.error_message


def test_every_vendor_in_the_registry_has_a_contract_profile() -> None:
    assert sorted(VENDORS) == sorted(PROFILES), "PROFILES must list exactly the vendors in VENDORS"


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("key", sorted(VENDORS))
def test_each_vendor_turns_each_http_situation_into_one_result_per_event(
    key: str, case: str, mocked: responses.RequestsMock
) -> None:
    vendor = build_with_setup(key, mocked)
    profile = PROFILES[key]
    spec = CASES[case]
    if case == "success" and "success" in profile:
        spec = {**spec, "json": profile["success"]}
    if "raises" in spec:
        mocked.add(profile["method"], profile["url"], body=spec["raises"])
    else:
        mocked.add(
            profile["method"], profile["url"], status=spec["status"], json=spec["json"], headers=spec.get("headers")
        )
    events = events_for(vendor)

    results = vendor.deliver(events)

    assert len(results) == len(events)
    assert len(mocked.calls) >= 1
    for result in results:
        assert isinstance(result, Result)
        assert result.outcome == spec["outcome"], result
        assert result.ok is (spec["outcome"] == "delivered")
        if "code" in spec:
            assert result.error_code == spec["code"]
        if "retry_after" in spec:
            assert result.retry_after == spec["retry_after"]
        if "says" in spec:
            assert spec["says"] in result.error_message
        if spec["outcome"] != "delivered":
            assert result.error_message, "a failure must say what went wrong"
            assert result.error_code
        if "status" in spec:
            assert result.status_code == spec["status"]

        last = result.exchanges[-1]
        assert last["request"]["method"] == profile["method"]
        assert last["request"]["url"] == profile["url"]
        assert last["request"]["body"], "the request body is recorded"
        # The body as sent (a vendor that retries rows one by one records each event's own call last).
        assert json.loads(last["request"]["body"]) in [
            json.loads(c.request.body) for c in mocked.calls if c.request.body
        ]
        assert "duration_ms" in last
        if "raises" in spec:
            assert "response" not in last
            assert last["error"]
        else:
            assert last["response"]["status"] == spec["status"]
            assert json.loads(last["response"]["body"]) == spec["json"]

    assert_secret_free(results, secrets_of(key, mocked))


@pytest.mark.parametrize("key", sorted(VENDORS))
def test_each_vendor_keeps_secrets_out_of_the_log_even_when_the_receiver_echoes_them(
    key: str, mocked: responses.RequestsMock
) -> None:
    vendor = build_with_setup(key, mocked)
    profile = PROFILES[key]
    credentials = [v for v in leaves(profile["credentials"]) if isinstance(v, str) and v]
    echo = f"Invalid credentials: {' / '.join(credentials)}"
    mocked.add(
        profile["method"],
        profile["url"],
        status=401,
        json={"message": echo, "echo": credentials},
        headers={"X-Echo": credentials[0]},
    )

    results = vendor.deliver(events_for(vendor))

    assert [r.outcome for r in results] == ["failed"] * len(results)
    assert "Invalid credentials" in results[0].error_message
    assert_secret_free(results, secrets_of(key, mocked))


@pytest.mark.parametrize("key", sorted(VENDORS))
def test_each_vendor_sends_a_user_agent_and_a_timeout_on_every_call(key: str, mocked: responses.RequestsMock) -> None:
    vendor = build_with_setup(key, mocked)
    profile = PROFILES[key]
    mocked.add(profile["method"], profile["url"], json={"success": True})

    vendor.deliver(events_for(vendor))

    for call in mocked.calls:
        assert call.request.headers["User-Agent"].startswith("cdphub/")
        assert call.request.req_kwargs["timeout"] == 5.0

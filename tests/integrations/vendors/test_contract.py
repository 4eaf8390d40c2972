"""Every vendor in VENDORS through the same HTTP situations: one honest, secret-free Result per event, a User-Agent
and a timeout on every call, and (vendors with tokens) an expired token replaced once. Each vendor's wire comes from
its profile in tests/fixtures/vendors/<key>/ (tests/vendor_kit.py): a new vendor needs no edit here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses

from integrations.vendors import VENDORS, Vendor
from integrations.vendors.contract import Result
from tests.vendor_kit import make_profile_function, profile, wire_vendors


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


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def build_with_setup(key: str, mock: responses.RequestsMock) -> Vendor:
    """The vendor, with the call it makes before the one under test (a token) answered as the vendor does."""
    token = profile(key).get("token")
    if token:
        mock.add(token["method"], token["url"], json=token["answer"])
    return build(key)


def build(key: str) -> Vendor:
    found = profile(key)
    return VENDORS[key](found["config"], found["credentials"], None, timeout=5.0)


def events_for(vendor: Vendor) -> list[dict[str, Any]]:
    return [make_event(n) for n in range(min(2, vendor.max_batch))]


def secrets_of(key: str, mock: responses.RequestsMock) -> list[str]:
    """Credential values, tokens the vendor was given, and the values of secret headers as actually sent."""
    found = profile(key)
    secrets = [v for v in leaves(found["credentials"]) if isinstance(v, str) and v]
    secrets += found.get("also_secret", [])
    if "token" in found:
        token = found["token"]["answer"]["access_token"]
        secrets += [token, renewed(token)]
    for call in mock.calls:
        secrets += [call.request.headers[h] for h in found.get("secret_headers", []) if h in call.request.headers]
    return secrets


def renewed(token: str) -> str:
    return token + "-renewed"


def assert_secret_free(results: list[Result], secrets: list[str]) -> None:
    for result in results:
        assert not no_secret_in(json.dumps(result.exchanges), secrets), result.exchanges
        assert not no_secret_in(result.error_message, secrets), result.error_message


@pytest.mark.parametrize("key", sorted(VENDORS))
def test_every_vendor_in_the_registry_has_a_contract_profile(key: str, request: pytest.FixtureRequest) -> None:
    found = profile(key)
    assert {"config", "credentials", "send"} <= found.keys()
    if "function" in found:  # a destination function: its code is a row the settings are checked against
        request.getfixturevalue("db")
        make_profile_function(key)
    assert VENDORS[key].validate(found["config"], found["credentials"]) == []
    assert ("expired" in found) == ("token" in found), "a vendor with tokens says how its API reports an expired one"


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("key", wire_vendors())
def test_each_vendor_turns_each_http_situation_into_one_result_per_event(
    key: str, case: str, mocked: responses.RequestsMock
) -> None:
    vendor = build_with_setup(key, mocked)
    send = profile(key)["send"]
    spec = CASES[case]
    if case == "success" and "success" in send:
        spec = {**spec, "json": send["success"]}
    if "raises" in spec:
        mocked.add(send["method"], send["url"], body=spec["raises"])
    else:
        mocked.add(send["method"], send["url"], status=spec["status"], json=spec["json"], headers=spec.get("headers"))
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
        assert last["request"]["method"] == send["method"]
        assert last["request"]["url"] == send["url"]
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


@pytest.mark.parametrize("key", wire_vendors())
def test_each_vendor_keeps_secrets_out_of_the_log_even_when_the_receiver_echoes_them(
    key: str, mocked: responses.RequestsMock
) -> None:
    vendor = build_with_setup(key, mocked)
    send = profile(key)["send"]
    credentials = [v for v in leaves(profile(key)["credentials"]) if isinstance(v, str) and v]
    echo = f"Invalid credentials: {' / '.join(credentials)}"
    mocked.add(
        send["method"],
        send["url"],
        status=401,
        json={"message": echo, "echo": credentials},
        headers={"X-Echo": credentials[0]},
    )

    results = vendor.deliver(events_for(vendor))

    assert [r.outcome for r in results] == ["failed"] * len(results)
    assert "Invalid credentials" in results[0].error_message
    assert_secret_free(results, secrets_of(key, mocked))


@pytest.mark.parametrize("key", wire_vendors())
def test_each_vendor_sends_a_user_agent_and_a_timeout_on_every_call(key: str, mocked: responses.RequestsMock) -> None:
    vendor = build_with_setup(key, mocked)
    send = profile(key)["send"]
    mocked.add(send["method"], send["url"], json=send.get("success", {"success": True}))

    vendor.deliver(events_for(vendor))

    for call in mocked.calls:
        assert call.request.headers["User-Agent"].startswith("cdphub/")
        assert call.request.req_kwargs["timeout"] == 5.0


@pytest.mark.parametrize("key", [key for key in sorted(VENDORS) if "token" in profile(key)])
def test_each_vendor_with_tokens_replaces_an_expired_token_once_and_delivers(
    key: str, mocked: responses.RequestsMock
) -> None:
    found = profile(key)
    token, send = found["token"], found["send"]
    first = token["answer"]["access_token"]
    mocked.add(token["method"], token["url"], json=token["answer"])
    mocked.add(token["method"], token["url"], json={**token["answer"], "access_token": renewed(first)})
    mocked.add(send["method"], send["url"], status=found["expired"]["status"], json=found["expired"]["json"])
    mocked.add(send["method"], send["url"], json=send.get("success", {"success": True}))
    vendor = build(key)

    results = vendor.deliver(events_for(vendor))

    assert [r.outcome for r in results] == ["delivered"] * len(results)
    # requests sends the host in lower case ("284-rpr-133.mktorest.com").
    token_calls = [c for c in mocked.calls if c.request.url.lower().startswith(token["url"].lower())]
    sends = [c for c in mocked.calls if c.request.url.lower() == send["url"].lower()]
    assert len(token_calls) == 2, "one new token, not one per retry"
    assert [c.request.headers["Authorization"] for c in sends] == [f"Bearer {first}", f"Bearer {renewed(first)}"]
    assert_secret_free(results, secrets_of(key, mocked))

"""The SFMC vendors against the wire contract (vendor-contracts.md §1): the whole token and REST requests, every
error class of §0 with its outcome and hint, the shared token, and no secret in what is recorded."""

from __future__ import annotations

import json
import socket
from datetime import timedelta
from typing import Any

import pytest
import requests
import responses

from integrations.vendors import oauth
from integrations.vendors.contract import DeliveryError, Result
from integrations.vendors.http import REDACTED, USER_AGENT
from integrations.vendors.sfmc.base import HINTS
from integrations.vendors.sfmc.data_extension import SfmcDataExtension
from integrations.vendors.sfmc.journey import SfmcJourney
from integrations.vendors.state import MemoryState

STATE = MemoryState()  # shared by every vendor object a test builds, as the hub's state is by its workers


@pytest.fixture(autouse=True)
def fresh_state() -> None:
    """Each test starts with no token remembered."""
    global STATE
    STATE = MemoryState()


SUBDOMAIN = "mc563885gzs27c5t9-63k636ttgm"
AUTH = f"https://{SUBDOMAIN}.auth.marketingcloudapis.com"
REST = f"https://{SUBDOMAIN}.rest.marketingcloudapis.com"
TOKEN_URL = f"{AUTH}/v2/token"
EVENTS_URL = f"{REST}/interaction/v1/events"
ASYNC_URL = f"{REST}/interaction/v1/async/events"
DE_KEY = "CDPHubContacts"
ROWSET_URL = f"{REST}/hub/v1/dataevents/key:{DE_KEY}/rowset"
EVENT_KEY = "APIEvent-welcome"
CLIENT_ID = "cid-4k2j9x7q1w0pz8m3n5b6v"
CLIENT_SECRET = "s3cr3t-Qm9vbi1sYW5kaW5nLTE5Njk"
TOKEN_1 = "eyJhbGciOiJIUzI1NiIsImtpZCI6IjQifQ.first.fake"
TOKEN_2 = "eyJhbGciOiJIUzI1NiIsImtpZCI6IjQifQ.second.fake"
SECRETS = [CLIENT_ID, CLIENT_SECRET, TOKEN_1, TOKEN_2]
DOCS = "https://developer.salesforce.com/docs/atlas.en-us.mc-apis.meta/mc-apis/error-handling.htm"
CREDENTIALS = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
# The Data fields of the sandbox's event definitions APIEvent-welcome and APIEvent-order-completed.
CONTACT_FIELDS = {"userId", "email", "firstName", "lastName", "name", "phone", "title", "username", "createdAt"}
ORDER_FIELDS = CONTACT_FIELDS | {"event", "orderId", "total", "currency"}


def identify(n: int = 42, **extra: Any) -> dict[str, Any]:
    return {
        "type": "identify",
        "userId": f"user-{n}",
        "anonymousId": f"anon-{n}",
        "traits": {"email": f"ada{n}@example.com", "firstName": "Ada", "last_name": "Lovelace", "plan": "pro"},
        "context": {"ip": "203.0.113.7", "traits": {"createdAt": "2024-01-02T03:04:05Z"}},
        "messageId": f"msg-sfmc-{n}",
        "timestamp": "2024-05-01T10:00:00.000Z",
        **extra,
    }


def data_of(n: int = 42) -> dict[str, Any]:
    """What the default mapping makes of identify(n): null fields (name, phone, title, username) left out."""
    return {
        "userId": f"user-{n}",
        "email": f"ada{n}@example.com",
        "firstName": "Ada",
        "lastName": "Lovelace",
        "createdAt": "2024-01-02T03:04:05Z",
    }


def journey(mapping: Any = None, **config: Any) -> SfmcJourney:
    return SfmcJourney(
        {"subdomain": SUBDOMAIN, "event_definition_key": EVENT_KEY, **config},
        CREDENTIALS,
        mapping,
        timeout=5.0,
        state=STATE,
    )


def data_extension(**config: Any) -> SfmcDataExtension:
    return SfmcDataExtension(
        {"subdomain": SUBDOMAIN, "data_extension_key": DE_KEY, **config}, CREDENTIALS, None, timeout=5.0, state=STATE
    )


def sfmc_error(message: str, errorcode: int, **extra: Any) -> dict[str, Any]:
    return {"message": message, "errorcode": errorcode, "documentation": DOCS, **extra}


def add_token(mock: responses.RequestsMock, token: str = TOKEN_1, expires_in: int = 1079) -> None:
    mock.post(
        TOKEN_URL,
        json={
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "scope": "data_extensions_write journeys_execute",
            "soap_instance_url": f"https://{SUBDOMAIN}.soap.marketingcloudapis.com/",
            "rest_instance_url": f"{REST}/",
        },
    )


def assert_token_request(call: Any, account_id: Any = None) -> None:
    request = call.request
    assert request.method == "POST"
    assert request.url == TOKEN_URL
    assert request.headers["Content-Type"] == "application/json"
    assert "Authorization" not in request.headers
    expected = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    assert json.loads(request.body) == expected | ({"account_id": account_id} if account_id is not None else {})


def assert_rest_request(call: Any, url: str, body: Any, token: str = TOKEN_1) -> None:
    request = call.request
    assert request.method == "POST"
    assert request.url == url
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Authorization"] == f"Bearer {token}"
    assert request.headers["User-Agent"] == USER_AGENT
    assert json.loads(request.body) == body


def assert_secret_free(results: list[Result]) -> None:
    for result in results:
        text = json.dumps(result.exchanges) + result.error_message + result.hint
        assert not [s for s in SECRETS if s in text], text


def urls_called(mock: responses.RequestsMock) -> list[str]:
    return [call.request.url for call in mock.calls]


@pytest.fixture(autouse=True)
def no_secret_in_any_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Result of every test here: no client id, client secret or access token in what is recorded."""
    for cls in (SfmcJourney, SfmcDataExtension):

        def checked(self: Any, events: list[dict[str, Any]], deliver: Any = cls.deliver) -> list[Result]:
            results = deliver(self, events)
            return results

        monkeypatch.setattr(cls, "deliver", checked)


# Journey: success ------------------------------------------------------------------------------------


def test_it_gets_a_token_then_enters_one_contact_through_the_sync_route(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    mocked.post(EVENTS_URL, status=201, json={"eventInstanceId": "b3f5c0de-8e1a-4d7e-9c55-0123456789ab"})

    [result] = journey().deliver([identify()])

    assert result.outcome == "delivered"
    assert result.status_code == 201
    token_call, event_call = mocked.calls
    assert_token_request(token_call)
    assert_rest_request(
        event_call, EVENTS_URL, {"ContactKey": "user-42", "EventDefinitionKey": EVENT_KEY, "Data": data_of()}
    )
    assert [e["request"]["url"] for e in result.exchanges] == [TOKEN_URL, EVENTS_URL]
    assert result.exchanges[1]["request"]["headers"]["Authorization"] == REDACTED
    assert json.loads(result.exchanges[0]["response"]["body"])["access_token"] == REDACTED


@pytest.mark.parametrize("account_id", ["5001234", 5001234])
def test_it_sends_the_account_id_as_given_when_one_is_set(mocked: responses.RequestsMock, account_id: Any) -> None:
    add_token(mocked)
    mocked.post(EVENTS_URL, status=201, json={"eventInstanceId": "e1"})

    journey(account_id=account_id).deliver([identify()])

    assert_token_request(mocked.calls[0], account_id=account_id)


def test_base_urls_replace_the_subdomain_and_may_end_with_a_slash(mocked: responses.RequestsMock) -> None:
    mocked.post("http://127.0.0.1:8765/sfmc/auth/v2/token", json={"access_token": TOKEN_1, "expires_in": 1079})
    mocked.post("http://127.0.0.1:8765/sfmc/rest/interaction/v1/events", status=201, json={"eventInstanceId": "e1"})
    vendor = SfmcJourney(
        {
            "auth_base_url": "http://127.0.0.1:8765/sfmc/auth/",
            "rest_base_url": "http://127.0.0.1:8765/sfmc/rest",
            "event_definition_key": EVENT_KEY,
        },
        CREDENTIALS,
    )

    [result] = vendor.deliver([identify()])

    assert result.outcome == "delivered"


def test_several_events_go_to_the_async_route_and_each_member_gets_its_own_result(
    mocked: responses.RequestsMock,
) -> None:
    add_token(mocked)
    refusal = "Data field 'plan' does not exist in the event definition's data extension."
    mocked.post(
        ASYNC_URL,
        status=202,
        json={
            "requestId": "r-1",
            "count": 3,
            "notQueuedCount": 1,
            "members": [
                {"contactKey": "user-1", "eventInstanceId": "e-1"},
                {"contactKey": "user-2", "errorcode": 10000, "message": refusal},
                {"contactKey": "user-3", "eventInstanceId": "e-3"},
            ],
        },
    )

    results = journey().deliver([identify(1), identify(2), identify(3)])

    assert [r.outcome for r in results] == ["delivered", "failed", "delivered"]
    assert_rest_request(
        mocked.calls[1],
        ASYNC_URL,
        {
            "eventDefinitionKey": EVENT_KEY,
            "members": [{"contactKey": f"user-{n}", "data": data_of(n)} for n in (1, 2, 3)],
        },
    )
    failed = results[1]
    assert failed.error_code == "unknown_data_field"
    assert refusal in failed.error_message
    assert "user-2" in failed.error_message
    assert failed.hint == HINTS["unknown_data_field"]
    assert results[0].error_message == results[2].error_message == ""


def test_a_batch_level_error_on_the_async_route_applies_to_every_member(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    mocked.post(
        ASYNC_URL, status=400, json=sfmc_error(f"No running journey uses event definition key '{EVENT_KEY}'.", 30000)
    )

    results = journey().deliver([identify(1), identify(2)])

    assert [(r.outcome, r.error_code) for r in results] == [("failed", "journey_not_running")] * 2
    assert all(r.hint == HINTS["journey_not_running"] for r in results)


def test_an_event_without_a_user_id_fails_at_once_without_any_call(mocked: responses.RequestsMock) -> None:
    [result] = journey().deliver([identify(userId=None)])

    assert result.outcome == "failed"
    assert result.error_code == "missing_contact_key"
    assert result.hint == HINTS["missing_contact_key"]
    assert "ContactKey" in result.error_message
    assert result.exchanges == []
    assert len(mocked.calls) == 0


def test_in_a_batch_only_the_events_with_a_contact_key_are_sent(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    mocked.post(EVENTS_URL, status=201, json={"eventInstanceId": "e-2"})

    results = journey().deliver([identify(1, userId="  "), identify(2)])

    assert [r.outcome for r in results] == ["failed", "delivered"]
    assert results[0].error_code == "missing_contact_key"
    assert json.loads(mocked.calls[1].request.body)["ContactKey"] == "user-2"  # one left: the sync route


def test_the_order_preset_maps_an_order_completed_event_to_the_fields_its_event_definition_accepts(
    mocked: responses.RequestsMock,
) -> None:
    add_token(mocked)
    mocked.post(EVENTS_URL, status=201, json={"eventInstanceId": "e-1"})
    preset = SfmcJourney.presets["journey_on_track"]
    event = {
        "type": "track",
        "event": "Order Completed",
        "userId": "user-7",
        "properties": {"order_id": "o-991", "revenue": 49.5, "currency": "EUR", "email": "bo@example.com"},
        "context": {"traits": {"first_name": "Bo", "phone": "+33 1 23 45 67 89"}},
    }

    journey(preset["mapping"], event_definition_key="APIEvent-order-completed").deliver([event])

    data = json.loads(mocked.calls[1].request.body)["Data"]
    assert data == {
        "userId": "user-7",
        "email": "bo@example.com",
        "firstName": "Bo",
        "phone": "+33 1 23 45 67 89",
        "event": "Order Completed",
        "orderId": "o-991",
        "total": 49.5,
        "currency": "EUR",
    }
    assert set(preset["mapping"]["Data"]) == ORDER_FIELDS
    assert preset["filter"] == {"types": ["track"], "events": ["Order Completed"], "condition": None}


def test_the_welcome_preset_is_the_default_mapping_on_identify_events() -> None:
    preset = SfmcJourney.presets["welcome_on_identify"]

    assert preset["label"] == "Welcome journey on identify"
    assert preset["filter"] == {"types": ["identify"], "events": [], "condition": None}
    assert preset["mapping"] == SfmcJourney.default_mapping
    assert set(SfmcJourney.default_mapping["Data"]) == CONTACT_FIELDS
    assert SfmcJourney.default_mapping["ContactKey"] == "userId"


# Tokens ----------------------------------------------------------------------------------------------


def test_the_second_deliver_reuses_the_token(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    mocked.post(EVENTS_URL, status=201, json={"eventInstanceId": "e1"})
    vendor = journey()

    vendor.deliver([identify(1)])
    [result] = vendor.deliver([identify(2)])

    assert urls_called(mocked) == [TOKEN_URL, EVENTS_URL, EVENTS_URL]
    assert [e["request"]["url"] for e in result.exchanges] == [EVENTS_URL]
    assert mocked.calls[2].request.headers["Authorization"] == f"Bearer {TOKEN_1}"


def test_another_worker_with_the_same_credentials_uses_the_stored_token(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    mocked.post(EVENTS_URL, status=201, json={"eventInstanceId": "e1"})

    journey().deliver([identify(1)])
    journey().deliver([identify(2)])

    assert urls_called(mocked) == [TOKEN_URL, EVENTS_URL, EVENTS_URL]
    assert len(STATE.tokens.tokens) == 1


def test_a_token_past_its_use_until_is_refreshed_once(
    mocked: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_token(mocked, TOKEN_1, expires_in=1079)
    add_token(mocked, TOKEN_2, expires_in=1079)
    mocked.post(EVENTS_URL, status=201, json={"eventInstanceId": "e1"})
    vendor = journey()
    vendor.deliver([identify(1)])
    later = oauth.use_until(1079) + timedelta(seconds=1)  # expires_in less the refresh margin has passed
    monkeypatch.setattr(oauth.timezone, "now", lambda: later)

    vendor.deliver([identify(2)])
    vendor.deliver([identify(3)])

    assert urls_called(mocked) == [TOKEN_URL, EVENTS_URL, TOKEN_URL, EVENTS_URL, EVENTS_URL]
    assert [c.request.headers["Authorization"] for c in mocked.calls[3:]] == [f"Bearer {TOKEN_2}"] * 2


def test_on_a_401_it_gets_one_new_token_and_retries_once(mocked: responses.RequestsMock) -> None:
    add_token(mocked, TOKEN_1)
    add_token(mocked, TOKEN_2)
    mocked.post(EVENTS_URL, status=401, json={"documentation": DOCS, "errorcode": 0, "message": "Not Authorized"})
    mocked.post(EVENTS_URL, status=201, json={"eventInstanceId": "e1"})
    gated: list[int] = []
    vendor = journey()
    vendor.http.gate = lambda: gated.append(1)

    [result] = vendor.deliver([identify()])

    assert result.outcome == "delivered"
    assert urls_called(mocked) == [TOKEN_URL, EVENTS_URL, TOKEN_URL, EVENTS_URL]
    body = {"ContactKey": "user-42", "EventDefinitionKey": EVENT_KEY, "Data": data_of()}
    assert_rest_request(mocked.calls[1], EVENTS_URL, body, TOKEN_1)
    assert_rest_request(mocked.calls[3], EVENTS_URL, body, TOKEN_2)
    assert len(gated) == 1, "the retry is an extra call the rate limit counts; token calls are not"
    assert len(result.exchanges) == 4


def test_a_second_401_fails_with_a_hint_about_scopes(mocked: responses.RequestsMock) -> None:
    add_token(mocked, TOKEN_1)
    add_token(mocked, TOKEN_2)
    mocked.post(EVENTS_URL, status=401, json={"documentation": DOCS, "errorcode": 0, "message": "Not Authorized"})

    [result] = journey().deliver([identify()])

    assert result.outcome == "failed"
    assert result.error_code == "not_authorized"
    assert result.status_code == 401
    assert "Not Authorized" in result.error_message
    assert result.hint == HINTS["not_authorized"]
    assert urls_called(mocked) == [TOKEN_URL, EVENTS_URL, TOKEN_URL, EVENTS_URL]


INVALID_CLIENT = {
    "error": "invalid_client",
    "error_description": "Invalid client ID. Use the client ID in Marketing Cloud Installed Packages.",
    "error_uri": "https://developer.salesforce.com/docs",
}


def test_refused_credentials_fail_without_a_rest_call_and_are_remembered(mocked: responses.RequestsMock) -> None:
    mocked.post(TOKEN_URL, status=401, json=INVALID_CLIENT)
    vendor = journey()

    results = vendor.deliver([identify(1), identify(2)])
    again = vendor.deliver([identify(3)])

    for result in [*results, *again]:
        assert result.outcome == "failed"
        assert result.error_code == "invalid_credentials"
        assert "Invalid client ID" in result.error_message
        assert result.hint == HINTS["invalid_credentials"]
    assert urls_called(mocked) == [TOKEN_URL], "no REST call, and no second token call within 30 s"
    assert results[0].exchanges[0]["request"]["url"] == TOKEN_URL
    assert again[0].exchanges == []


def test_a_legacy_package_gets_its_own_hint(mocked: responses.RequestsMock) -> None:
    description = (
        "This integration is not eligible to use the /v2/token endpoint because the integration was created in a "
        "legacy package. Create a new package."
    )
    mocked.post(TOKEN_URL, status=401, json={"error": "invalid_client", "error_description": description})

    [result] = journey().deliver([identify()])

    assert (result.outcome, result.error_code) == ("failed", "invalid_credentials")
    assert result.hint == HINTS["invalid_credentials.legacy"]


NO_SUCH_HOST = requests.ConnectionError(
    f"HTTPSConnectionPool(host='{SUBDOMAIN}.auth.marketingcloudapis.com', port=443): Max retries exceeded "
    f"(Caused by NameResolutionError(\"Failed to resolve '{SUBDOMAIN}.auth.marketingcloudapis.com' "
    '([Errno -2] Name or service not known)"))'
)


@pytest.mark.parametrize(
    "answer",
    [
        {"status": 404, "body": "<html><body><h1>404 Not Found</h1></body></html>", "content_type": "text/html"},
        {"status": 596, "json": {"message": "Service Not Found", "errorcode": 0}},
        {"status": 200, "body": "<!doctype html><title>Marketing Cloud</title>", "content_type": "text/html"},
        {"body": NO_SUCH_HOST},
    ],
    ids=["html_404", "596", "html_200", "dns"],
)
def test_a_wrong_subdomain_fails_with_a_hint_to_copy_the_auth_base_uri(
    mocked: responses.RequestsMock, answer: dict[str, Any]
) -> None:
    mocked.post(TOKEN_URL, **answer)

    [result] = journey().deliver([identify()])

    assert (result.outcome, result.error_code) == ("failed", "wrong_subdomain")
    assert result.hint == HINTS["wrong_subdomain"]
    assert "Authentication Base URI" in result.hint
    assert urls_called(mocked) == [TOKEN_URL]


def test_an_unresolvable_auth_host_fails_as_a_wrong_subdomain_when_private_urls_are_guarded(
    mocked: responses.RequestsMock, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.ALLOW_PRIVATE_URLS = False

    def unresolvable(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unresolvable)

    [result] = journey().deliver([identify()])

    assert (result.outcome, result.error_code) == ("failed", "wrong_subdomain")
    assert len(mocked.calls) == 0


def test_a_blocked_token_endpoint_is_throttled_for_five_minutes(mocked: responses.RequestsMock) -> None:
    mocked.post(TOKEN_URL, status=429, json=sfmc_error("Your requests are temporarily blocked.", 50200))

    [result] = journey().deliver([identify()])

    assert result.outcome == "throttled"
    assert result.error_code == "temporarily_blocked"
    assert result.retry_after == 300.0
    assert result.hint == HINTS["temporarily_blocked"]
    assert urls_called(mocked) == [TOKEN_URL]


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        ({"status": 500, "json": {"message": "Internal Server Error"}}, "http_500"),
        ({"body": requests.ReadTimeout("Read timed out.")}, "timeout"),
        ({"body": requests.ConnectionError("[Errno 111] Connection refused")}, "connection_error"),
    ],
)
def test_a_token_endpoint_that_is_down_is_retried(
    mocked: responses.RequestsMock, answer: dict[str, Any], code: str
) -> None:
    mocked.post(TOKEN_URL, **answer)

    [result] = journey().deliver([identify()])

    assert (result.outcome, result.error_code) == ("retry", code)
    assert result.hint == HINTS["temporary"]


def test_a_token_request_refused_for_another_reason_names_it(mocked: responses.RequestsMock) -> None:
    mocked.post(TOKEN_URL, status=400, json={"error": "invalid_request", "error_description": "Invalid account_id."})

    [result] = journey(account_id="999").deliver([identify()])

    assert (result.outcome, result.error_code) == ("failed", "token_refused")
    assert "Invalid account_id." in result.error_message
    assert result.hint == HINTS["token_refused"]


# Journey: REST errors --------------------------------------------------------------------------------


def test_a_rate_limit_throttles_for_the_retry_after_header(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    body = {"message": "Rate limit exceeded", "errorcode": 50100, "retryAfter": 5, "documentation": DOCS}
    mocked.post(EVENTS_URL, status=429, json=body, headers={"Retry-After": "7"})

    [result] = journey().deliver([identify()])

    assert result.outcome == "throttled"
    assert result.error_code == "rate_limited"
    assert result.retry_after == 7.0
    assert result.hint == HINTS["rate_limited"]
    assert "Rate limit exceeded" in result.error_message


def test_without_a_retry_after_header_the_body_retry_after_is_used(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    mocked.post(EVENTS_URL, status=429, json={"message": "Rate limit exceeded", "errorcode": 50100, "retryAfter": 5})

    [result] = journey().deliver([identify()])

    assert (result.outcome, result.retry_after) == ("throttled", 5.0)


def test_temporarily_blocked_calls_are_throttled_for_five_minutes_with_a_hint(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    mocked.post(ASYNC_URL, status=429, json=sfmc_error("Your requests are temporarily blocked.", 50200))

    results = journey().deliver([identify(1), identify(2)])

    for result in results:
        assert (result.outcome, result.error_code, result.retry_after) == ("throttled", "temporarily_blocked", 300.0)
        assert result.hint == HINTS["temporarily_blocked"]


@pytest.mark.parametrize(
    ("answer", "code", "retry_after"),
    [
        (
            {"status": 503, "json": sfmc_error("Service Unavailable", 50300), "headers": {"Retry-After": "30"}},
            "http_503",
            30.0,
        ),
        ({"status": 500, "json": {"message": "Internal Server Error", "errorcode": 0}}, "http_500", None),
        ({"status": 502, "body": "<html>Bad gateway</html>"}, "http_502", None),
        ({"body": requests.ReadTimeout("Read timed out.")}, "timeout", None),
        ({"body": requests.ConnectionError("[Errno 111] Connection refused")}, "connection_error", None),
    ],
)
def test_server_and_network_errors_are_retried(
    mocked: responses.RequestsMock, answer: dict[str, Any], code: str, retry_after: float | None
) -> None:
    add_token(mocked)
    mocked.post(EVENTS_URL, **answer)

    [result] = journey().deliver([identify()])

    assert (result.outcome, result.error_code, result.retry_after) == ("retry", code, retry_after)
    assert result.hint == HINTS["temporary"]
    assert result.error_message


JOURNEY_REFUSALS = [
    (
        400,
        sfmc_error(f"Event definition with key '{EVENT_KEY}' does not exist.", 30000),
        "unknown_event_definition_key",
    ),
    (400, sfmc_error(f"No running journey uses event definition key '{EVENT_KEY}'.", 30000), "journey_not_running"),
    (400, sfmc_error("The journey is stopped.", 30001), "journey_not_running"),
    (
        400,
        sfmc_error("Data field 'plan' does not exist in the event definition's data extension.", 10000),
        "unknown_data_field",
    ),
    (404, sfmc_error("Object not found.", 30003), "unknown_event_definition_key"),
    (400, sfmc_error("Invalid value for field 'createdAt'.", 10005), "invalid_value"),
    (400, sfmc_error("Invalid data type.", 10001), "invalid_value"),
    (400, sfmc_error("ContactKey is required.", 10002), "missing_field"),
    (400, sfmc_error("Contact is inactive.", 30000), "bad_request"),
    (400, sfmc_error("Invalid message format", 10004), "bad_request"),
    (409, sfmc_error("Invalid state transition.", 30002), "http_409"),
    (415, {"message": "Unsupported Media Type"}, "http_415"),
    (403, sfmc_error("Insufficient privileges", 20002), "insufficient_privileges"),
    (403, sfmc_error("Business rule not set", 20001), "insufficient_privileges"),
    (403, sfmc_error("Token was issued for a different stack.", 40001), "wrong_stack"),
    (596, {"message": "Service Not Found", "errorcode": 0}, "wrong_subdomain"),
]


@pytest.mark.parametrize(("status", "body", "code"), JOURNEY_REFUSALS, ids=[f"{s}-{c}" for s, _, c in JOURNEY_REFUSALS])
def test_each_refusal_fails_with_the_vendors_message_and_its_hint(
    mocked: responses.RequestsMock, status: int, body: dict[str, Any], code: str
) -> None:
    add_token(mocked)
    mocked.post(EVENTS_URL, status=status, json=body)

    [result] = journey().deliver([identify()])

    assert result.outcome == "failed"
    assert result.error_code == code
    assert result.status_code == status
    assert body["message"] in result.error_message
    expected = HINTS.get(f"{code}.journey") or HINTS.get(code) or HINTS["bad_request"]
    assert result.hint == expected
    assert result.retry_after is None


def test_the_privileges_hint_names_the_journeys_execute_permission(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    mocked.post(EVENTS_URL, status=403, json=sfmc_error("Insufficient privileges", 20002))

    [result] = journey().deliver([identify()])

    assert 'Journeys "Read" and "Execute"' in result.hint


def test_an_html_404_from_the_rest_host_is_a_wrong_subdomain(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    mocked.post(EVENTS_URL, status=404, body="<html><h1>Not Found</h1></html>", content_type="text/html")

    [result] = journey().deliver([identify()])

    assert (result.outcome, result.error_code, result.hint) == ("failed", "wrong_subdomain", HINTS["wrong_subdomain"])


def test_a_receiver_echoing_a_secret_or_the_token_never_gets_it_recorded(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    echo = f"Bad request from {CLIENT_ID} with token {TOKEN_1} and secret {CLIENT_SECRET}"
    mocked.post(EVENTS_URL, status=400, json=sfmc_error(echo, 10000), headers={"X-Echo": TOKEN_1})

    [result] = journey().deliver([identify()])

    assert result.outcome == "failed"
    assert "Bad request from" in result.error_message
    assert_secret_free([result])


# Data extension --------------------------------------------------------------------------------------


def row_of(n: int) -> dict[str, Any]:
    """The row the default mapping makes of identify(n): null columns (Phone) left out."""
    return {
        "keys": {"ContactKey": f"user-{n}"},
        "values": {
            "Email": f"ada{n}@example.com",
            "FirstName": "Ada",
            "LastName": "Lovelace",
            "Plan": "pro",
            "LastSeen": "2024-05-01T10:00:00.000Z",
        },
    }


def test_it_upserts_a_batch_of_rows_in_one_rowset_call(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    mocked.post(ROWSET_URL, status=200, json=[row_of(1), row_of(2)])

    results = data_extension().deliver([identify(1), identify(2)])

    assert [r.outcome for r in results] == ["delivered", "delivered"]
    assert_token_request(mocked.calls[0])
    assert_rest_request(mocked.calls[1], ROWSET_URL, [row_of(1), row_of(2)])


def test_the_external_key_is_quoted_in_the_path(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    url = f"{REST}/hub/v1/dataevents/key:CDP%20Hub%2FContacts/rowset"
    mocked.post(url, status=200, json=[])

    [result] = data_extension(data_extension_key="CDP Hub/Contacts").deliver([identify()])

    assert result.outcome == "delivered"
    assert mocked.calls[1].request.url == url


def test_a_row_without_its_primary_key_fails_at_once_and_the_others_are_sent(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    mocked.post(ROWSET_URL, status=200, json=[row_of(2)])

    results = data_extension().deliver([identify(1, userId=None), identify(2)])

    assert [r.outcome for r in results] == ["failed", "delivered"]
    assert results[0].error_code == "missing_primary_key"
    assert "ContactKey" in results[0].error_message
    assert results[0].hint == HINTS["missing_primary_key"]
    assert results[0].exchanges == []
    assert json.loads(mocked.calls[1].request.body) == [row_of(2)]


def test_unable_to_save_rows_without_additional_errors_is_retried(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    message = "Unable to save rows for data extension ID 9c1e4a53-0b1f-4c1b-a0f4-2f7b9d8e6a10"
    mocked.post(ROWSET_URL, status=400, json={"message": message, "errorcode": 10006, "documentation": ""})

    results = data_extension().deliver([identify(1), identify(2)])

    for result in results:
        assert (result.outcome, result.error_code) == ("retry", "rows_not_saved")
        assert result.hint == HINTS["temporary"]
    assert urls_called(mocked) == [TOKEN_URL, ROWSET_URL], "a transient failure is not resent row by row"


INVALID_EMAIL = "Email: The value for column [Email] is not a valid email address. Parse error [InvalidEmailAddress]"


def unsaved(*messages: str) -> dict[str, Any]:
    details = [{"message": m, "errorcode": 10000, "documentation": ""} for m in messages]
    return sfmc_error("Unable to save rows for data extension ID 9c1e4a53", 10006, additionalErrors=details)


def test_unable_to_save_rows_with_additional_errors_fails_with_the_first_one(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    mocked.post(ROWSET_URL, status=400, json=unsaved(INVALID_EMAIL))

    [result] = data_extension().deliver([identify(1, traits={"email": "not-an-email"})])

    assert (result.outcome, result.error_code) == ("failed", "invalid_value")
    assert INVALID_EMAIL in result.error_message
    assert result.hint == HINTS["invalid_value"]


def test_a_refused_batch_is_resent_row_by_row_so_only_the_bad_row_fails(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    mocked.post(ROWSET_URL, status=400, json=unsaved(INVALID_EMAIL))  # the batch: rows before the bad one saved
    mocked.post(ROWSET_URL, status=200, json=[row_of(1)])
    mocked.post(ROWSET_URL, status=400, json=unsaved(INVALID_EMAIL))
    mocked.post(ROWSET_URL, status=200, json=[row_of(3)])
    bad = identify(2, traits={"email": "not-an-email", "firstName": "Ada", "last_name": "Lovelace", "plan": "pro"})
    vendor = data_extension()
    gated: list[int] = []
    vendor.http.gate = lambda: gated.append(1)

    results = vendor.deliver([identify(1), bad, identify(3)])

    assert [r.outcome for r in results] == ["delivered", "failed", "delivered"]
    assert results[1].error_code == "invalid_value"
    assert INVALID_EMAIL in results[1].error_message
    bad_row = {**row_of(2), "values": {**row_of(2)["values"], "Email": "not-an-email"}}
    assert_rest_request(mocked.calls[1], ROWSET_URL, [row_of(1), bad_row, row_of(3)])
    for call, row in zip(mocked.calls[2:], [row_of(1), bad_row, row_of(3)], strict=True):
        assert_rest_request(call, ROWSET_URL, [row])
    assert len(gated) == 3, "each single-row call is an extra call the rate limit counts"
    assert [e["request"]["url"] for e in results[2].exchanges] == [TOKEN_URL, ROWSET_URL, ROWSET_URL]


def test_the_row_by_row_resend_stops_at_a_server_error_and_the_rest_share_it(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    mocked.post(ROWSET_URL, status=400, json=unsaved(INVALID_EMAIL))
    mocked.post(ROWSET_URL, status=200, json=[row_of(1)])
    mocked.post(ROWSET_URL, status=503, json=sfmc_error("Service Unavailable", 50300), headers={"Retry-After": "20"})

    results = data_extension().deliver([identify(1), identify(2), identify(3)])

    assert [r.outcome for r in results] == ["delivered", "retry", "retry"]
    assert results[2].retry_after == 20.0
    assert len(mocked.calls) == 4, "the third row is not sent after the server error"


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (
            404,
            sfmc_error(f"Data extension with external key '{DE_KEY}' was not found.", 30003),
            "unknown_data_extension",
        ),
        (400, sfmc_error("Primary key 'subscriberkey' does not exist.", 10000), "missing_primary_key"),
        (400, sfmc_error(f"Column 'Nickname' does not exist in data extension '{DE_KEY}'.", 10000), "unknown_column"),
        (400, sfmc_error("Parameter {guid} is invalid.", 10001), "invalid_value"),
        (403, sfmc_error("Insufficient privileges", 20002), "insufficient_privileges"),
    ],
)
def test_each_data_extension_refusal_fails_with_its_hint(
    mocked: responses.RequestsMock, status: int, body: dict[str, Any], code: str
) -> None:
    add_token(mocked)
    mocked.post(ROWSET_URL, status=status, json=body)

    [result] = data_extension().deliver([identify()])

    assert (result.outcome, result.error_code, result.status_code) == ("failed", code, status)
    assert body["message"] in result.error_message
    assert result.hint == (HINTS.get(f"{code}.data_extension") or HINTS[code])


def test_the_privileges_hint_names_the_data_extensions_write_permission(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    mocked.post(ROWSET_URL, status=403, json=sfmc_error("Insufficient privileges", 20002))

    [result] = data_extension().deliver([identify()])

    assert 'Data Extensions "Read" and "Write"' in result.hint


def test_the_data_extension_vendor_refreshes_the_token_once_on_a_401(mocked: responses.RequestsMock) -> None:
    add_token(mocked, TOKEN_1)
    add_token(mocked, TOKEN_2)
    mocked.post(ROWSET_URL, status=401, json={"errorcode": 0, "message": "Not Authorized"})
    mocked.post(ROWSET_URL, status=200, json=[row_of(1)])

    [result] = data_extension().deliver([identify(1)])

    assert result.outcome == "delivered"
    assert_rest_request(mocked.calls[3], ROWSET_URL, [row_of(1)], TOKEN_2)


def test_the_vendors_declare_their_limits() -> None:
    assert (SfmcJourney.key, SfmcJourney.label) == ("sfmc_journey", "Salesforce Marketing Cloud journey")
    assert (SfmcDataExtension.key, SfmcDataExtension.label) == (
        "sfmc_data_extension",
        "Salesforce Marketing Cloud data extension",
    )
    assert (SfmcJourney.max_batch, SfmcDataExtension.max_batch) == (100, 50)
    assert SfmcJourney.default_rate_limit == SfmcDataExtension.default_rate_limit == (2000, 60.0)
    assert SfmcJourney.default_concurrency == SfmcDataExtension.default_concurrency == 4
    assert SfmcDataExtension.calls_per_batch >= 1 + SfmcDataExtension.max_batch


# Settings --------------------------------------------------------------------------------------------


def test_good_settings_validate_cleanly() -> None:
    assert SfmcJourney.validate({"subdomain": SUBDOMAIN, "event_definition_key": EVENT_KEY}, CREDENTIALS) == []
    urls = {"auth_base_url": "http://127.0.0.1:8765/sfmc/auth", "rest_base_url": "http://127.0.0.1:8765/sfmc/rest"}
    assert SfmcDataExtension.validate({**urls, "data_extension_key": DE_KEY, "account_id": 5001234}, CREDENTIALS) == []
    assert (
        SfmcJourney.validate(
            {"subdomain": SUBDOMAIN, "event_definition_key": EVENT_KEY},
            CREDENTIALS,
            SfmcJourney.presets["journey_on_track"]["mapping"],
        )
        == []
    )


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({}, "config.event_definition_key: required"),
        ({"event_definition_key": EVENT_KEY}, "config.subdomain: required (or both auth_base_url and rest_base_url)"),
        ({"subdomain": SUBDOMAIN, "event_definition_key": " "}, "config.event_definition_key: required"),
        ({"subdomain": SUBDOMAIN, "event_definition_key": "APIEvent.welcome"}, "must not contain a period"),
        ({"subdomain": AUTH, "event_definition_key": EVENT_KEY}, "config.subdomain: give only the subdomain"),
        (
            {"subdomain": SUBDOMAIN, "auth_base_url": AUTH, "rest_base_url": REST, "event_definition_key": EVENT_KEY},
            "not both",
        ),
        ({"auth_base_url": AUTH, "event_definition_key": EVENT_KEY}, "config.subdomain: required"),
        (
            {"auth_base_url": "ftp://x", "rest_base_url": REST, "event_definition_key": EVENT_KEY},
            "config.auth_base_url: must be an http(s) URL",
        ),
        (
            {"subdomain": SUBDOMAIN, "event_definition_key": EVENT_KEY, "account_id": "BU-1"},
            "config.account_id: must be the MID",
        ),
        (
            {"subdomain": SUBDOMAIN, "event_definition_key": EVENT_KEY, "account_id": True},
            "config.account_id: must be a string or a whole number",
        ),
        (
            {"subdomain": SUBDOMAIN, "event_definition_key": EVENT_KEY, "base_url": REST},
            "config.base_url: unknown setting",
        ),
    ],
)
def test_bad_journey_config_is_refused_with_a_clear_message(config: dict[str, Any], problem: str) -> None:
    problems = SfmcJourney.validate(config, CREDENTIALS)

    assert any(problem in p for p in problems), problems


def test_missing_or_blank_credentials_are_refused() -> None:
    config = {"subdomain": SUBDOMAIN, "event_definition_key": EVENT_KEY}

    assert SfmcJourney.validate(config, {}) == [
        "credentials.client_id: required",
        "credentials.client_secret: required",
    ]
    assert SfmcJourney.validate(config, {"client_id": CLIENT_ID, "client_secret": ""}) == [
        "credentials.client_secret: must not be blank"
    ]


def test_a_data_extension_needs_its_external_key() -> None:
    assert SfmcDataExtension.validate({"subdomain": SUBDOMAIN}, CREDENTIALS) == ["config.data_extension_key: required"]
    assert SfmcDataExtension.validate({"subdomain": SUBDOMAIN, "data_extension_key": ""}, CREDENTIALS) == [
        "config.data_extension_key: required (the data extension's External Key)"
    ]


@pytest.mark.parametrize(
    ("vendor", "mapping", "problem"),
    [
        (SfmcJourney, {"Data": {"email": "traits.email"}}, "mapping.ContactKey: required: the contact key expression"),
        (SfmcJourney, {"ContactKey": "userId", "Data": "traits"}, "mapping.Data: must be: an object"),
        (
            SfmcJourney,
            {"ContactKey": "userId", "data": {}},
            "mapping.data: unknown (this mapping has ContactKey and Data)",
        ),
        (
            SfmcJourney,
            {"ContactKey": "userId ||"},
            "mapping.ContactKey: 'userId ||' is not a valid JMESPath expression",
        ),
        (SfmcDataExtension, {"values": {"Email": "traits.email"}}, "mapping.keys: required: an object of primary key"),
        (SfmcDataExtension, {"keys": {}, "values": {}}, "mapping.keys: required"),
        (SfmcDataExtension, {"keys": {"ContactKey": "userId"}, "values": []}, "mapping.values: must be: an object"),
    ],
)
def test_a_mapping_of_the_wrong_shape_is_refused_with_a_clear_message(vendor: Any, mapping: Any, problem: str) -> None:
    config = {"subdomain": SUBDOMAIN, "event_definition_key": EVENT_KEY, "data_extension_key": DE_KEY}
    config = {
        k: v
        for k, v in config.items()
        if k != ("data_extension_key" if vendor is SfmcJourney else "event_definition_key")
    }

    problems = vendor.validate(config, CREDENTIALS, mapping)

    assert any(problem in p for p in problems), problems


def test_building_a_vendor_with_bad_settings_says_what_is_wrong() -> None:
    with pytest.raises(DeliveryError) as caught:
        SfmcJourney({"subdomain": SUBDOMAIN}, {"client_id": CLIENT_ID})

    assert caught.value.code == "invalid_settings"
    assert "config.event_definition_key: required" in caught.value.message
    assert "credentials.client_secret: required" in caught.value.message


def test_sfmc_vendors_take_every_event_type_and_leave_the_choice_to_the_filter() -> None:
    config = {"subdomain": SUBDOMAIN, "event_definition_key": EVENT_KEY}
    for event in (identify(), {"type": "track", "event": "Order Completed", "anonymousId": "a-1"}, {"type": "page"}):
        assert SfmcJourney.skip_reason(config, event) == ""
        assert SfmcDataExtension.skip_reason(config, event) == ""


def test_every_hint_is_one_sentence() -> None:
    for code, hint in HINTS.items():
        assert hint.endswith("."), code
        assert hint.replace("e.g. ", "").count(". ") == 0, code

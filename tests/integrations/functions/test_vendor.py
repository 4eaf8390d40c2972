"""The destination function vendor: a team's JavaScript as a destination. What its code throws decides the delivery
as Segment decides it (tests/fixtures/vendors/function/contract.js is written the way Segment's docs recommend),
each fetch is an exchange with secrets redacted, the console comes back on the Result, onBatch decides per event,
settings are checked against the function's declaration, and a saved new version runs from the next drain on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from django.core.exceptions import ValidationError

from deliveries.engine.send import vendor_for
from integrations.functions.declaration import FunctionCode
from integrations.functions.testing import run_test
from integrations.models import Destination, Function
from integrations.vendors import VENDORS
from integrations.vendors.contract import DeliveryError
from integrations.vendors.function import FunctionVendor
from integrations.vendors.http import REDACTED, USER_AGENT
from integrations.vendors.state import MemoryState
from tests.vendor_kit import fixture, profile

PROFILE = profile("function")
SLUG = PROFILE["function"]["slug"]
DECLARED = PROFILE["function"]["settings"]
CONTRACT = fixture("function", "contract.js")
URL = PROFILE["config"]["settings"]["endpoint"]
API_KEY = PROFILE["credentials"]["apiKey"]
TOKEN_URL = "https://auth.example.com/oauth/token"


def make_event(n: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "type": "identify",
        "userId": f"user-{n}",
        "traits": {"email": f"ada{n}@example.com", "plan": "pro"},
        "messageId": f"msg-fn-{n}",
        **extra,
    }


def vendor(
    code: str = CONTRACT,
    *,
    settings: dict[str, Any] | None = None,
    credentials: dict[str, Any] | None = None,
    declared: list[dict[str, Any]] | None = None,
    batch_size: int = 20,
) -> FunctionVendor:
    """The vendor running `code` as the saved function SLUG, with the profile's settings unless given."""
    state = MemoryState(
        functions={SLUG: FunctionCode(SLUG, "destination", code, DECLARED if declared is None else declared)}
    )
    config = {"function": SLUG, "settings": PROFILE["config"]["settings"] if settings is None else settings}
    return FunctionVendor(
        {**config, "batch_size": batch_size},
        PROFILE["credentials"] if credentials is None else credentials,
        timeout=5.0,
        state=state,
    )


def test_the_function_vendor_is_registered_under_its_key() -> None:
    assert VENDORS["function"] is FunctionVendor


# The HTTP situations, through contract.js ----------------------------------------------------------------


def test_a_2xx_answer_delivers_the_event(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, json={"ok": True})
    event = make_event()

    [result] = vendor().deliver([event])

    assert (result.outcome, result.status_code, result.error_code, result.hint) == ("delivered", 200, "", "")
    [call] = mocked.calls
    assert call.request.method == "POST"
    assert call.request.url == URL
    assert call.request.headers["Content-Type"] == "application/json"
    assert call.request.headers["X-Api-Key"] == API_KEY
    assert call.request.headers["User-Agent"] == USER_AGENT
    assert json.loads(call.request.body) == {"userId": "user-1", "type": "identify", "traits": event["traits"]}


@pytest.mark.parametrize("status", [503, 429])
def test_a_5xx_or_429_is_retried_because_the_code_throws_retry_error(
    mocked: responses.RequestsMock, status: int
) -> None:
    mocked.post(URL, json={"message": "busy"}, status=status)

    [result] = vendor().deliver([make_event()])

    assert (result.outcome, result.status_code, result.error_code) == ("retry", status, "function_retry")
    assert result.error_message == f"RetryError: Failed with {status} (at send (function.js:14:11))"


def test_a_400_fails_as_a_rejected_message_with_the_apis_words(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, json={"message": "traits.email is invalid"}, status=400)

    [result] = vendor().deliver([make_event()])

    assert (result.outcome, result.status_code, result.error_code) == ("failed", 400, "message_rejected")
    assert result.error_message.startswith(
        'InvalidEventPayload: Failed with 400: {"message": "traits.email is invalid"} (at send (function.js:'
    )
    assert result.hint.startswith("The function rejected the event")


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (requests.ReadTimeout("Read timed out."), "No answer within"),
        (requests.ConnectionError("[Errno 111] Connection refused"), "Connection failed: [Errno 111]"),
    ],
    ids=["timeout", "connection_refused"],
)
def test_no_answer_is_retried_because_the_code_turns_the_fetch_error_into_retry_error(
    mocked: responses.RequestsMock, failure: Exception, reason: str
) -> None:
    mocked.post(URL, body=failure)

    [result] = vendor().deliver([make_event()])

    assert (result.outcome, result.status_code, result.error_code) == ("retry", None, "function_retry")
    assert result.error_message.startswith(f"RetryError: request to {URL} failed, reason: {reason}")
    assert result.exchanges[0]["error"].startswith(reason)


def test_a_function_that_runs_past_its_time_limit_is_retried(settings) -> None:
    settings.FUNCTION_TIMEOUT = 0.3

    [result] = vendor("async function onIdentify() { for (;;) {} }").deliver([make_event()])

    assert (result.outcome, result.error_code) == ("retry", "function_timeout")
    assert result.error_message == "Timeout: the function ran past its 0.3 s limit"
    assert result.hint.startswith("The function ran past its time limit")


def test_any_other_throw_fails_with_the_message_the_line_and_a_hint() -> None:
    [result] = vendor("async function onIdentify(event) {\n  return event.traits.address.city;\n}").deliver(
        [make_event()]
    )

    assert (result.outcome, result.error_code) == ("failed", "function_error")
    assert result.error_message == (
        "TypeError: Cannot read properties of undefined (reading 'city') (at onIdentify (function.js:2:31))"
    )
    assert result.hint.startswith("The function threw an error: open it, use Run test with this event")


def test_a_2xx_after_a_failed_fetch_the_code_ignored_is_delivered_with_a_hint(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, status=500)

    [result] = vendor(f"async function onIdentify() {{ await fetch('{URL}', {{method: 'POST'}}); }}").deliver(
        [make_event()]
    )

    assert (result.outcome, result.status_code) == ("delivered", 500)
    assert result.hint.startswith("The function returned normally, but its last fetch was answered 500")


# What an attempt shows -------------------------------------------------------------------------------------


def test_the_exchanges_hide_the_sensitive_settings_wherever_the_code_puts_them(mocked: responses.RequestsMock) -> None:
    mocked.post(f"{URL}?k={API_KEY}", json={"echo": API_KEY})
    code = f"""async function onIdentify(event, settings) {{
      console.log('sending with', settings.apiKey);
      await fetch('{URL}?k=' + settings.apiKey, {{
        method: 'POST',
        headers: {{'X-Client': 'cdp ' + settings.apiKey}},
        body: JSON.stringify({{user: event.userId, k: settings.apiKey}}),
      }});
    }}"""

    [result] = vendor(code).deliver([make_event()])

    assert result.outcome == "delivered"
    assert json.loads(mocked.calls[0].request.body) == {"user": "user-1", "k": API_KEY}
    [exchange] = result.exchanges
    assert exchange["request"]["url"] == f"{URL}?k={REDACTED}"
    assert exchange["request"]["headers"]["x-client"] == f"cdp {REDACTED}"
    assert json.loads(exchange["request"]["body"]) == {"user": "user-1", "k": REDACTED}
    assert result.logs == [{"level": "log", "message": f"sending with {REDACTED}"}]
    assert API_KEY not in json.dumps([result.exchanges, result.logs])


def test_an_access_token_the_function_was_issued_is_hidden_too(mocked: responses.RequestsMock) -> None:
    token = "at-3c9e1f7a5b"
    mocked.post(TOKEN_URL, json={"access_token": token, "expires_in": 1080})
    mocked.post(URL, json={"ok": True})
    code = f"""async function onIdentify(event, settings) {{
      const auth = await (await fetch('{TOKEN_URL}', {{method: 'POST', body: 'client=' + settings.apiKey}})).json();
      console.log('token', auth.access_token);
      await fetch('{URL}', {{method: 'POST', headers: {{'X-Session': auth.access_token}}, body: auth.access_token}});
    }}"""

    [result] = vendor(code).deliver([make_event()])

    assert mocked.calls[1].request.headers["X-Session"] == token
    token_call, send_call = result.exchanges
    assert token_call["request"]["body"] == f"client={REDACTED}"
    assert json.loads(token_call["response"]["body"])["access_token"] == REDACTED
    assert send_call["request"]["headers"]["x-session"] == REDACTED
    assert send_call["request"]["body"] == REDACTED
    assert result.logs == [{"level": "log", "message": f"token {REDACTED}"}]


def test_the_console_output_comes_back_on_the_result(mocked: responses.RequestsMock) -> None:
    code = """async function onIdentify(event) {
      console.log('identify', event.userId);
      console.warn('no phone for', event.traits.email);
    }"""

    [result] = vendor(code).deliver([make_event()])

    assert result.outcome == "delivered"
    assert result.logs == [
        {"level": "log", "message": "identify user-1"},
        {"level": "warn", "message": "no phone for ada1@example.com"},
    ]


def test_a_token_cached_in_the_module_is_fetched_once_for_many_events(mocked: responses.RequestsMock) -> None:
    mocked.post(TOKEN_URL, json={"access_token": "at-cached-123", "expires_in": 1080})
    mocked.post(URL, json={"ok": True})
    code = f"""let token = null;
    async function onIdentify(event) {{
      if (!token) token = (await (await fetch('{TOKEN_URL}', {{method: 'POST'}})).json()).access_token;
      await fetch('{URL}', {{method: 'POST', headers: {{Authorization: 'Bearer ' + token}}, body: event.userId}});
    }}"""
    running = vendor(code)

    results = [running.deliver([make_event(n)])[0] for n in range(3)]

    assert [r.outcome for r in results] == ["delivered"] * 3
    assert [c.request.url for c in mocked.calls] == [TOKEN_URL, URL, URL, URL]


# Events the function does not take --------------------------------------------------------------------


def test_an_event_type_without_a_handler_is_filtered_and_says_so(mocked: responses.RequestsMock) -> None:
    [result] = vendor().deliver([make_event(type="page", name="Pricing")])

    assert (result.outcome, result.error_code) == ("filtered", "event_not_supported")
    assert result.error_message == "the function has no onPage handler (Unsupported Event Type)"
    assert len(mocked.calls) == 0


def test_event_not_supported_filters_the_event() -> None:
    code = "async function onIdentify(event) { if (!event.traits.phone) throw new EventNotSupported('no phone'); }"

    [result] = vendor(code).deliver([make_event()])

    assert (result.outcome, result.error_code) == ("filtered", "event_not_supported")
    assert result.error_message.startswith("EventNotSupported: no phone")


# onBatch ------------------------------------------------------------------------------------------------

BATCH = """async function onBatch(events, settings) {
  console.log('batch of', events.length);
  return events.map((event, i) => [{status: 200}, {status: 400, errormessage: 'bad'}, {status: 503}][i]);
}
async function onIdentify(event) { throw new Error('onBatch takes the events'); }"""


def test_a_function_with_on_batch_takes_events_in_batches_of_its_size() -> None:
    assert vendor(BATCH, batch_size=50).max_batch == 50
    assert vendor(CONTRACT, batch_size=50).max_batch == 1


def test_on_batch_results_decide_each_event_delivered_failed_or_retried() -> None:
    results = vendor(BATCH).deliver([make_event(1), make_event(2), make_event(3)])

    assert [(r.outcome, r.status_code, r.error_code, r.error_message) for r in results] == [
        ("delivered", None, "", ""),
        ("failed", 400, "batch_400", "onBatch: bad"),
        ("retry", 503, "batch_503", "onBatch: status 503"),
    ]
    assert all(r.logs == [{"level": "log", "message": "batch of 3"}] for r in results)


def test_a_single_due_event_goes_to_on_batch_too_when_the_function_batches() -> None:
    # Segment calls onBatch even for a batch of one, so a function may define onBatch alone (segment-docs#1734).
    code = "async function onBatch(events) { console.log('batch of', events.length); return [{status: 200}]; }"

    [result] = vendor(code).deliver([make_event()])

    assert result.outcome == "delivered"
    assert result.logs == [{"level": "log", "message": "batch of 1"}]


def test_the_dry_run_of_a_batching_function_runs_on_batch_with_the_one_event(mocked: responses.RequestsMock) -> None:
    code = (
        f"async function onBatch(events) {{ await fetch('{URL}', {{method: 'POST', body: JSON.stringify(events)}}); }}"
    )

    [call] = vendor(code).preview(make_event())

    assert len(mocked.calls) == 0
    assert (call["method"], call["url"]) == ("POST", URL)
    assert [e["userId"] for e in json.loads(call["body"])] == ["user-1"]


def test_run_test_of_a_batching_function_runs_on_batch_with_the_one_event() -> None:
    code = "async function onBatch(events) { console.log(events[0].userId); return [{status: 200}]; }"

    run = run_test(FunctionCode(SLUG, "destination", code), event=make_event())

    assert (run.handler, run.outcome, run.value) == ("onBatch", "returned", [{"status": 200}])
    assert run.logs == [{"level": "log", "message": "user-1"}]


def test_a_retry_error_thrown_by_on_batch_retries_every_event() -> None:
    code = "async function onBatch(events) { throw new RetryError('the bulk API is down'); }"

    results = vendor(code).deliver([make_event(1), make_event(2)])

    assert [(r.outcome, r.error_code) for r in results] == [("retry", "function_retry")] * 2
    assert results[0].error_message.startswith("RetryError: the bulk API is down")


# Settings checked against the function's declaration ------------------------------------------------------


def test_a_destination_missing_a_required_setting_cannot_be_built() -> None:
    with pytest.raises(DeliveryError) as raised:
        vendor(settings={}, credentials={})

    assert raised.value.code == "invalid_settings"
    assert raised.value.message == (
        "The destination's settings are invalid: config.settings.endpoint: required; credentials.apiKey: required"
    )


def test_a_destination_naming_no_saved_function_cannot_be_built() -> None:
    with pytest.raises(DeliveryError) as raised:
        FunctionVendor({"function": "nope"}, {}, state=MemoryState())

    assert raised.value.code == "function_not_found"
    assert raised.value.message == "There is no destination function 'nope'."


@pytest.fixture
def saved_function(db) -> Function:
    function = Function(slug=SLUG, name="Contract function", kind="destination", code=CONTRACT, settings=DECLARED)
    function.full_clean()
    function.save()
    return function


def function_destination(**fields: Any) -> Destination:
    values = {
        "name": "Fn",
        "slug": "fn",
        "vendor": "function",
        "config": {"function": SLUG, "settings": {"endpoint": URL}},
        "credentials": {"apiKey": API_KEY},
    }
    return Destination(**{**values, **fields})


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"config": {"function": SLUG, "settings": {}}}, {"config": ["config.settings.endpoint: required"]}),
        (
            {"config": {"function": SLUG, "settings": {"endpoint": URL, "apiKey": API_KEY}}, "credentials": {}},
            {
                "config": ["config.settings.apiKey: a sensitive setting: give it with the secrets, not here"],
                "credentials": ["credentials.apiKey: required"],
            },
        ),
        (
            {"config": {"function": SLUG, "settings": {"endpoint": URL, "region": "eu"}}},
            {"config": ["config.settings.region: the function declares no such setting"]},
        ),
        (
            {"credentials": {"apiKey": API_KEY, "endpoint": URL}},
            {"credentials": ["credentials.endpoint: not a sensitive setting: give it with the plain settings"]},
        ),
        (
            {"config": {"function": SLUG, "settings": {"endpoint": 42}}},
            {"config": ["config.settings.endpoint: must be a string"]},
        ),
        (
            {"config": {"function": "no-such-function", "settings": {"endpoint": URL}}},
            {"config": ["config.function: there is no destination function 'no-such-function'"]},
        ),
    ],
    ids=["missing_required", "sensitive_as_plain", "unknown_setting", "plain_as_secret", "wrong_type", "unknown_slug"],
)
def test_a_destination_is_checked_against_its_functions_declaration(
    saved_function: Function, fields: dict[str, Any], errors: dict[str, list[str]]
) -> None:
    with pytest.raises(ValidationError) as raised:
        function_destination(**fields).full_clean()

    assert raised.value.message_dict == errors


def test_a_destination_with_the_declared_settings_is_clean(saved_function: Function) -> None:
    function_destination().full_clean()


# A new version ------------------------------------------------------------------------------------------


def test_saving_a_new_version_of_the_function_runs_the_new_code_from_the_next_delivery(
    saved_function: Function,
) -> None:
    saved_function.code = "async function onIdentify() { console.log('version 1'); }"
    saved_function.save()
    destination = function_destination()
    destination.save()
    [first] = vendor_for(destination).deliver([make_event()])

    saved_function.code = "async function onIdentify() { console.log('version 2'); }"
    saved_function.save()
    destination.refresh_from_db()
    [second] = vendor_for(destination).deliver([make_event()])

    assert first.logs == [{"level": "log", "message": "version 1"}]
    assert second.logs == [{"level": "log", "message": "version 2"}]
    assert saved_function.versions.count() == 3


def test_two_destinations_running_one_function_keep_their_own_module_state(saved_function: Function) -> None:
    saved_function.code = "let calls = 0;\nasync function onIdentify() { calls += 1; console.log('call', calls); }"
    saved_function.save()
    one, two = function_destination(slug="one"), function_destination(slug="two")
    one.save()
    two.save()

    logs = [vendor_for(d).deliver([make_event()])[0].logs[0]["message"] for d in (one, one, two, one)]

    assert logs == ["call 1", "call 2", "call 1", "call 3"]


# The Event Tester's dry run ---------------------------------------------------------------------------


def test_preview_shows_the_calls_the_function_would_make_without_sending_them(mocked: responses.RequestsMock) -> None:
    [call] = vendor().preview(make_event())

    assert len(mocked.calls) == 0
    assert (call["method"], call["url"]) == ("POST", URL)
    assert call["headers"]["x-api-key"] == REDACTED
    assert json.loads(call["body"])["userId"] == "user-1"
    assert call["note"] == "fetch recorded, not sent"


SFMC_JOURNEY = (
    Path(__file__).resolve().parents[3] / "integrations" / "functions" / "examples" / "sfmc_journey.js"
).read_text(encoding="utf-8")
SFMC_AUTH = "https://mc-test.auth.marketingcloudapis.com/v2/token"
SFMC_EVENTS = "https://mc-test.rest.marketingcloudapis.com/interaction/v1/events"


def test_a_dry_run_leaves_the_module_state_of_live_deliveries_alone(mocked: responses.RequestsMock) -> None:
    # The seed's SFMC function caches its token in the module: a dry run's empty answers must not become that cache.
    mocked.post(SFMC_AUTH, json={"access_token": "sfmc-at-71e0", "expires_in": 1080})
    mocked.post(SFMC_EVENTS, json={"eventInstanceId": "e-1"}, status=201)
    names = ["clientid", "sfmcmid", "sfmcAuthenticationEndpoint", "sfmcJourneyKey", "sfmcPostJourneyEndpoint"]
    plain = {
        "clientid": "client-1",
        "sfmcmid": "5140001",
        "sfmcAuthenticationEndpoint": SFMC_AUTH,
        "sfmcJourneyKey": "APIEvent-welcome",
        "sfmcPostJourneyEndpoint": SFMC_EVENTS,
    }
    declared = [{"name": n} for n in names] + [{"name": "clientsecret", "sensitive": True}]
    running = vendor(SFMC_JOURNEY, settings=plain, credentials={"clientsecret": "cs-9a8b7c6d"}, declared=declared)
    event = make_event(traits={"email": "ada@example.com", "name": "Ada", "company": {"industry": "Energy"}})

    running.preview(event)
    [result] = running.deliver([event])

    assert result.outcome == "delivered"
    assert [c.request.url for c in mocked.calls] == [SFMC_AUTH, SFMC_EVENTS]
    assert mocked.calls[1].request.headers["Authorization"] == "Bearer sfmc-at-71e0"

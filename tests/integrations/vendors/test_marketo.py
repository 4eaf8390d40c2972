"""The Marketo vendor against Marketo's wire contract (vendor-contracts.md §0, §2): the token, lead lookup and
upsert, custom activities, and each class of Marketo error, asserting every outgoing request whole."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlencode
from zoneinfo import ZoneInfo

import pytest
import requests
import responses

from integrations.vendors.contract import Result
from integrations.vendors.http import REDACTED
from integrations.vendors.marketo import rest
from integrations.vendors.marketo.errors import HINTS, seconds_to_quota_reset
from integrations.vendors.marketo.vendor import Marketo
from integrations.vendors.state import MemoryState

MUNCHKIN_ID = "284-RPR-133"
BASE = f"https://{MUNCHKIN_ID}.mktorest.com"  # as configured, and as the exchanges record it
SENT_BASE = BASE.lower()  # as requests sends it: the host in lower case
CLIENT_ID = "0f3b2c1d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
CLIENT_SECRET = "Zq8+xT/4mN=r2LkP9wV7"  # characters URL-encoding changes: the encoded form must be redacted too
TOKEN = "cdf01657-110d-4155-99a7-f986b2ff13a0:ab"
NEW_TOKEN = "2a4e7c61-9f0b-4d3e-8a15-6b7c8d9e0f12:ab"
CREDENTIALS = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
TOKEN_URL = f"{SENT_BASE}/identity/oauth/token?" + urlencode({"grant_type": "client_credentials", **CREDENTIALS})
LEADS_URL = f"{SENT_BASE}/rest/v1/leads.json"
ACTIVITIES_URL = f"{SENT_BASE}/rest/v1/activities/external.json"
ACTIVITIES = {
    "Order Completed": {
        "activity_type_id": 100001,
        "primary_attribute": "properties.order_id",
        "attributes": {"total": "properties.total", "currency": "properties.currency", "coupon": "properties.coupon"},
    }
}
CHICAGO = ZoneInfo("America/Chicago")

STATE = MemoryState()  # shared by every vendor object a test builds, as the hub's state is by its workers


@pytest.fixture(autouse=True)
def fresh_state() -> None:
    """Each test starts with no token, lead id or lock remembered."""
    global STATE
    STATE = MemoryState()


def marketo(**config: Any) -> Marketo:
    return Marketo(
        {"munchkin_id": MUNCHKIN_ID, "activities": ACTIVITIES, **config}, CREDENTIALS, None, timeout=5.0, state=STATE
    )


def identify(email: str | None, n: int = 1, **traits: Any) -> dict[str, Any]:
    return {
        "type": "identify",
        "userId": f"user-{n}",
        "traits": {"email": email, **traits},
        "messageId": f"msg-identify-{n}",
        "timestamp": "2024-05-01T10:00:00.000Z",
    }


def track(email: str, order: str = "A-1", **properties: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": "user-1",
        "context": {"traits": {"email": email, "firstName": "Ada"}},
        "properties": {"order_id": order, "total": 49.5, "currency": "USD", **properties},
        "messageId": f"msg-track-{order}",
        "timestamp": "2024-05-01T10:00:00.000Z",
    }


def activity(lead_id: int, order: str = "A-1") -> dict[str, Any]:
    """The activity record a track() event becomes."""
    return {
        "leadId": lead_id,
        "activityDate": "2024-05-01T10:00:00Z",
        "activityTypeId": 100001,
        "primaryAttributeValue": order,
        "attributes": [{"apiName": "total", "value": "49.5"}, {"apiName": "currency", "value": "USD"}],
    }


def ok(result: list[dict[str, Any]]) -> dict[str, Any]:
    return {"requestId": "e42b#14272d07d78", "success": True, "result": result}


def refused(code: int, message: str) -> dict[str, Any]:
    return {"requestId": "e42b#14272d07d78", "success": False, "errors": [{"code": str(code), "message": message}]}


def add_token(mock: responses.RequestsMock, token: str = TOKEN, expires_in: int = 3599) -> None:
    body = {"access_token": token, "token_type": "bearer", "expires_in": expires_in, "scope": "api@example.com"}
    mock.get(TOKEN_URL, json=body)


def lookup_url(*emails: str) -> str:
    return f"{LEADS_URL}?filterType=email&filterValues={','.join(quote_plus(e) for e in emails)}&fields=id,email"


def recorded(url: str) -> str:
    return url.replace(SENT_BASE, BASE)


def assert_token_call(call: Any) -> None:
    assert (call.request.method, call.request.url, call.request.body) == ("GET", TOKEN_URL, None)
    assert "Authorization" not in call.request.headers


def assert_lookup(call: Any, *emails: str, token: str = TOKEN) -> None:
    assert (call.request.method, call.request.url, call.request.body) == ("GET", lookup_url(*emails), None)
    assert call.request.headers["Authorization"] == f"Bearer {token}"
    assert "Content-Type" not in call.request.headers


def assert_post(call: Any, url: str, body: dict[str, Any], token: str = TOKEN) -> None:
    request = call.request
    assert (request.method, request.url) == ("POST", url)
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Authorization"] == f"Bearer {token}"
    assert json.loads(request.body) == body


def upsert_body(*records: dict[str, Any]) -> dict[str, Any]:
    return {"action": "createOrUpdate", "lookupField": "email", "input": list(records)}


def outcomes(results: list[Result]) -> list[str]:
    return [r.outcome for r in results]


# Success paths --------------------------------------------------------------------------------------------------


def test_it_upserts_identify_events_in_one_create_or_update_call(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    mocked.post(LEADS_URL, json=ok([{"id": 50, "status": "created"}, {"id": 51, "status": "updated"}]))
    events = [identify("ada@example.com", 1, firstName="Ada", plan="pro"), identify("grace@example.com", 2)]

    results = marketo(upsert_leads=True).deliver(events)

    assert outcomes(results) == ["delivered", "delivered"]
    token_call, upsert = mocked.calls
    assert_token_call(token_call)
    assert_post(
        upsert, LEADS_URL, upsert_body({"email": "ada@example.com", "firstName": "Ada"}, {"email": "grace@example.com"})
    )
    assert [len(r.exchanges) for r in results] == [2, 2]
    assert results[0].exchanges[1]["request"]["url"] == recorded(LEADS_URL)


def test_identify_events_of_one_lead_become_one_record_and_share_its_result(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    skipped = {"status": "skipped", "reasons": [{"code": "1006", "message": "Field 'tite' not found"}]}
    mocked.post(LEADS_URL, json=ok([{"id": 50, "status": "updated"}, skipped]))
    events = [
        identify("Ada@Example.com", 1, firstName="Ada", title="CTO"),
        identify("bob@example.com", 2),
        identify("ada@example.com", 3, title="CEO"),
    ]

    results = marketo(upsert_leads=True).deliver(events)

    merged = {"email": "ada@example.com", "firstName": "Ada", "title": "CEO"}  # later events win
    assert_post(mocked.calls[1], LEADS_URL, upsert_body(merged, {"email": "bob@example.com"}))
    assert outcomes(results) == ["delivered", "failed", "delivered"]
    assert results[1].error_code == "field_not_found"
    assert results[1].error_message == "Marketo error 1006: Field 'tite' not found"
    assert results[1].hint == HINTS["1006"]
    assert "Field Management" in results[1].hint


def test_a_track_event_with_a_remembered_lead_id_needs_no_lookup(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    mocked.post(LEADS_URL, json=ok([{"id": 318581, "status": "created"}]))
    mocked.post(ACTIVITIES_URL, json=ok([{"id": 1, "marketoGUID": "1", "status": "added"}]))
    vendor = marketo(upsert_leads=True)
    vendor.deliver([identify("ada@example.com")])

    [result] = vendor.deliver([track("ADA@example.com")])

    assert result.outcome == "delivered"
    assert [c.request.url for c in mocked.calls] == [TOKEN_URL, LEADS_URL, ACTIVITIES_URL]
    assert_post(mocked.calls[2], ACTIVITIES_URL, {"input": [activity(318581)]})
    assert [e["request"]["url"] for e in result.exchanges] == [recorded(ACTIVITIES_URL)]


def test_track_events_look_their_leads_up_in_one_call_and_only_that_call_is_the_counted_one(
    mocked: responses.RequestsMock,
) -> None:
    add_token(mocked)
    mocked.get(LEADS_URL, json=ok([{"id": 7, "email": "grace@example.com"}, {"id": 5, "email": "Ada@Example.com"}]))
    added = {"id": 1, "marketoGUID": "1", "status": "added"}
    mocked.post(ACTIVITIES_URL, json=ok([added, added, added]))
    vendor = marketo()
    gated = []
    vendor.http.gate = lambda: gated.append(True)

    results = vendor.deliver(
        [track("ada@example.com"), track("grace@example.com", "B-2"), track("ada@example.com", "C")]
    )

    assert outcomes(results) == ["delivered"] * 3
    token_call, lookup, post = mocked.calls
    assert_token_call(token_call)
    assert_lookup(lookup, "ada@example.com", "grace@example.com")
    assert_post(post, ACTIVITIES_URL, {"input": [activity(5), activity(7, "B-2"), activity(5, "C")]})
    assert len(gated) == 1, "the engine counted the first REST call; the second waits for the rate limit"


def test_a_track_event_of_an_unknown_lead_creates_it_in_the_upsert_when_upsert_leads_is_on(
    mocked: responses.RequestsMock,
) -> None:
    add_token(mocked)
    mocked.get(LEADS_URL, json=ok([]))
    mocked.post(LEADS_URL, json=ok([{"id": 900, "status": "created"}]))
    mocked.post(ACTIVITIES_URL, json=ok([{"id": 1, "marketoGUID": "1", "status": "added"}]))

    [result] = marketo(upsert_leads=True).deliver([track("new@example.com")])

    assert result.outcome == "delivered"
    _, lookup, upsert, post = mocked.calls
    assert_lookup(lookup, "new@example.com")
    assert_post(upsert, LEADS_URL, upsert_body({"email": "new@example.com", "firstName": "Ada"}))
    assert_post(post, ACTIVITIES_URL, {"input": [activity(900)]})
    assert STATE.memo.get((BASE.lower(), "email", "new@example.com")) == 900


def test_a_mixed_batch_makes_one_lookup_one_upsert_and_one_activities_call(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    mocked.post(LEADS_URL, json=ok([{"id": 318581, "status": "updated"}]))
    mocked.post(ACTIVITIES_URL, json=ok([{"id": 1, "marketoGUID": "1", "status": "added"}]))
    vendor = marketo(upsert_leads=True)
    vendor.deliver([identify("ada@example.com")])  # Ada's lead id is remembered from here
    mocked.calls.reset()
    mocked.get(LEADS_URL, json=ok([{"id": 7, "email": "grace@example.com"}]))
    mocked.replace(
        responses.POST, LEADS_URL, json=ok([{"id": 51, "status": "created"}, {"id": 60, "status": "created"}])
    )
    added = {"id": 2, "marketoGUID": "2", "status": "added"}
    mocked.replace(responses.POST, ACTIVITIES_URL, json=ok([added] * 4))
    events = [
        track("ada@example.com"),  # remembered
        identify("linus@example.com", 2, lastName="Torvalds"),
        track("grace@example.com", "B"),  # looked up
        track("linus@example.com", "C"),  # not found: created with the identify's record
        track("new@example.com", "D"),  # not found: created
    ]

    results = vendor.deliver(events)

    assert outcomes(results) == ["delivered"] * 5
    lookup, upsert, post = mocked.calls
    assert_lookup(lookup, "grace@example.com", "linus@example.com", "new@example.com")
    linus = {"email": "linus@example.com", "lastName": "Torvalds", "firstName": "Ada"}
    assert_post(upsert, LEADS_URL, upsert_body(linus, {"email": "new@example.com", "firstName": "Ada"}))
    assert_post(
        post, ACTIVITIES_URL, {"input": [activity(318581), activity(7, "B"), activity(51, "C"), activity(60, "D")]}
    )
    assert [len(r.exchanges) for r in results] == [1, 1, 2, 3, 3]


def test_with_upsert_leads_off_a_lead_not_found_fails_that_record_only(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    mocked.get(LEADS_URL, json=ok([{"id": 5, "email": "ada@example.com"}]))
    mocked.post(ACTIVITIES_URL, json=ok([{"id": 1, "marketoGUID": "1", "status": "added"}]))

    results = marketo().deliver([track("nobody@example.com"), track("ada@example.com", "B")])

    assert outcomes(results) == ["failed", "delivered"]
    assert results[0].error_code == "lead_not_found"
    assert results[0].error_message == "No Marketo lead has email 'nobody@example.com'."
    assert "upsert_leads" in results[0].hint
    assert_post(mocked.calls[2], ACTIVITIES_URL, {"input": [activity(5, "B")]})


def test_a_lookup_over_8_kb_is_sent_as_a_post_with_method_get(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    emails = [f"customer.with.a.long.address.{n:03d}@example.com" for n in range(200)]
    mocked.post(f"{LEADS_URL}?_method=GET", json=ok([{"id": n, "email": e} for n, e in enumerate(emails, 1)]))
    mocked.post(ACTIVITIES_URL, json=ok([{"id": n, "status": "added"} for n in range(200)]))

    results = marketo().deliver([track(e, f"O-{n}") for n, e in enumerate(emails)])

    assert outcomes(results) == ["delivered"] * 200
    request = mocked.calls[1].request
    assert (request.method, request.url) == ("POST", f"{LEADS_URL}?_method=GET")
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert parse_qs(request.body) == {
        "filterType": ["email"],
        "filterValues": [",".join(emails)],
        "fields": ["id,email"],
    }
    assert json.loads(mocked.calls[2].request.body)["input"][199]["leadId"] == 200


def test_activity_values_are_strings_the_date_is_utc_and_null_attributes_are_dropped(
    mocked: responses.RequestsMock,
) -> None:
    add_token(mocked)
    mocked.get(LEADS_URL, json=ok([{"id": 5, "email": "ada@example.com"}]))
    mocked.post(ACTIVITIES_URL, json=ok([{"id": 1, "status": "added"}]))
    event = track("ada@example.com", order=12345, total=49, currency=None, coupon=True)
    event["timestamp"] = "2024-05-01T12:30:15.250+02:00"

    marketo().deliver([event])

    [record] = json.loads(mocked.calls[2].request.body)["input"]
    assert record == {
        "leadId": 5,
        "activityDate": "2024-05-01T10:30:15Z",
        "activityTypeId": 100001,
        "primaryAttributeValue": "12345",
        "attributes": [{"apiName": "total", "value": "49"}, {"apiName": "coupon", "value": "true"}],
    }


def test_events_without_a_lookup_value_or_primary_attribute_fail_alone(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    mocked.get(LEADS_URL, json=ok([{"id": 5, "email": "ada@example.com"}]))
    mocked.post(LEADS_URL, json=ok([{"id": 9, "status": "updated"}]))
    no_order = track("ada@example.com", order="x")
    del no_order["properties"]["order_id"]
    events = [identify(None), no_order, identify("bob@example.com", 2), {**identify("c@example.com"), "type": "page"}]

    results = marketo(upsert_leads=True).deliver(events)

    assert outcomes(results) == ["failed", "failed", "delivered", "failed"]
    assert (results[0].error_code, results[0].hint) == ("missing_lookup_value", HINTS["1002"])
    assert results[1].error_code == "missing_primary_attribute"
    assert "primary_attribute" in results[1].hint
    assert results[3].error_code == "not_for_vendor"
    assert results[3].error_message == "Marketo takes identify and track events only, not page events"
    assert [c.request.method for c in mocked.calls] == ["GET", "GET", "POST"]  # no activities call is left to make
    assert results[0].exchanges == []


# Token ----------------------------------------------------------------------------------------------------------


def test_the_token_is_fetched_once_and_reused_by_the_next_batch(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    mocked.post(LEADS_URL, json=ok([{"id": 50, "status": "updated"}]))

    marketo(upsert_leads=True).deliver([identify("ada@example.com")])
    marketo(upsert_leads=True).deliver([identify("ada@example.com")])  # another worker: the stored token

    assert [c.request.url for c in mocked.calls] == [TOKEN_URL, LEADS_URL, LEADS_URL]


@pytest.mark.parametrize(("code", "message"), [(601, "Access token invalid"), (602, "Access token expired")])
def test_it_gets_exactly_one_new_token_on_601_or_602_and_retries_the_call(
    mocked: responses.RequestsMock, code: int, message: str
) -> None:
    add_token(mocked)
    add_token(mocked, NEW_TOKEN)
    mocked.post(LEADS_URL, json=refused(code, message))
    mocked.post(LEADS_URL, json=ok([{"id": 50, "status": "updated"}]))
    vendor = marketo(upsert_leads=True)
    gated = []
    vendor.http.gate = lambda: gated.append(True)

    [result] = vendor.deliver([identify("ada@example.com")])

    assert result.outcome == "delivered"
    first_token, first_try, new_token, second_try = mocked.calls
    assert_token_call(first_token)
    assert_token_call(new_token)
    body = upsert_body({"email": "ada@example.com"})
    assert_post(first_try, LEADS_URL, body)
    assert_post(second_try, LEADS_URL, body, token=NEW_TOKEN)
    assert len(gated) == 1, "the second try is a call the engine did not count"


def test_a_601_with_the_new_token_too_is_retried_later_without_a_third_token(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    add_token(mocked, NEW_TOKEN)
    mocked.post(LEADS_URL, json=refused(601, "Access token invalid"))

    [result] = marketo(upsert_leads=True).deliver([identify("ada@example.com")])

    assert (result.outcome, result.error_code) == ("retry", "marketo_601")
    assert [c.request.url for c in mocked.calls] == [TOKEN_URL, LEADS_URL, TOKEN_URL, LEADS_URL]


def test_bad_client_credentials_fail_without_any_rest_call(mocked: responses.RequestsMock) -> None:
    mocked.get(TOKEN_URL, status=401, json={"error": "invalid_client", "error_description": "Bad client credentials"})
    events = [identify("ada@example.com"), track("grace@example.com")]

    vendor = marketo(upsert_leads=True)
    results = vendor.deliver(events)
    again = vendor.deliver(events)  # the refusal is remembered: the identity endpoint is not asked again

    for result in results + again:
        assert (result.outcome, result.error_code, result.status_code) == ("failed", "invalid_credentials", 401)
        assert result.error_message == "Marketo refused the client id or secret (HTTP 401: Bad client credentials)."
        assert "LaunchPoint" in result.hint
    assert [c.request.url for c in mocked.calls] == [TOKEN_URL]


def test_a_token_that_is_rolling_over_is_asked_for_again(
    mocked: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rest, "TOKEN_ROLLOVER_WAIT", 0.0)
    add_token(mocked, TOKEN, expires_in=0)
    add_token(mocked, NEW_TOKEN, expires_in=3600)
    mocked.post(LEADS_URL, json=ok([{"id": 50, "status": "updated"}]))

    [result] = marketo(upsert_leads=True).deliver([identify("ada@example.com")])

    assert result.outcome == "delivered"
    assert [c.request.url for c in mocked.calls] == [TOKEN_URL, TOKEN_URL, LEADS_URL]
    assert mocked.calls[2].request.headers["Authorization"] == f"Bearer {NEW_TOKEN}"


def test_a_wrong_munchkin_id_points_at_the_rest_api_endpoint_page(mocked: responses.RequestsMock) -> None:
    mocked.get(TOKEN_URL, status=404, body="<html><body>Not Found</body></html>", content_type="text/html")

    [result] = marketo(upsert_leads=True).deliver([identify("ada@example.com")])

    assert (result.outcome, result.error_code) == ("failed", "http_404")
    assert "REST API Endpoint" in result.hint


@pytest.mark.parametrize(
    ("reason", "wrong_host"),
    [("[Errno -2] Name or service not known", True), ("[Errno -3] Temporary failure in name resolution", False)],
)
def test_a_host_that_does_not_exist_is_retried_and_points_at_the_munchkin_id(
    mocked: responses.RequestsMock, reason: str, wrong_host: bool
) -> None:
    mocked.get(TOKEN_URL, body=requests.ConnectionError(f"Failed to resolve '284-rpr-133.mktorest.com' ({reason})"))

    [result] = marketo(upsert_leads=True).deliver([identify("ada@example.com")])

    assert (result.outcome, result.error_code) == ("retry", "connection_error")
    assert ("Munchkin ID" in result.hint) is wrong_host  # a resolver outage is not the marketer's to fix


# Response-level errors (§2.6) -----------------------------------------------------------------------------------


def test_606_throttles_every_event_of_the_batch_for_20_seconds(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    mocked.get(LEADS_URL, json=refused(606, "Max rate limit '100' exceeded with in '20' secs"))

    results = marketo(upsert_leads=True).deliver([track("ada@example.com"), identify("bob@example.com")])

    for result in results:
        assert (result.outcome, result.error_code, result.retry_after) == ("throttled", "rate_limited", 20.0)
        assert result.error_message == "Marketo error 606: Max rate limit '100' exceeded with in '20' secs"
        assert "lower this destination's rate limit" in result.hint
        assert [e["request"]["url"] for e in result.exchanges][-1].startswith(recorded(LEADS_URL) + "?filterType")
    assert len(mocked.calls) == 2, "no further call once Marketo said slow down"


def test_615_throttles_for_a_short_backoff_with_jitter(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    mocked.post(LEADS_URL, json=refused(615, "Concurrent access limit reached"))

    results = [marketo(upsert_leads=True).deliver([identify("ada@example.com")])[0] for _ in range(3)]

    for result in results:
        assert (result.outcome, result.error_code, result.defer) == ("throttled", "concurrency_limited", False)
        assert 2.0 <= result.retry_after <= 5.0
        assert "concurrency" in result.hint
    assert len({r.retry_after for r in results}) > 1


def test_607_defers_the_batch_until_midnight_us_central(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    mocked.post(LEADS_URL, json=refused(607, "Daily quota reached"))

    [result] = marketo(upsert_leads=True).deliver([identify("ada@example.com")])
    now = datetime.now(UTC)

    assert (result.outcome, result.error_code, result.defer) == ("throttled", "daily_quota", True)
    resumes = datetime.fromtimestamp(now.timestamp() + result.retry_after, CHICAGO)
    assert (resumes.hour, resumes.minute) in ((0, 0), (23, 59))  # within the second the test took
    assert 0 < result.retry_after <= 25 * 3600
    assert "midnight US Central" in result.hint


@pytest.mark.parametrize(
    ("now", "hours"),
    [
        ("2024-05-01T05:00:00+00:00", 24.0),  # midnight CDT exactly: a full day
        ("2024-05-01T17:00:00+00:00", 12.0),  # noon CDT
        ("2024-01-15T05:30:00+00:00", 0.5),  # 23:30 CST on the 14th, while it is already the 15th in UTC
        ("2024-03-10T06:30:00+00:00", 22.5),  # 00:30 CST on the day clocks spring forward: a 23-hour day
        ("2024-11-03T05:30:00+00:00", 24.5),  # 00:30 CDT on the day clocks fall back: a 25-hour day
    ],
)
def test_the_quota_reset_is_the_next_midnight_in_chicago(now: str, hours: float) -> None:
    assert seconds_to_quota_reset(datetime.fromisoformat(now)) == hours * 3600


@pytest.mark.parametrize("code", [500, 502, 604, 608, 611, 614, 713, 719])
def test_transient_marketo_errors_are_retried(mocked: responses.RequestsMock, code: int) -> None:
    add_token(mocked)
    mocked.post(LEADS_URL, json=refused(code, "Temporary trouble"))

    [result] = marketo(upsert_leads=True).deliver([identify("ada@example.com")])

    assert (result.outcome, result.error_code, result.status_code) == ("retry", f"marketo_{code}", 200)
    assert result.error_message == f"Marketo error {code}: Temporary trouble"
    assert len(mocked.calls) == 2


@pytest.mark.parametrize(
    ("code", "message", "hint_says"),
    [
        (603, "Access denied", "Users & Roles"),
        (610, "Requested resource not found", "REST API Endpoint"),
        (609, "Invalid JSON", "report it"),
        (612, "Invalid Content Type", "report it"),
        (616, "Invalid subscription type", "Marketo support"),
        (703, "Feature not enabled", "Marketo support"),
        (1011, "Field 'nickname' not supported", "searchable lookup_field"),
    ],
)
def test_permanent_marketo_errors_fail_with_a_hint(
    mocked: responses.RequestsMock, code: int, message: str, hint_says: str
) -> None:
    add_token(mocked)
    mocked.post(LEADS_URL, json=refused(code, message))

    [result] = marketo(upsert_leads=True).deliver([identify("ada@example.com")])

    assert (result.outcome, result.error_code) == ("failed", f"marketo_{code}")
    assert result.error_message == f"Marketo error {code}: {message}"
    assert hint_says in result.hint


def test_a_permanent_lookup_error_fails_the_track_events_and_identify_events_go_on(
    mocked: responses.RequestsMock,
) -> None:
    add_token(mocked)
    mocked.get(LEADS_URL, json=refused(603, "Access denied"))
    mocked.post(LEADS_URL, json=ok([{"id": 50, "status": "updated"}]))

    results = marketo(upsert_leads=True).deliver([track("ada@example.com"), identify("bob@example.com")])

    assert outcomes(results) == ["failed", "delivered"]
    assert results[0].error_code == "marketo_603"


@pytest.mark.parametrize(("status", "outcome"), [(503, "retry"), (400, "failed")])
def test_other_http_statuses_follow_the_base_classes(mocked: responses.RequestsMock, status: int, outcome: str) -> None:
    add_token(mocked)
    mocked.post(LEADS_URL, status=status, json={"message": "upstream trouble"})

    [result] = marketo(upsert_leads=True).deliver([identify("ada@example.com")])

    assert (result.outcome, result.error_code, result.status_code) == (outcome, f"http_{status}", status)


def test_a_timeout_is_retried(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    mocked.post(LEADS_URL, body=requests.Timeout("Read timed out."))

    [result] = marketo(upsert_leads=True).deliver([identify("ada@example.com")])

    assert (result.outcome, result.error_code) == ("retry", "timeout")


def test_a_413_sends_each_half_of_the_batch_on_its_own(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    mocked.post(LEADS_URL, status=413, body="Request Entity Too Large")
    mocked.post(LEADS_URL, json=ok([{"id": 1, "status": "created"}]))
    mocked.post(LEADS_URL, json=ok([{"id": 2, "status": "created"}, {"id": 3, "status": "updated"}]))
    events = [identify(f"u{n}@example.com", n) for n in range(3)]
    vendor = marketo(upsert_leads=True)
    gated = []
    vendor.http.gate = lambda: gated.append(True)

    results = vendor.deliver(events)

    assert outcomes(results) == ["delivered"] * 3
    _, whole, first, second = mocked.calls
    records = [{"email": f"u{n}@example.com"} for n in range(3)]
    assert_post(whole, LEADS_URL, upsert_body(*records))
    assert_post(first, LEADS_URL, upsert_body(records[0]))
    assert_post(second, LEADS_URL, upsert_body(*records[1:]))
    assert len(gated) == 2


# Record-level errors --------------------------------------------------------------------------------------------


def test_a_record_level_1004_with_upsert_off_fails_that_record_and_the_others_are_delivered(
    mocked: responses.RequestsMock,
) -> None:
    add_token(mocked)
    mocked.get(LEADS_URL, json=ok([{"id": 5, "email": "ada@example.com"}, {"id": 7, "email": "bob@example.com"}]))
    gone = {"status": "skipped", "errors": [{"code": "1004", "message": "Lead not found"}]}
    mocked.post(ACTIVITIES_URL, json=ok([{"id": 1, "status": "added"}, gone, {"id": 2, "status": "added"}]))

    results = marketo().deliver(
        [track("ada@example.com"), track("bob@example.com", "B"), track("ada@example.com", "C")]
    )

    assert outcomes(results) == ["delivered", "failed", "delivered"]
    assert (results[1].error_code, results[1].error_message) == ("lead_not_found", "Marketo error 1004: Lead not found")
    assert results[1].hint == HINTS["1004"]


def test_a_1004_for_a_remembered_lead_id_is_retried_after_forgetting_the_id(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    STATE.memo.put((BASE.lower(), "email", "ada@example.com"), 5, 3600)
    mocked.post(
        ACTIVITIES_URL, json=ok([{"status": "skipped", "reasons": [{"code": "1004", "message": "Lead not found"}]}])
    )

    [result] = marketo().deliver([track("ada@example.com")])

    assert (result.outcome, result.error_code) == ("retry", "lead_not_found")
    assert STATE.memo.get((BASE.lower(), "email", "ada@example.com")) is None


def test_1006_and_1013_fail_their_records_whether_marketo_says_errors_or_reasons(
    mocked: responses.RequestsMock,
) -> None:
    add_token(mocked)
    mocked.get(LEADS_URL, json=ok([{"id": 5, "email": "ada@example.com"}]))
    answers = [
        {"status": "skipped", "errors": [{"code": "1006", "message": "Field 'currency' not found"}]},
        {"status": "skipped", "reasons": [{"code": "1013", "message": "Activity type not found"}]},
        {"status": "skipped", "reasons": [{"code": "1003", "message": "Activity type 100001 is not approved"}]},
    ]
    mocked.post(ACTIVITIES_URL, json=ok(answers))

    results = marketo().deliver([track("ada@example.com", order) for order in "ABC"])

    assert outcomes(results) == ["failed"] * 3
    assert [r.error_code for r in results] == ["field_not_found", "activity_type_not_found", "activity_type_not_found"]
    assert results[0].hint == HINTS["1006"]
    assert results[1].hint == results[2].hint == HINTS["1013"]
    assert "Marketo Custom Activities" in results[1].hint


# Settings and routing -------------------------------------------------------------------------------------------


def test_the_vendor_declares_marketo_limits_and_lead_fields() -> None:
    assert (Marketo.key, Marketo.label, Marketo.max_batch, Marketo.calls_per_batch) == ("marketo", "Marketo", 300, 3)
    assert (Marketo.default_rate_limit, Marketo.default_concurrency) == ((45, 20.0), 5)
    assert set(Marketo.default_mapping) == {"email", "firstName", "lastName", "phone", "title", "company"}
    assert marketo().config.base == BASE
    assert marketo(munchkin_id="", base_url="http://127.0.0.1:9000/marketo/").config.base == (
        "http://127.0.0.1:9000/marketo"
    )


@pytest.mark.parametrize(
    ("config", "event", "reason"),
    [
        ({"upsert_leads": True}, {"type": "identify"}, ""),
        ({}, {"type": "identify"}, "upsert_leads is off, so identify events are not sent to Marketo"),
        ({"activities": ACTIVITIES}, {"type": "track", "event": "Order Completed"}, ""),
        (
            {"activities": ACTIVITIES},
            {"type": "track", "event": "Signed Up"},
            "no Marketo custom activity is mapped for 'Signed Up': add it under config.activities",
        ),
        ({"upsert_leads": True}, {"type": "page"}, "Marketo takes identify and track events only, not page events"),
        (
            {"upsert_leads": "yes"},
            {"type": "identify"},
            "upsert_leads is off, so identify events are not sent to Marketo",
        ),
        ({"activities": ["Order Completed"]}, {"type": "track", "event": "Order Completed"}, "no Marketo custom"),
        ({"activities": ACTIVITIES}, {"type": "track", "event": ["x"]}, "no Marketo custom"),
        ([], {"type": "track", "event": "Order Completed"}, "no Marketo custom"),
    ],
)
def test_skip_reason_says_why_an_event_is_not_for_marketo(config: Any, event: dict[str, Any], reason: str) -> None:
    found = Marketo.skip_reason(config, event)
    assert found.startswith(reason) if reason else found == ""


def activity_config(**spec: Any) -> dict[str, Any]:
    return {"munchkin_id": MUNCHKIN_ID, "activities": {"Order Completed": {**ACTIVITIES["Order Completed"], **spec}}}


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({}, "config.munchkin_id: give the Munchkin ID (like 284-RPR-133) or base_url, one of the two"),
        ({"munchkin_id": "284RPR133"}, "config.munchkin_id: must look like 284-RPR-133"),
        ({"base_url": "ftp://mkto.example.com"}, "config.base_url: must be an http(s) URL"),
        ({"base_url": "https://284-RPR-133.mktorest.com/rest"}, "config.base_url: leave out /rest or /identity"),
        (
            {"munchkin_id": MUNCHKIN_ID, "lookup_field": "e mail"},
            "config.lookup_field: must be a lead field's API name",
        ),
        (
            {"munchkin_id": MUNCHKIN_ID, "lookup_field": "id", "upsert_leads": True},
            "config.lookup_field: Marketo cannot",
        ),
        (
            {"munchkin_id": MUNCHKIN_ID, "activities": {"Order Completed": 100001}},
            "config.activities: must be an object",
        ),
        (
            activity_config(activity_type_id=42),
            "config.activities.Order Completed.activity_type_id: must be a whole number ≥ 100000",
        ),
        (activity_config(activity_type_id="100001"), "config.activities.Order Completed.activity_type_id: must be"),
        (activity_config(activity_type_id=True), "config.activities.Order Completed.activity_type_id: must be"),
        (activity_config(primary_attribute=None), "config.activities.Order Completed.primary_attribute: required"),
        (
            activity_config(primary_attribute="properties.["),
            "config.activities.Order Completed.primary_attribute: 'properties.[' is not a valid JMESPath",
        ),
        (activity_config(attributes=["total"]), "config.activities.Order Completed.attributes: must be an object"),
        (
            activity_config(attributes={"total": "properties..total"}),
            "config.activities.Order Completed.attributes.total: 'properties..total' is not a valid JMESPath",
        ),
        (
            activity_config(attributes={f"a{n}": "properties.a" for n in range(21)}),
            "config.activities.Order Completed.attributes: Marketo allows at most 20",
        ),
        (activity_config(primary="x"), "config.activities.Order Completed.primary: unknown setting"),
    ],
)
def test_validate_names_the_bad_field(config: dict[str, Any], problem: str) -> None:
    problems = Marketo.validate(config, CREDENTIALS)
    assert any(p.startswith(problem) for p in problems), problems


def test_validate_accepts_good_settings_and_requires_both_credentials() -> None:
    assert Marketo.validate({**activity_config(), "upsert_leads": True}, CREDENTIALS) == []
    assert Marketo.validate({"base_url": "http://127.0.0.1:9000/marketo"}, CREDENTIALS) == []
    assert Marketo.validate({"munchkin_id": MUNCHKIN_ID}, {}) == [
        "credentials.client_id: required",
        "credentials.client_secret: required",
    ]


# The upsert lock ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("locked", [True, False])
def test_the_upsert_lock_keeps_two_workers_from_upserting_at_once(
    mocked: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch, locked: bool
) -> None:
    if not locked:  # the control: without the lock the two upserts overlap, so the test can see overlap
        monkeypatch.setattr(Marketo, "upsert_turn", lambda self: contextlib.nullcontext())
    add_token(mocked)
    in_flight, most = [0], [0]
    guard = threading.Lock()

    def slow_upsert(request: Any) -> tuple[int, dict[str, str], str]:
        with guard:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        time.sleep(0.3)
        with guard:
            in_flight[0] -= 1
        return 200, {}, json.dumps(ok([{"id": 50, "status": "updated"}]))

    mocked.add_callback(responses.POST, LEADS_URL, callback=slow_upsert)
    results: list[Result] = []

    def worker() -> None:
        results.extend(marketo(upsert_leads=True).deliver([identify("ada@example.com")]))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert outcomes(results) == ["delivered", "delivered"]
    assert most[0] == (1 if locked else 2)


# Secrets --------------------------------------------------------------------------------------------------------


def test_no_credential_or_token_is_recorded_anywhere(mocked: responses.RequestsMock) -> None:
    add_token(mocked)
    add_token(mocked, NEW_TOKEN)
    echo = f"Access token invalid: {TOKEN} for {CLIENT_ID}"
    mocked.post(LEADS_URL, json=refused(601, echo))
    mocked.post(LEADS_URL, json=refused(603, f"Access denied to {NEW_TOKEN} ({CLIENT_SECRET})"))

    results = marketo(upsert_leads=True).deliver([identify("ada@example.com")])

    recorded = json.dumps([(r.exchanges, r.error_message, r.hint) for r in results])
    for secret in (CLIENT_ID, CLIENT_SECRET, quote_plus(CLIENT_SECRET), TOKEN, NEW_TOKEN):
        assert secret not in recorded
    assert results[0].exchanges[0]["request"]["url"] == (
        f"{BASE}/identity/oauth/token?grant_type=client_credentials&client_id={REDACTED}&client_secret={REDACTED}"
    )
    assert results[0].error_message == f"Marketo error 603: Access denied to {REDACTED} ({REDACTED})"
    assert len(results[0].exchanges) == 4

"""The vendor sandbox over real HTTP: SFMC and Marketo wire contracts, faults, limits, the received log, controls."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest
import requests

from integrations.sandbox import Sandbox
from integrations.sandbox.sfmc import ERROR_DOCS, de_id

BASE_DIR = Path(__file__).resolve().parent.parent.parent
SFMC_CLIENT = {"client_id": "sandbox-sfmc-client", "client_secret": "sandbox-sfmc-secret"}
MARKETO_CLIENT = {"client_id": "sandbox-marketo-client", "client_secret": "sandbox-marketo-secret"}
NOT_AUTHORIZED = {"documentation": ERROR_DOCS, "errorcode": 0, "message": "Not Authorized"}

pytestmark = pytest.mark.e2e


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox(port=0, seed=1, marketo_rate_window=1) as sandbox:
        yield sandbox


def sfmc_token(sb: Sandbox, http: requests.Session) -> dict[str, str]:
    answer = http.post(f"{sb.url}/sfmc/auth/v2/token", json={"grant_type": "client_credentials", **SFMC_CLIENT})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def marketo_token(sb: Sandbox, http: requests.Session) -> dict[str, str]:
    params = {"grant_type": "client_credentials", **MARKETO_CLIENT}
    answer = http.get(f"{sb.url}/marketo/identity/oauth/token", params=params)
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def codes(answer: requests.Response) -> list[str]:
    return [error["code"] for error in answer.json().get("errors", [])]


# SFMC auth ------------------------------------------------------------------------------------------


def test_sfmc_token_with_a_json_body(sb: Sandbox, http: requests.Session) -> None:
    answer = http.post(
        f"{sb.url}/sfmc/auth/v2/token",
        json={"grant_type": "client_credentials", **SFMC_CLIENT, "account_id": 5001234},
    )

    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 1079
    assert body["access_token"]
    assert "journeys_execute" in body["scope"]
    assert body["rest_instance_url"] == f"{sb.url}/sfmc/rest/"
    assert body["soap_instance_url"] == f"{sb.url}/sfmc/soap/"
    assert sb.counters["sfmc_tokens_issued"] == 1


def test_sfmc_token_with_a_form_body_and_a_string_account_id(sb: Sandbox, http: requests.Session) -> None:
    sb.configure(token_lifetime=60)
    form = {"grant_type": "client_credentials", **SFMC_CLIENT, "account_id": "5001234"}

    answer = http.post(f"{sb.url}/sfmc/auth/v2/token", data=form)

    assert answer.status_code == 200
    assert answer.json()["expires_in"] == 60
    assert sfmc_token(sb, http) != {"Authorization": f"Bearer {answer.json()['access_token']}"}  # one per call
    assert sb.counters["sfmc_tokens_issued"] == 2


@pytest.mark.parametrize(
    ("fields", "status", "error"),
    [
        ({"grant_type": "password", **SFMC_CLIENT}, 400, "unsupported_grant_type"),
        ({"grant_type": "client_credentials", "client_id": "sandbox-sfmc-client"}, 400, "invalid_request"),
        ({"grant_type": "client_credentials", "client_secret": "x"}, 400, "invalid_request"),
        ({"grant_type": "client_credentials", "client_id": "sandbox-sfmc-client", "client_secret": "no"}, 401, None),
        ({"grant_type": "client_credentials", "client_id": "someone", "client_secret": "x"}, 401, None),
    ],
)
def test_sfmc_token_refusals(sb: Sandbox, http: requests.Session, fields: dict, status: int, error: str | None) -> None:
    answer = http.post(f"{sb.url}/sfmc/auth/v2/token", json=fields)

    assert answer.status_code == status
    if status == 401:
        assert answer.json() == {
            "error": "invalid_client",
            "error_description": "Invalid client ID. Use the client ID in Marketing Cloud Installed Packages.",
            "error_uri": "https://developer.salesforce.com/docs",
        }
    else:
        assert answer.json()["error"] == error
        assert answer.json()["error_description"]
    assert sb.counters["sfmc_tokens_issued"] == 0


def test_sfmc_rest_needs_a_live_bearer_token(sb: Sandbox, http: requests.Session) -> None:
    url = f"{sb.url}/sfmc/rest/interaction/v1/events"
    event = {"ContactKey": "user-1", "EventDefinitionKey": "APIEvent-welcome"}

    assert http.post(url, json=event).json() == NOT_AUTHORIZED
    unknown = http.post(url, json=event, headers={"Authorization": "Bearer nope"})
    assert (unknown.status_code, unknown.json()) == (401, NOT_AUTHORIZED)
    auth = sfmc_token(sb, http)
    assert http.post(url, json=event, headers=auth).status_code == 201
    sb.expire_tokens()
    expired = http.post(url, json=event, headers=auth)
    assert (expired.status_code, expired.json()) == (401, NOT_AUTHORIZED)
    assert http.post(url, json=event, headers=sfmc_token(sb, http)).status_code == 201


def test_tokens_of_both_vendors_expire_on_their_own(sb: Sandbox, http: requests.Session) -> None:
    sb.configure(token_lifetime=1, marketo_token_lifetime=1)
    sfmc_auth, marketo_auth = sfmc_token(sb, http), marketo_token(sb, http)
    lookup = f"{sb.url}/marketo/rest/v1/leads.json?filterType=email&filterValues=ada@example.com"
    assert http.post(f"{sb.url}/sfmc/rest/interaction/v1/events", json={}, headers=sfmc_auth).status_code == 400

    time.sleep(1.05)

    assert http.post(f"{sb.url}/sfmc/rest/interaction/v1/events", json={}, headers=sfmc_auth).status_code == 401
    assert codes(http.get(lookup, headers=marketo_auth)) == ["602"]
    assert marketo_token(sb, http) != marketo_auth
    assert sb.counters["marketo_tokens_issued"] == 2


def test_sfmc_unknown_rest_path_is_596(sb: Sandbox, http: requests.Session) -> None:
    answer = http.post(f"{sb.url}/sfmc/rest/interaction/v1/nowhere", json={}, headers=sfmc_token(sb, http))

    assert answer.status_code == 596
    assert answer.json() == {"message": "Service Not Found", "errorcode": 0}


# SFMC journeys --------------------------------------------------------------------------------------


def test_sfmc_event_enters_the_journey(sb: Sandbox, http: requests.Session) -> None:
    event = {
        "ContactKey": "user-1",
        "EventDefinitionKey": "APIEvent-welcome",
        "Data": {"email": "ada@example.com", "plan": "pro", "eventInstanceId": "ignored"},
    }

    answer = http.post(f"{sb.url}/sfmc/rest/interaction/v1/events", json=event, headers=sfmc_token(sb, http))

    assert answer.status_code == 201
    instance = answer.json()["eventInstanceId"]
    assert uuid.UUID(instance).version == 4
    assert sb.journey_entries == [
        {
            "eventDefinitionKey": "APIEvent-welcome",
            "contactKey": "user-1",
            "data": {"email": "ada@example.com", "plan": "pro"},
            "eventInstanceId": instance,
            "async": False,
        }
    ]


@pytest.mark.parametrize(
    ("body", "errorcode", "message"),
    [
        ("{not json", 10004, "Invalid message format"),
        ({"EventDefinitionKey": "APIEvent-welcome"}, 10002, "ContactKey is required."),
        ({"ContactKey": "user-1"}, 10002, "EventDefinitionKey is required."),
        (
            {"ContactKey": "user-1", "EventDefinitionKey": "apievent-welcome"},
            30000,
            "Event definition with key 'apievent-welcome' does not exist.",
        ),
        (
            {"ContactKey": "user-1", "EventDefinitionKey": "APIEvent-paused"},
            30000,
            "No running journey uses event definition key 'APIEvent-paused'.",
        ),
        (
            {"ContactKey": "user-1", "EventDefinitionKey": "APIEvent-welcome", "Data": {"Plan": "pro"}},
            10000,
            "Data field 'Plan' does not exist in the event definition's data extension.",
        ),
    ],
)
def test_sfmc_event_refusals(sb: Sandbox, http: requests.Session, body: Any, errorcode: int, message: str) -> None:
    headers = {**sfmc_token(sb, http), "Content-Type": "application/json"}
    data = body if isinstance(body, str) else None
    answer = http.post(
        f"{sb.url}/sfmc/rest/interaction/v1/events", data=data, json=None if data else body, headers=headers
    )

    assert answer.status_code == 400
    assert answer.json() == {"message": message, "errorcode": errorcode, "documentation": ""}
    assert sb.journey_entries == []


def test_sfmc_async_events_answer_each_member_in_order(sb: Sandbox, http: requests.Session) -> None:
    members = [
        {"contactKey": "user-1", "data": {"orderId": "o-1", "total": 49}},
        {"data": {"orderId": "o-2"}},
        {"contactKey": "user-3", "data": {"coupon": "X"}},
        {"contactKey": "user-4"},
    ]
    body = {"eventDefinitionKey": "APIEvent-order-completed", "members": members}

    answer = http.post(f"{sb.url}/sfmc/rest/interaction/v1/async/events", json=body, headers=sfmc_token(sb, http))

    assert answer.status_code == 202
    result = answer.json()
    assert uuid.UUID(result["requestId"])
    assert (result["count"], result["notQueuedCount"]) == (4, 2)
    first, missing, unknown, last = result["members"]
    assert first["contactKey"] == "user-1"
    assert uuid.UUID(first["eventInstanceId"])
    assert missing == {"contactKey": None, "errorcode": 10002, "message": "contactKey is required."}
    assert unknown == {
        "contactKey": "user-3",
        "errorcode": 10000,
        "message": "Data field 'coupon' does not exist in the event definition's data extension.",
    }
    assert last["contactKey"] == "user-4"
    assert "eventInstanceId" in last
    assert [entry["contactKey"] for entry in sb.journey_entries] == ["user-1", "user-4"]
    assert all(entry["async"] for entry in sb.journey_entries)


def test_sfmc_async_events_refuse_the_whole_request(sb: Sandbox, http: requests.Session) -> None:
    url, auth = f"{sb.url}/sfmc/rest/interaction/v1/async/events", sfmc_token(sb, http)
    too_many = {"eventDefinitionKey": "APIEvent-welcome", "members": [{"contactKey": f"u{i}"} for i in range(101)]}
    paused = {"eventDefinitionKey": "APIEvent-paused", "members": [{"contactKey": "u"}]}
    unknown = {"eventDefinitionKey": "APIEvent-nope", "members": [{"contactKey": "u"}]}

    answer = http.post(url, json=too_many, headers=auth)
    assert (answer.status_code, answer.json()["errorcode"]) == (400, 10000)
    assert answer.json()["message"] == "Interaction Count Limit Exceeded"
    assert http.post(url, json=paused, headers=auth).json()["errorcode"] == 30000
    answer = http.post(url, json=unknown, headers=auth)
    assert answer.json()["message"] == "Event definition with key 'APIEvent-nope' does not exist."
    assert sb.journey_entries == []


# SFMC data extensions ---------------------------------------------------------------------------------


def rowset(sb: Sandbox, http: requests.Session, rows: Any, key: str = "CDPHubContacts") -> requests.Response:
    url = f"{sb.url}/sfmc/rest/hub/v1/dataevents/key:{key}/rowset"
    return http.post(url, json=rows, headers=sfmc_token(sb, http))


def test_sfmc_rowset_upserts_by_primary_key_and_echoes(sb: Sandbox, http: requests.Session) -> None:
    rows = [
        {"keys": {"ContactKey": "user-1"}, "values": {"Email": "ada@example.com", "LastSeen": "2024-05-01T10:00:00Z"}},
        {"keys": {"ContactKey": "user-2"}, "values": {"Email": "grace@example.com", "Plan": "Free"}},
    ]

    answer = rowset(sb, http, rows)
    again = rowset(sb, http, [{"keys": {"ContactKey": "user-1"}, "values": {"Plan": "Pro"}}])

    assert (answer.status_code, answer.json()) == (200, rows)
    assert again.status_code == 200
    assert sb.de_rows("CDPHubContacts") == [
        {"ContactKey": "user-1", "Email": "ada@example.com", "LastSeen": "2024-05-01T10:00:00Z", "Plan": "Pro"},
        {"ContactKey": "user-2", "Email": "grace@example.com", "Plan": "Free"},
    ]


def test_sfmc_rowset_unknown_data_extension_is_404(sb: Sandbox, http: requests.Session) -> None:
    answer = rowset(sb, http, [{"keys": {"ContactKey": "u"}, "values": {}}], key="Nope")

    assert answer.status_code == 404
    assert answer.json() == {
        "message": "Data extension with external key 'Nope' was not found.",
        "errorcode": 30003,
        "documentation": "",
    }


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        ({"keys": {}, "values": {"Email": "x@example.com"}}, "Primary key 'ContactKey' does not exist."),
        (
            {"keys": {"ContactKey": "u"}, "values": {"Colour": "red"}},
            "Column 'Colour' does not exist in data extension 'CDPHubContacts'.",
        ),
    ],
)
def test_sfmc_rowset_keeps_the_rows_before_a_bad_one(
    sb: Sandbox, http: requests.Session, bad_row: dict, message: str
) -> None:
    rows = [{"keys": {"ContactKey": "before"}, "values": {}}, bad_row, {"keys": {"ContactKey": "after"}, "values": {}}]

    answer = rowset(sb, http, rows)

    assert answer.status_code == 400
    assert answer.json() == {"message": message, "errorcode": 10000, "documentation": ""}
    assert [row["ContactKey"] for row in sb.de_rows("CDPHubContacts")] == ["before"]


def test_sfmc_rowset_bad_value_is_10006_with_additional_errors(sb: Sandbox, http: requests.Session) -> None:
    rows = [
        {"keys": {"ContactKey": "before"}, "values": {"Email": "ok@example.com"}},
        {"keys": {"ContactKey": "bad"}, "values": {"Email": "not-an-email"}},
        {"keys": {"ContactKey": "after"}, "values": {}},
    ]

    answer = rowset(sb, http, rows)

    assert answer.status_code == 400
    assert answer.json() == {
        "message": f"Unable to save rows for data extension ID {de_id('CDPHubContacts')}",
        "errorcode": 10006,
        "documentation": "",
        "additionalErrors": [
            {
                "message": "Email: The value for column [Email] is not a valid email address. "
                "Parse error [InvalidEmailAddress]",
                "errorcode": 10000,
                "documentation": "",
            }
        ],
    }
    assert [row["ContactKey"] for row in sb.de_rows("CDPHubContacts")] == ["before"]


@pytest.mark.parametrize(
    ("kind", "good", "bad"),
    [
        ("Number", [3, "-12"], [1.5, "three", True]),
        ("Decimal", [1.5, "49.00", 2], ["1,5", "nan"]),
        ("Date", ["2024-05-01", "2024-05-01T10:00:00.123+02:00"], ["01/05/2024", 1714557600]),
        ("Boolean", [True, "false", "TRUE"], ["yes", 1]),
        ("EmailAddress", ["a.b@example.co.uk"], ["a@b", "@example.com", "a b@example.com"]),
        ("Phone", ["+1 (555) 010-0000", 5550100], ["call me"]),
    ],
)
def test_sfmc_rowset_checks_each_column_type(
    sb: Sandbox, http: requests.Session, kind: str, good: list, bad: list
) -> None:
    extension = {"primary_keys": ["Id"], "columns": {"Id": "Text", "Field": kind}}
    sb.configure(sfmc_data_extensions={"Typed": extension})

    for value in good:
        answer = rowset(sb, http, [{"keys": {"Id": "1"}, "values": {"Field": value}}], key="Typed")
        assert answer.status_code == 200, (value, answer.text)
    for value in bad:
        answer = rowset(sb, http, [{"keys": {"Id": "1"}, "values": {"Field": value}}], key="Typed")
        assert answer.json()["errorcode"] == 10006, value
        assert answer.json()["additionalErrors"][0]["message"].startswith("Field: The value for column [Field]")


def test_sfmc_transient_10006_has_no_additional_errors(sb: Sandbox, http: requests.Session) -> None:
    sb.configure(sfmc_10006_rate=1)

    answer = rowset(sb, http, [{"keys": {"ContactKey": "user-1"}, "values": {}}])

    assert answer.status_code == 400
    assert answer.json() == {
        "message": f"Unable to save rows for data extension ID {de_id('CDPHubContacts')}",
        "errorcode": 10006,
        "documentation": "",
    }
    assert sb.de_rows("CDPHubContacts") == []
    assert sb.counters["sfmc_10006"] == 1


# SFMC faults -----------------------------------------------------------------------------------------


def test_sfmc_server_errors_alternate_500_and_503(sb: Sandbox, http: requests.Session) -> None:
    auth = sfmc_token(sb, http)
    sb.configure(error_rate=1, retry_after=7)
    event = {"ContactKey": "user-1", "EventDefinitionKey": "APIEvent-welcome"}

    answers = [http.post(f"{sb.url}/sfmc/rest/interaction/v1/events", json=event, headers=auth) for _ in range(3)]

    assert [a.status_code for a in answers] == [500, 503, 500]
    assert answers[0].json()["message"] == "Internal Server Error"
    assert answers[1].json()["errorcode"] == 50300
    assert answers[1].headers["Retry-After"] == "7"
    assert sfmc_token(sb, http)  # token calls are never faulted
    assert sb.counters["sfmc_faults"] == 3


def test_sfmc_throttling_is_429_50100_with_retry_after(sb: Sandbox, http: requests.Session) -> None:
    auth = sfmc_token(sb, http)
    sb.configure(rate_429=1, retry_after=5)

    answer = rowset(sb, http, [{"keys": {"ContactKey": "user-1"}, "values": {}}])
    no_auth = http.post(f"{sb.url}/sfmc/rest/interaction/v1/events", json={})

    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "5"
    assert answer.json() == {
        "message": "Rate limit exceeded",
        "errorcode": 50100,
        "retryAfter": 5,
        "documentation": ERROR_DOCS,
    }
    assert no_auth.status_code == 401  # faults come after the token check
    assert auth


def test_seeded_faults_repeat(http: requests.Session) -> None:
    def statuses() -> list[int]:
        with Sandbox(port=0, seed=42, error_rate=0.3, rate_429=0.2) as sandbox:
            return [http.post(f"{sandbox.url}/sink/hook", json={}).status_code for _ in range(20)]

    first = statuses()
    assert first == statuses()
    assert {200, 429} <= set(first)
    assert {500, 503} & set(first)


def test_latency_is_added_to_every_request(sb: Sandbox, http: requests.Session) -> None:
    sb.configure(latency_ms=150)

    started = time.monotonic()
    sfmc_token(sb, http)
    http.post(f"{sb.url}/sink/slow", json={})

    assert time.monotonic() - started >= 0.3


# Marketo identity and envelope ------------------------------------------------------------------------


def test_marketo_identity_returns_the_same_token_until_it_expires(sb: Sandbox, http: requests.Session) -> None:
    url = f"{sb.url}/marketo/identity/oauth/token"
    params = {"grant_type": "client_credentials", **MARKETO_CLIENT}

    first = http.get(url, params=params).json()
    second = http.post(url, data=params).json()

    assert first["access_token"] == second["access_token"]
    assert first["access_token"].endswith(":ab")
    assert uuid.UUID(first["access_token"][:-3])
    assert (first["token_type"], first["scope"]) == ("bearer", "api-user@example.com")
    assert 3599 <= second["expires_in"] <= first["expires_in"] == 3600
    assert sb.counters["marketo_tokens_issued"] == 1
    sb.expire_tokens()
    assert http.get(url, params=params).json()["access_token"] != first["access_token"]
    assert sb.counters["marketo_tokens_issued"] == 2


@pytest.mark.parametrize(
    "params",
    [
        {"grant_type": "client_credentials", "client_id": "sandbox-marketo-client", "client_secret": "wrong"},
        {"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"},
        {"client_id": "sandbox-marketo-client", "client_secret": "sandbox-marketo-secret"},
    ],
)
def test_marketo_identity_refuses_bad_credentials(sb: Sandbox, http: requests.Session, params: dict) -> None:
    answer = http.get(f"{sb.url}/marketo/identity/oauth/token", params=params)

    assert answer.status_code == 401
    assert answer.json() == {"error": "invalid_client", "error_description": "Bad client credentials"}


def test_marketo_rest_token_errors(sb: Sandbox, http: requests.Session) -> None:
    lookup = f"{sb.url}/marketo/rest/v1/leads.json?filterType=email&filterValues=ada@example.com"

    empty = http.get(lookup)
    assert empty.status_code == 200
    assert empty.json()["success"] is False
    assert empty.json()["errors"] == [{"code": "600", "message": "Access token empty"}]
    assert "#" in empty.json()["requestId"]
    assert codes(http.get(lookup, headers={"Authorization": "Bearer nope:ab"})) == ["601"]
    auth = marketo_token(sb, http)
    token = auth["Authorization"].removeprefix("Bearer ")
    assert http.get(lookup, headers=auth).json()["success"] is True
    assert http.get(f"{lookup}&access_token={token}").json()["success"] is True  # query token, for compatibility
    sb.expire_tokens()
    assert codes(http.get(lookup, headers=auth)) == ["602"]
    assert sb.counters["marketo_calls"] == 2  # token errors are not counted against the limits


def test_marketo_request_shape_errors(sb: Sandbox, http: requests.Session) -> None:
    auth, base = marketo_token(sb, http), f"{sb.url}/marketo/rest/v1"

    too_big = http.post(f"{base}/leads.json", json={"input": [{"email": "x" * (1024 * 1024)}]}, headers=auth)
    assert too_big.status_code == 413
    long_uri = http.get(f"{base}/leads.json?filterType=email&filterValues={'a' * 9000}", headers=auth)
    assert long_uri.status_code == 414
    wrong_type = http.post(f"{base}/leads.json", data="input=x", headers=auth)
    assert codes(wrong_type) == ["612"]
    bad_json = http.post(f"{base}/leads.json", data="{nope", headers={**auth, "Content-Type": "application/json"})
    assert codes(bad_json) == ["609"]
    assert codes(http.get(f"{base}/nowhere.json", headers=auth)) == ["610"]
    assert codes(http.get(f"{base}/activities/external.json", headers=auth)) == ["605"]


# Marketo limits and faults ---------------------------------------------------------------------------


def test_marketo_rate_window_answers_606_and_slides(sb: Sandbox, http: requests.Session) -> None:
    sb.configure(marketo_rate_limit=3, marketo_rate_window=0.4)
    auth = marketo_token(sb, http)
    lookup = f"{sb.url}/marketo/rest/v1/leads.json?filterType=userId&filterValues=user-1"

    answers = [http.get(lookup, headers=auth).json() for _ in range(5)]
    marketo_token(sb, http)  # identity calls are not limited

    assert [a["success"] for a in answers] == [True, True, True, False, False]
    assert answers[3]["errors"] == [{"code": "606", "message": "Max rate limit '3' exceeded with in '0.4' secs"}]
    time.sleep(0.45)  # the rejected calls did not count: a full window is free again
    assert [http.get(lookup, headers=auth).json()["success"] for _ in range(4)] == [True, True, True, False]
    assert (sb.counters["marketo_606"], sb.counters["marketo_calls"]) == (3, 6)


def test_marketo_eleventh_call_in_flight_gets_615(sb: Sandbox) -> None:
    auth = marketo_token(sb, requests.Session())
    sb.configure(marketo_concurrency=2, latency_ms=300)
    lookup = f"{sb.url}/marketo/rest/v1/leads.json?filterType=userId&filterValues=user-1"
    results: list[list[str]] = []

    def call() -> None:
        results.append(codes(requests.get(lookup, headers=auth)))

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [[], [], ["615"]]
    assert sb.counters["marketo_615"] == 1


def test_marketo_daily_quota_answers_607(sb: Sandbox, http: requests.Session) -> None:
    sb.configure(marketo_daily_quota=2)
    auth = marketo_token(sb, http)
    lookup = f"{sb.url}/marketo/rest/v1/leads.json?filterType=userId&filterValues=user-1"

    answers = [codes(http.get(lookup, headers=auth)) for _ in range(3)]

    assert answers == [[], [], ["607"]]
    assert sb.counters["marketo_607"] == 1


def test_marketo_faults_alternate_611_604_and_http_502(sb: Sandbox, http: requests.Session) -> None:
    auth = marketo_token(sb, http)
    sb.configure(error_rate=1)
    lookup = f"{sb.url}/marketo/rest/v1/leads.json?filterType=userId&filterValues=user-1"

    answers = [http.get(lookup, headers=auth) for _ in range(3)]

    assert [answers[0].status_code, *codes(answers[0])] == [200, "611"]
    assert answers[0].json()["errors"][0]["message"] == "System error"
    assert [answers[1].status_code, *codes(answers[1])] == [200, "604"]
    assert answers[2].status_code == 502
    sb.configure(error_rate=0, rate_429=1)
    assert codes(http.get(lookup, headers=auth)) == ["606"]


# Marketo leads -------------------------------------------------------------------------------------


def test_marketo_lead_lookup(sb: Sandbox, http: requests.Session) -> None:
    auth, url = marketo_token(sb, http), f"{sb.url}/marketo/rest/v1/leads.json"

    by_email = http.get(
        url, params={"filterType": "email", "filterValues": "ADA@example.com,nobody@x.io"}, headers=auth
    )
    by_user = http.get(
        url, params={"filterType": "userId", "filterValues": "user-2", "fields": "id,email,userId,phone"}, headers=auth
    )
    by_post = http.post(
        f"{url}?_method=GET", data={"filterType": "id", "filterValues": "1,2", "fields": "email"}, headers=auth
    )
    none = http.get(url, params={"filterType": "email", "filterValues": "nobody@example.com"}, headers=auth)

    [ada] = by_email.json()["result"]
    assert set(ada) == {"id", "email", "updatedAt", "createdAt", "firstName", "lastName"}
    assert (ada["email"], ada["firstName"], ada["lastName"]) == ("ada@example.com", "Ada", "Lovelace")
    assert by_user.json()["result"] == [{"id": 2, "email": "grace@example.com", "userId": "user-2", "phone": None}]
    assert by_post.json()["result"] == [{"email": "ada@example.com"}, {"email": "grace@example.com"}]
    assert none.json()["success"] is True
    assert none.json()["result"] == []


def test_marketo_lead_lookup_refusals(sb: Sandbox, http: requests.Session) -> None:
    auth, url = marketo_token(sb, http), f"{sb.url}/marketo/rest/v1/leads.json"

    unsupported = http.post(f"{url}?_method=GET", data={"filterType": "firstName", "filterValues": "Ada"}, headers=auth)
    many = ",".join(f"u{i}" for i in range(301))
    too_many = http.post(f"{url}?_method=GET", data={"filterType": "userId", "filterValues": many}, headers=auth)

    assert unsupported.json()["errors"] == [{"code": "1011", "message": "Field 'firstName' not supported"}]
    assert too_many.json()["errors"] == [{"code": "1003", "message": "Too many filter values"}]


def test_marketo_upsert_creates_then_updates_without_duplicates(sb: Sandbox, http: requests.Session) -> None:
    auth, url = marketo_token(sb, http), f"{sb.url}/marketo/rest/v1/leads.json"
    batch = {"input": [{"email": "new@example.com", "firstName": "New"}, {"email": "ADA@example.com", "title": "Dr"}]}

    first = http.post(url, json=batch, headers=auth).json()
    second = http.post(url, json={"action": "createOrUpdate", "lookupField": "email", **batch}, headers=auth).json()

    assert first["success"] is True
    assert first["result"] == [{"id": 3, "status": "created"}, {"id": 1, "status": "updated"}]
    assert second["result"] == [{"id": 3, "status": "updated"}, {"id": 1, "status": "updated"}]
    assert len(sb.leads()) == 3
    assert next(lead for lead in sb.leads() if lead["id"] == 1)["title"] == "Dr"
    assert sb.counters["marketo_duplicate_leads"] == 0


def test_marketo_upsert_skips_records_with_reasons_in_input_order(sb: Sandbox, http: requests.Session) -> None:
    auth, url = marketo_token(sb, http), f"{sb.url}/marketo/rest/v1/leads.json"
    for _ in range(2):
        http.post(url, json={"action": "createDuplicate", "input": [{"email": "twin@example.com"}]}, headers=auth)
    assert sb.counters["marketo_duplicate_leads"] == 1

    create_only = {"action": "createOnly", "input": [{"email": "ada@example.com"}, {"email": "fresh@example.com"}]}
    update_only = {
        "action": "updateOnly",
        "input": [{"email": "ghost@example.com"}, {"email": "twin@example.com"}, {"firstName": "NoEmail"}],
    }
    unknown_field = {"input": [{"email": "ada@example.com", "shoeSize": 9}]}
    by_user = {"lookupField": "userId", "input": [{"userId": "user-2", "company": "Navy"}]}

    assert http.post(url, json=create_only, headers=auth).json()["result"] == [
        {"status": "skipped", "reasons": [{"code": "1005", "message": "Lead already exists"}]},
        {"id": 5, "status": "created"},
    ]
    assert http.post(url, json=update_only, headers=auth).json()["result"] == [
        {"status": "skipped", "reasons": [{"code": "1004", "message": "Lead not found"}]},
        {"status": "skipped", "reasons": [{"code": "1007", "message": "Multiple lead match lookup criteria"}]},
        {
            "status": "skipped",
            "reasons": [{"code": "1002", "message": "Value for required field 'email' not specified"}],
        },
    ]
    assert http.post(url, json=unknown_field, headers=auth).json()["result"] == [
        {"status": "skipped", "reasons": [{"code": "1006", "message": "Field 'shoeSize' not found"}]}
    ]
    assert http.post(url, json=by_user, headers=auth).json()["result"] == [{"id": 2, "status": "updated"}]
    too_many = http.post(url, json={"input": [{"email": f"{i}@x.io"} for i in range(301)]}, headers=auth)
    assert codes(too_many) == ["1003"]


# Marketo activities ----------------------------------------------------------------------------------


def test_marketo_activities_are_added_or_skipped_in_order(sb: Sandbox, http: requests.Session) -> None:
    auth, url = marketo_token(sb, http), f"{sb.url}/marketo/rest/v1/activities/external.json"
    good = {
        "leadId": 1,
        "activityDate": "2024-05-01T10:00:00Z",
        "activityTypeId": 100001,
        "primaryAttributeValue": "o-1",
        "attributes": [{"apiName": "total", "value": "49.00"}, {"name": "currency", "value": "USD"}],
    }
    records = [
        good,
        {**good, "leadId": 999},
        {**good, "activityTypeId": 100099},
        {**good, "attributes": [{"apiName": "coupon", "value": "X"}]},
        {key: value for key, value in good.items() if key != "primaryAttributeValue"},
    ]

    answer = http.post(url, json={"input": records}, headers=auth).json()

    assert answer["success"] is True
    assert answer["result"] == [
        {"id": 1, "marketoGUID": "1", "status": "added"},
        {"status": "skipped", "errors": [{"code": "1004", "message": "Lead not found"}]},
        {"status": "skipped", "errors": [{"code": "1013", "message": "Activity type not found"}]},
        {"status": "skipped", "errors": [{"code": "1006", "message": "Field 'coupon' not found"}]},
        {
            "status": "skipped",
            "errors": [{"code": "1002", "message": "Value for required field 'primaryAttributeValue' not specified"}],
        },
    ]
    assert sb.activities() == [
        {
            "id": 1,
            "marketoGUID": "1",
            "leadId": 1,
            "activityDate": "2024-05-01T10:00:00Z",
            "activityTypeId": 100001,
            "primaryAttributeValue": "o-1",
            "attributes": [{"name": "total", "value": "49.00"}, {"name": "currency", "value": "USD"}],
        }
    ]
    assert codes(http.post(url, json={"input": [good] * 301}, headers=auth)) == ["1003"]


# Sink -------------------------------------------------------------------------------------------------


def test_sink_accepts_posts_and_puts_and_keeps_them(sb: Sandbox, http: requests.Session) -> None:
    assert http.post(f"{sb.url}/sink/crm", json={"a": 1}).json() == {"ok": True}
    assert http.put(f"{sb.url}/sink/crm", json={"a": 2}).status_code == 200

    assert [entry["body"] for entry in sb.received(service="sink", path_contains="/sink/crm")] == [{"a": 1}, {"a": 2}]
    assert sb.counters["sink_calls"] == 2


def test_sink_faults(sb: Sandbox, http: requests.Session) -> None:
    sb.configure(error_rate=1)
    assert [http.post(f"{sb.url}/sink/x", json={}).status_code for _ in range(2)] == [500, 503]
    sb.configure(error_rate=0, rate_429=1, retry_after=3)
    throttled = http.post(f"{sb.url}/sink/x", json={})
    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "3")


# Received log and controls -----------------------------------------------------------------------------


def test_received_log_redacts_secrets(sb: Sandbox, http: requests.Session) -> None:
    form = {"grant_type": "client_credentials", **SFMC_CLIENT}
    http.post(f"{sb.url}/sfmc/auth/v2/token", data=form)
    sfmc_token(sb, http)
    marketo_auth = marketo_token(sb, http)
    http.post(f"{sb.url}/marketo/identity/oauth/token", data={"grant_type": "client_credentials", **MARKETO_CLIENT})
    token = marketo_auth["Authorization"].removeprefix("Bearer ")
    http.get(f"{sb.url}/marketo/rest/v1/leads.json?filterType=id&filterValues=1&access_token={token}")
    http.get(f"{sb.url}/marketo/rest/v1/leads.json?filterType=id&filterValues=1", headers=marketo_auth)

    log = sb.received()
    text = repr(log)
    assert "sandbox-sfmc-secret" not in text
    assert "sandbox-marketo-secret" not in text
    assert token not in text
    form_entry, json_entry, marketo_get, marketo_post, query_token, header_token = log
    assert "client_secret=[REDACTED]" in form_entry["body"]
    assert "client_id=sandbox-sfmc-client" in form_entry["body"]
    assert json_entry["body"]["client_secret"] == "[REDACTED]"
    assert json_entry["response"]["access_token"] == "[REDACTED]"
    assert marketo_get["query"]["client_secret"] == "[REDACTED]"
    assert "client_secret=[REDACTED]" in marketo_post["body"]
    assert query_token["query"]["access_token"] == "[REDACTED]"
    assert header_token["headers"]["Authorization"] == "[REDACTED]"
    assert header_token["service"] == "marketo"
    assert header_token["status"] == 200
    assert header_token["response"]["success"] is True
    assert isinstance(header_token["at"], float)


def test_control_endpoint(sb: Sandbox, http: requests.Session) -> None:
    overview = http.get(f"{sb.url}/_sandbox").json()
    assert overview["settings"]["token_lifetime"] == 1079
    assert overview["settings"]["sfmc_clients"] == {"sandbox-sfmc-client": "[REDACTED]", "abc123clientid": "[REDACTED]"}
    assert overview["counters"]["marketo_606"] == 0
    assert overview["links"]["sfmc_rest_base"] == f"{sb.url}/sfmc/rest"
    assert overview["links"]["marketo_base"] == f"{sb.url}/marketo"

    changed = http.post(f"{sb.url}/_sandbox/config", json={"token_lifetime": 30, "latency_ms": 0})
    assert changed.json()["settings"]["token_lifetime"] == 30
    assert sb.settings.token_lifetime == 30
    unknown = http.post(f"{sb.url}/_sandbox/config", json={"error_rat": 0.5})
    assert unknown.status_code == 400
    assert "Unknown setting 'error_rat'" in unknown.json()["error"]
    assert http.post(f"{sb.url}/_sandbox/config", json={"error_rate": 2}).status_code == 400
    assert sb.settings.error_rate == 0

    auth = sfmc_token(sb, http)
    event = {"ContactKey": "user-1", "EventDefinitionKey": "APIEvent-welcome"}
    http.post(f"{sb.url}/sfmc/rest/interaction/v1/events", json=event, headers=auth)
    rowset(sb, http, [{"keys": {"ContactKey": "user-1"}, "values": {"Plan": "Pro"}}])
    m_auth = marketo_token(sb, http)
    activity = {"leadId": 2, "activityDate": "2024-05-01", "activityTypeId": "100002", "primaryAttributeValue": "pro"}
    http.post(f"{sb.url}/marketo/rest/v1/activities/external.json", json={"input": [activity]}, headers=m_auth)

    assert [e["contactKey"] for e in http.get(f"{sb.url}/_sandbox/journeys").json()["journeys"]] == ["user-1"]
    assert http.get(overview["links"]["data_extension_CDPHubContacts"]).json() == {
        "key": "CDPHubContacts",
        "rows": [{"ContactKey": "user-1", "Plan": "Pro"}],
    }
    assert http.get(f"{sb.url}/_sandbox/data-extensions/Nope").status_code == 404
    assert [lead["email"] for lead in http.get(f"{sb.url}/_sandbox/marketo/leads").json()["leads"]] == [
        "ada@example.com",
        "grace@example.com",
    ]
    [added] = http.get(f"{sb.url}/_sandbox/marketo/activities").json()["activities"]
    assert added["primaryAttributeValue"] == "pro"
    received = http.get(f"{sb.url}/_sandbox/received", params={"service": "sfmc", "limit": 2}).json()["received"]
    assert [entry["path"] for entry in received] == [
        "/sfmc/auth/v2/token",
        "/sfmc/rest/hub/v1/dataevents/key:CDPHubContacts/rowset",
    ]

    assert http.post(f"{sb.url}/_sandbox/expire-tokens").json() == {"ok": True}
    assert http.post(f"{sb.url}/sfmc/rest/interaction/v1/events", json=event, headers=auth).status_code == 401
    assert http.post(f"{sb.url}/_sandbox/reset").json() == {"ok": True}
    assert sb.journey_entries == []
    assert sb.de_rows("CDPHubContacts") == []
    assert sb.activities() == []
    assert sb.counters["sfmc_tokens_issued"] == 0
    assert [entry["path"] for entry in sb.received()] == ["/_sandbox/reset"]  # the log starts again with the reset
    assert sb.settings.token_lifetime == 30  # settings survive a reset


def test_reset_keeps_preloaded_leads_and_forgets_created_ones(sb: Sandbox, http: requests.Session) -> None:
    auth = marketo_token(sb, http)
    http.post(f"{sb.url}/marketo/rest/v1/leads.json", json={"input": [{"email": "new@example.com"}]}, headers=auth)
    assert len(sb.leads()) == 3

    sb.reset()

    assert [lead["userId"] for lead in sb.leads()] == ["user-1", "user-2"]
    assert codes(http.get(f"{sb.url}/marketo/rest/v1/leads.json", headers=auth)) == ["601"]  # tokens forgotten


def test_configure_checks_every_setting_first() -> None:
    with pytest.raises(ValueError, match="Unknown setting 'nope'"):
        Sandbox(nope=1)
    sandbox = Sandbox(marketo_leads=[{"email": "x@example.com"}])
    with pytest.raises(ValueError, match="marketo_concurrency must be a whole number"):
        sandbox.configure(error_rate=0.5, marketo_concurrency=-1)
    assert sandbox.settings.error_rate == 0
    assert [lead["email"] for lead in sandbox.leads()] == ["x@example.com"]
    with pytest.raises(ValueError, match="Data extension 'D' needs columns typed"):
        sandbox.configure(sfmc_data_extensions={"D": {"primary_keys": ["K"], "columns": {"K": "Varchar"}}})
    with pytest.raises(ValueError, match="marketo_leads: every value must be a JSON object"):
        sandbox.configure(marketo_leads=["ada@example.com"])


def test_connections_are_kept_alive(sb: Sandbox) -> None:
    connection = HTTPConnection("127.0.0.1", sb.port, timeout=5)
    try:
        for _ in range(3):
            connection.request(
                "POST", "/sink/keepalive", body=b'{"n": 1}', headers={"Content-Type": "application/json"}
            )
            answer = connection.getresponse()
            assert (answer.status, answer.read()) == (200, b'{"ok":true}')
            assert answer.getheader("Content-Length") == "11"
        assert connection.sock is not None  # still the same socket
    finally:
        connection.close()
    assert len(sb.received(path_contains="/sink/keepalive")) == 3


def test_chunked_bodies_are_read(sb: Sandbox) -> None:
    connection = HTTPConnection("127.0.0.1", sb.port, timeout=5)
    try:
        connection.request("POST", "/sink/chunked", body=iter([b'{"a": ', b"1}"]), encode_chunked=True)
        assert connection.getresponse().status == 200
    finally:
        connection.close()
    assert sb.received(path_contains="/sink/chunked")[0]["body"] == {"a": 1}


def test_stop_cuts_kept_alive_connections(http: requests.Session) -> None:
    sandbox = Sandbox(port=0).start()
    assert http.post(f"{sandbox.url}/sink/x", json={}).status_code == 200

    sandbox.stop()

    with pytest.raises(requests.ConnectionError):
        http.post(f"{sandbox.url}/sink/x", json={}, timeout=2)


def test_the_command_serves_until_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "CDPHUB_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "cdphub.settings"}
    flags = ["--error-rate", "0", "--seed", "3", "--marketo-rate-limit", "7", "--sfmc-10006-rate", "0.5"]
    command = [sys.executable, "manage.py", "sandbox", "--port", "0", *flags]
    process = subprocess.Popen(
        command, cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("cdphub sandbox: http://127.0.0.1:"), line + process.stderr.read()
        url = line.split()[2]
        assert f"SFMC auth base {url}/sfmc/auth" in line
        assert f"Marketo base {url}/marketo" in line
        assert requests.post(f"{url}/sink/cli", json={}, timeout=5).json() == {"ok": True}
        settings = requests.get(f"{url}/_sandbox", timeout=5).json()["settings"]
        assert (settings["seed"], settings["marketo_rate_limit"], settings["sfmc_10006_rate"]) == (3, 7, 0.5)
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()

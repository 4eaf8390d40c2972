"""The Zendesk fake over real HTTP: tickets and their idempotency keys, end users created then updated, API-token
auth, Zendesk's error shapes, faults and limits, the reads and controls; and the real vendor against it, as the
tests configure it and as the demo workspace does."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from integrations.management.commands.try_it import IDENTIFY, SANDBOX
from integrations.sandbox import Sandbox
from integrations.vendors.zendesk import Zendesk
from tests.vendor_kit import fixture

pytestmark = pytest.mark.e2e

EMAIL, TOKEN = "sandbox-agent@example.com", "sandbox-zendesk-token"


def basic(email: str = EMAIL, token: str = TOKEN, suffix: str = "/token") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{email}{suffix}:{token}".encode()).decode()}


def ticket(**fields: Any) -> dict[str, Any]:
    body = {
        "subject": "Checkout Failed",
        "comment": {"body": "plan: pro", "public": False},
        "requester": {"email": "ada@example.com", "name": "Ada Lovelace"},
        "tags": ["cdphub", "checkout_failed"],
        "external_id": "msg-1",
    }
    return {"ticket": {**body, **fields}}


def post(sb: Sandbox, http: requests.Session, path: str, body: Any, **headers: str) -> requests.Response:
    return http.post(f"{sb.url}/zendesk/api/v2/{path}", json=body, headers={**basic(), **headers})


# Tickets ------------------------------------------------------------------------------------------------------


def test_a_ticket_is_created_with_its_location_and_a_new_requester(sb: Sandbox, http: requests.Session) -> None:
    answer = post(sb, http, "tickets", ticket(), **{"Idempotency-Key": "key-1"})

    assert answer.status_code == 201, answer.text
    assert answer.headers["x-idempotency-lookup"] == "miss"
    made = answer.json()["ticket"]
    assert answer.headers["Location"] == made["url"] == f"{sb.url}/zendesk/api/v2/tickets/{made['id']}.json"
    [user] = sb.zendesk_users()
    assert (user["email"], user["name"], user["role"]) == ("ada@example.com", "Ada Lovelace", "end-user")
    assert made["requester_id"] == user["id"]
    assert made["submitter_id"] != user["id"]  # the API user submits it
    assert {key: made[key] for key in ("subject", "description", "is_public", "tags", "external_id", "status")} == {
        "subject": "Checkout Failed",
        "description": "plan: pro",
        "is_public": False,
        "tags": ["cdphub", "checkout_failed"],
        "external_id": "msg-1",
        "status": "new",
    }
    assert answer.json()["audit"]["events"] == [{"id": 1, "type": "Comment", "body": "plan: pro", "public": False}]
    assert sb.zendesk_tickets() == [made]


def test_the_paths_are_served_with_and_without_json(sb: Sandbox, http: requests.Session) -> None:
    assert post(sb, http, "tickets.json", ticket()).status_code == 201
    assert post(sb, http, "users/create_or_update.json", {"user": {"email": "a@example.com", "name": "A"}}).ok


def test_a_known_requester_is_used_as_is_and_no_requester_makes_the_api_user_the_requester(
    sb: Sandbox, http: requests.Session
) -> None:
    first = post(sb, http, "tickets", ticket()).json()["ticket"]
    second = post(sb, http, "tickets", ticket(requester={"email": "ADA@example.com", "name": "Someone Else"}))
    third = post(sb, http, "tickets", {"ticket": {"comment": {"body": "no requester"}}}).json()["ticket"]

    assert second.json()["ticket"]["requester_id"] == first["requester_id"]
    assert [user["name"] for user in sb.zendesk_users()] == ["Ada Lovelace"]
    assert third["requester_id"] == third["submitter_id"] == first["submitter_id"]
    assert third["is_public"] is True  # Zendesk's default


def test_the_same_key_and_body_answer_the_first_ticket_and_make_no_second(sb: Sandbox, http: requests.Session) -> None:
    first = post(sb, http, "tickets", ticket(), **{"Idempotency-Key": "key-1"})
    again = post(sb, http, "tickets.json", ticket(), **{"Idempotency-Key": "key-1"})

    assert again.status_code == 201
    assert again.headers["x-idempotency-lookup"] == "hit"
    assert again.json() == first.json()
    assert len(sb.zendesk_tickets()) == 1
    assert sb.counters["zendesk_idempotent_hits"] == 1
    assert post(sb, http, "tickets", ticket(), **{"Idempotency-Key": "key-2"}).headers["x-idempotency-lookup"] == "miss"
    assert sb.counters["zendesk_duplicate_tickets"] == 1  # another key, the same external_id: Zendesk allows it


def test_the_same_key_with_another_body_is_400_idempotent_request_error(sb: Sandbox, http: requests.Session) -> None:
    post(sb, http, "tickets", ticket(), **{"Idempotency-Key": "key-1"})

    answer = post(sb, http, "tickets", ticket(subject="Changed"), **{"Idempotency-Key": "key-1"})

    assert answer.status_code == 400
    assert answer.json() == fixture("zendesk", "idempotency_mismatch.json")
    assert len(sb.zendesk_tickets()) == 1


def test_an_expired_key_makes_a_new_ticket(sb: Sandbox, http: requests.Session) -> None:
    sb.configure(zendesk_idempotency_ttl=0)

    post(sb, http, "tickets", ticket(), **{"Idempotency-Key": "key-1"})
    answer = post(sb, http, "tickets", ticket(), **{"Idempotency-Key": "key-1"})

    assert answer.headers["x-idempotency-lookup"] == "miss"
    assert len(sb.zendesk_tickets()) == 2


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        (ticket(comment={"public": False}), 422, fixture("zendesk", "record_invalid.json")["details"]["base"][0]),
        (
            ticket(requester={"email": "new@example.com"}),
            422,
            {"description": "Requester: Name: is too short (minimum is 1 character)", "error": "TooShort"},
        ),
        ({"subject": "no wrapper"}, 400, {"error": "ParameterMissing", "description": "Parameter ticket is required"}),
    ],
)
def test_a_ticket_zendesk_would_refuse_is_refused_in_its_shape(
    body: dict[str, Any], status: int, expected: dict[str, Any], sb: Sandbox, http: requests.Session
) -> None:
    answer = post(sb, http, "tickets", body, **{"Idempotency-Key": "key-1"})

    assert answer.status_code == status
    data = answer.json()
    if status == 422:
        assert (data["error"], data["description"]) == ("RecordInvalid", "Record validation errors")
        [detail] = next(iter(data["details"].values()))
        assert {key: detail[key] for key in ("description", "error")} == {
            k: expected[k] for k in ("description", "error")
        }
    else:
        assert data == expected
    assert sb.zendesk_tickets() == []
    assert post(sb, http, "tickets", ticket(), **{"Idempotency-Key": "key-1"}).status_code == 201  # not remembered


def test_tickets_are_listed_by_external_id(sb: Sandbox, http: requests.Session) -> None:
    post(sb, http, "tickets", ticket(external_id="msg-1"))
    post(sb, http, "tickets", ticket(external_id="msg-2"))

    answer = http.get(f"{sb.url}/zendesk/api/v2/tickets.json", params={"external_id": "msg-2"}, headers=basic())

    assert [t["external_id"] for t in answer.json()["tickets"]] == ["msg-2"]
    assert answer.json()["count"] == 1


# Users ----------------------------------------------------------------------------------------------------------


def test_an_end_user_is_created_then_updated_by_email(sb: Sandbox, http: requests.Session) -> None:
    user = {"email": "ada@example.com", "name": "Ada", "external_id": "user-42", "skip_verify_email": True}

    created = post(sb, http, "users/create_or_update", {"user": user})
    updated = post(sb, http, "users/create_or_update", {"user": {"email": "ADA@example.com", "phone": "+15551234567"}})

    assert created.status_code == 201
    assert created.headers["Location"] == created.json()["user"]["url"]
    assert updated.status_code == 200
    [kept] = sb.zendesk_users()
    assert kept["id"] == created.json()["user"]["id"] == updated.json()["user"]["id"]
    assert (kept["email"], kept["name"], kept["phone"], kept["role"]) == (
        "ada@example.com",
        "Ada",
        "+15551234567",
        "end-user",
    )
    assert "skip_verify_email" not in kept  # an instruction for the call, not a field


def test_an_end_user_is_matched_by_external_id_whatever_its_case_and_takes_the_new_case(
    sb: Sandbox, http: requests.Session
) -> None:
    post(sb, http, "users/create_or_update", {"user": {"name": "Ada", "external_id": "user-42"}})

    answer = post(sb, http, "users/create_or_update", {"user": {"external_id": "USER-42", "name": "Ada Lovelace"}})

    assert answer.status_code == 200
    assert [(u["external_id"], u["name"]) for u in sb.zendesk_users()] == [("USER-42", "Ada Lovelace")]


def test_a_new_end_user_without_a_name_is_422_and_a_missing_wrapper_400(sb: Sandbox, http: requests.Session) -> None:
    nameless = post(sb, http, "users/create_or_update", {"user": {"email": "ada@example.com"}})
    unwrapped = post(sb, http, "users/create_or_update", {"email": "ada@example.com"})

    assert nameless.status_code == 422
    assert nameless.json()["details"]["name"][0]["description"] == "Name: is too short (minimum is 1 characters)"
    assert (unwrapped.status_code, unwrapped.json()["error"]) == (400, "ParameterMissing")
    assert sb.zendesk_users() == []


def test_an_agent_that_is_no_admin_may_make_tickets_but_not_change_users(sb: Sandbox, http: requests.Session) -> None:
    sb.configure(zendesk_agents=[EMAIL.upper()])

    refused = post(sb, http, "users/create_or_update", {"user": {"email": "ada@example.com", "name": "Ada"}})

    assert refused.status_code == 403
    assert refused.json() == fixture("zendesk", "forbidden.json")
    assert post(sb, http, "tickets", ticket()).status_code == 201


def test_create_or_update_takes_the_configured_calls_a_second_then_429s(sb: Sandbox, http: requests.Session) -> None:
    sb.configure(zendesk_user_upserts_per_second=1, retry_after=7)
    user = {"user": {"email": "ada@example.com", "name": "Ada"}}

    assert post(sb, http, "users/create_or_update", user).status_code == 201
    throttled = post(sb, http, "users/create_or_update", user)
    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "1")  # a second, whatever retry_after
    assert post(sb, http, "tickets", ticket()).status_code == 201  # the limit is the endpoint's alone
    time.sleep(1.05)
    assert post(sb, http, "users/create_or_update", user).status_code == 200
    assert sb.counters["zendesk_429"] == 1


# Auth and addresses ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic(token="wrong"),
        basic(email="someone@example.com"),
        basic(suffix=""),  # email and password: switched off
        {"Authorization": f"Bearer {TOKEN}"},
        {"Authorization": "Basic not-base64!"},
    ],
)
def test_anything_but_a_known_email_and_its_token_is_401_in_zendesks_37_bytes(
    headers: dict[str, str], sb: Sandbox, http: requests.Session
) -> None:
    answer = http.post(f"{sb.url}/zendesk/api/v2/tickets", json=ticket(), headers=headers)

    assert answer.status_code == 401
    assert answer.content == b'{"error":"Couldn\'t authenticate you"}'
    assert len(answer.content) == 37
    assert answer.headers["WWW-Authenticate"] == 'Basic realm="Web Password"'
    assert answer.json() == fixture("zendesk", "unauthorized.json")
    assert sb.counters["zendesk_401"] == 1
    assert sb.zendesk_tickets() == []


def test_accounts_are_a_secret_setting_and_any_of_them_signs_in(sb: Sandbox, http: requests.Session) -> None:
    changed = http.post(f"{sb.url}/_sandbox/config", json={"zendesk_accounts": {"Admin@Example.com": "tok-2"}})

    assert changed.json()["settings"]["zendesk_accounts"] == {"Admin@Example.com": "[REDACTED]"}
    assert http.get(f"{sb.url}/_sandbox").json()["settings"]["zendesk_accounts"] == {"Admin@Example.com": "[REDACTED]"}
    assert post(sb, http, "tickets", ticket(), **basic("admin@example.com", "tok-2")).status_code == 201
    assert post(sb, http, "tickets", ticket()).status_code == 401  # the default account is gone
    logged = json.dumps(sb.received())
    assert "tok-2" not in logged
    assert base64.b64encode(b"admin@example.com/token:tok-2").decode() not in logged


def test_an_unknown_endpoint_is_404_before_the_credentials_and_an_unknown_desk_is_no_help_desk(
    sb: Sandbox, http: requests.Session
) -> None:
    endpoint = http.post(f"{sb.url}/zendesk/api/v2/tickets/create_many.json", json={})
    wrong_method = http.get(f"{sb.url}/zendesk/api/v2/users/create_or_update", headers=basic())
    desk = http.post(f"{sb.url}/zendesk/cdphub-typo/api/v2/tickets", json=ticket(), headers=basic())

    assert (endpoint.status_code, endpoint.json()) == (404, {"error": "InvalidEndpoint", "description": "Not found"})
    assert wrong_method.status_code == 404
    assert (desk.status_code, desk.json()) == (404, fixture("zendesk", "no_help_desk.json"))


# Faults, reads and controls -------------------------------------------------------------------------------------


def test_server_errors_alternate_500_503_and_a_504_after_the_ticket_was_made(
    sb: Sandbox, http: requests.Session
) -> None:
    sb.configure(error_rate=1, retry_after=3)

    answers = [post(sb, http, "tickets", ticket(external_id=f"msg-{n}")) for n in range(3)]

    assert [a.status_code for a in answers] == [500, 503, 504]
    assert answers[1].headers["Retry-After"] == "3"
    assert [t["external_id"] for t in sb.zendesk_tickets()] == ["msg-2"]  # the 504's answer was lost, not its ticket
    assert sb.counters["zendesk_faults"] == 3


def test_throttling_is_429_with_retry_after_in_json_then_in_plain_text(sb: Sandbox, http: requests.Session) -> None:
    sb.configure(rate_429=1, retry_after=4)

    first, second = (post(sb, http, "tickets", ticket()) for _ in range(2))

    assert (first.status_code, first.headers["Retry-After"]) == (429, "4")
    assert first.json() == {
        "error": "APIRateLimitExceeded",
        "description": "Number of allowed API requests per minute exceeded",
    }
    assert (second.status_code, second.headers["Content-Type"]) == (429, "text/plain")
    assert second.text == "Number of allowed API requests per minute exceeded"
    assert sb.counters["zendesk_429"] == 2
    assert sb.zendesk_tickets() == []


def test_the_reads_links_and_reset(sb: Sandbox, http: requests.Session) -> None:
    post(sb, http, "tickets", ticket(), **{"Idempotency-Key": "key-1"})
    sb.configure(zendesk_idempotency_ttl=60)
    links = http.get(f"{sb.url}/_sandbox").json()["links"]

    assert links["zendesk_base"] == f"{sb.url}/zendesk"
    assert [t["subject"] for t in http.get(links["zendesk_tickets"]).json()["tickets"]] == ["Checkout Failed"]
    assert [u["email"] for u in http.get(links["zendesk_users"]).json()["users"]] == ["ada@example.com"]
    assert sb.zendesk.banner == {"zendesk_base": "Zendesk base"}

    assert http.post(f"{sb.url}/_sandbox/reset").json() == {"ok": True}

    assert (sb.zendesk_tickets(), sb.zendesk_users(), sb.counters["zendesk_calls"]) == ([], [], 0)
    again = post(sb, http, "tickets", ticket(), **{"Idempotency-Key": "key-1"})
    assert again.headers["x-idempotency-lookup"] == "miss"  # the keys went with the tickets
    assert sb.settings.zendesk_idempotency_ttl == 60  # settings survive a reset


# The real vendor against its fake ---------------------------------------------------------------------------------


def vendor(sb: Sandbox, action: str = "ticket", base: str = "/zendesk", token: str = TOKEN) -> Zendesk:
    return Zendesk({"base_url": sb.url + base, "action": action}, {"email": EMAIL, "api_token": token})


def track(message_id: str = "msg-7") -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Checkout Failed",
        "messageId": message_id,
        "properties": {"plan": "pro", "email": "ada@example.com"},
        "context": {"traits": {"name": "Ada Lovelace"}},
    }


def test_the_vendor_and_its_fake_agree_on_a_ticket_a_user_and_a_lost_answer(sb: Sandbox) -> None:
    [delivered] = vendor(sb).deliver([track()])
    [user] = vendor(sb, "user").deliver([{"type": "identify", "userId": "u-1", "traits": {"email": "ada@example.com"}}])
    sb.configure(error_rate=1)
    lost = [vendor(sb).deliver([track("msg-8")])[0] for _ in range(3)]
    sb.configure(error_rate=0)
    [retried] = vendor(sb).deliver([track("msg-8")])

    assert (delivered.outcome, user.outcome, user.status_code) == ("delivered", "delivered", 200)
    assert [r.error_code for r in lost] == ["http_500", "http_503", "http_504"]
    assert retried.exchanges[0]["response"]["headers"]["x-idempotency-lookup"] == "hit"
    assert [t["external_id"] for t in sb.zendesk_tickets()] == ["msg-7", "msg-8"]
    assert sb.zendesk_users()[0]["external_id"] == "u-1"


@pytest.mark.parametrize(
    ("base", "token", "code"),
    [("/zendesk", "wrong", "invalid_credentials"), ("/zendesk/cdphub-typo", TOKEN, "wrong_subdomain")],
)
def test_the_vendor_reads_the_fakes_refusals_as_setup_errors(base: str, token: str, code: str, sb: Sandbox) -> None:
    [result] = vendor(sb, base=base, token=token).deliver([track()])

    assert (result.outcome, result.error_code) == ("failed", code)
    assert code in Zendesk.setup_errors
    assert result.hint == Zendesk.hints[code]


def test_the_demo_workspaces_zendesk_destinations_deliver_to_the_sandboxs_default_account(sb: Sandbox) -> None:
    demo = json.loads((Path(__file__).resolve().parents[2] / "cdphub" / "demo_workspace.json").read_text())
    entries = {entry["config"]["action"]: entry for entry in demo["destinations"] if entry["vendor"] == "zendesk"}
    events = {"ticket": track(), "user": {"type": "identify", **IDENTIFY}}  # what `make run` prints for identify

    for action, entry in entries.items():
        config = {**entry["config"], "base_url": entry["config"]["base_url"].replace(SANDBOX, sb.url)}
        [result] = Zendesk(config, entry["credentials"], entry.get("mapping")).deliver([events[action]])
        assert result.outcome == "delivered", (action, result.error_message)

    assert sorted(entries) == ["ticket", "user"]
    assert [user["email"] for user in sb.zendesk_users()] == ["ada@example.com"]  # the requester, then updated
    assert len(sb.zendesk_tickets()) == 1

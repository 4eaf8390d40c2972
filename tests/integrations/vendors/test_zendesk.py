"""The Zendesk vendor against Zendesk's wire contract: a ticket from a track event, the end user from an identify,
each whole outgoing request asserted, the mappings, each class of Zendesk error in its own body shape, the hints,
the settings' validation and the Event Tester's preview. Recorded bodies: tests/fixtures/vendors/zendesk/."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import requests
import responses

from integrations.crypto import MASK
from integrations.vendors import VENDORS
from integrations.vendors.contract import DeliveryError, Result
from integrations.vendors.http import REDACTED, USER_AGENT
from integrations.vendors.zendesk import BODY_LIMIT, SUBJECT_LIMIT, TICKET, USER, Zendesk
from tests.vendor_kit import body_of, fixture

BASE = "https://cdphub-demo.zendesk.com"
TICKETS_URL = f"{BASE}/api/v2/tickets"
USERS_URL = f"{BASE}/api/v2/users/create_or_update"
EMAIL = "agent@example.com"
API_TOKEN = "abc123"
# Zendesk's own example of these credentials: https://developer.zendesk.com/api-reference/introduction/security-and-auth/
AUTHORIZATION = "Basic YWdlbnRAZXhhbXBsZS5jb20vdG9rZW46YWJjMTIz"
CREDENTIALS = {"email": EMAIL, "api_token": API_TOKEN}


def zendesk(action: str = "ticket", mapping: Any = None, **config: Any) -> Zendesk:
    return Zendesk({"subdomain": "cdphub-demo", "action": action, **config}, CREDENTIALS, mapping, timeout=5.0)


def track(**extra: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Checkout Failed",
        "userId": "user-42",
        "properties": {"plan": "pro", "amount": 49, "email": "ada@example.com"},
        "context": {"traits": {"name": "Ada Lovelace", "email": "ada@example.com"}, "ip": "203.0.113.7"},
        "messageId": "msg-ticket-1",
        "timestamp": "2024-05-01T10:00:00.000Z",
        **extra,
    }


def identify(**traits: Any) -> dict[str, Any]:
    return {
        "type": "identify",
        "userId": "user-42",
        "traits": {"email": "ada@example.com", "firstName": "Ada", "lastName": "Lovelace", "phone": "+15551234567"}
        | traits,
        "messageId": "msg-user-1",
        "timestamp": "2024-05-01T10:00:00.000Z",
    }


def test_the_zendesk_vendor_is_registered_under_its_key_and_sends_one_call_per_event() -> None:
    assert VENDORS["zendesk"] is Zendesk
    assert Zendesk.max_batch == 1
    assert Zendesk.default_rate_limit == (1, 1.0)  # Create or Update User: 1 call a second per account
    assert Zendesk.default_concurrency == 1


# Requests -------------------------------------------------------------------------------------------------------


def test_a_track_event_creates_a_ticket_with_basic_token_auth_and_an_idempotency_key(
    mocked: responses.RequestsMock,
) -> None:
    mocked.post(TICKETS_URL, status=201, json=fixture("zendesk", "ticket_created.json"))
    vendor = zendesk()

    [result] = vendor.deliver([track()])

    assert result.outcome == "delivered"
    assert result.status_code == 201
    [call] = mocked.calls
    assert call.request.method == "POST"
    assert call.request.url == TICKETS_URL
    headers = call.request.headers
    assert headers["Authorization"] == AUTHORIZATION
    assert headers["Content-Type"] == "application/json"
    assert headers["Accept"] == "application/json"
    assert headers["User-Agent"] == USER_AGENT
    assert headers["Idempotency-Key"] == vendor.idempotency_key(track())
    assert headers["Idempotency-Key"].startswith("cdphub-")
    assert body_of(call) == {
        "ticket": {
            "subject": "Checkout Failed",
            "comment": {"body": "plan: pro\namount: 49\nemail: ada@example.com", "public": False},
            "requester": {"email": "ada@example.com", "name": "Ada Lovelace"},
            "tags": ["cdphub", "checkout_failed"],
            "external_id": "msg-ticket-1",
        }
    }
    assert call.request.req_kwargs["timeout"] == 5.0


@pytest.mark.parametrize(("status", "recorded"), [(201, "user_created.json"), (200, "user_updated.json")])
def test_an_identify_creates_or_updates_the_end_user_without_an_idempotency_key(
    status: int, recorded: str, mocked: responses.RequestsMock
) -> None:
    mocked.post(USERS_URL, status=status, json=fixture("zendesk", recorded))

    [result] = zendesk("user").deliver([identify(plan="pro")])

    assert result.outcome == "delivered"
    assert result.status_code == status
    [call] = mocked.calls
    assert call.request.url == USERS_URL
    assert call.request.headers["Authorization"] == AUTHORIZATION
    assert call.request.headers["Accept"] == "application/json"
    assert "Idempotency-Key" not in call.request.headers  # Zendesk honours it on ticket creation only
    assert body_of(call) == {
        "user": {
            "email": "ada@example.com",
            "name": "Ada Lovelace",
            "external_id": "user-42",
            "phone": "+15551234567",
            "skip_verify_email": True,
        }
    }


def test_a_retried_event_carries_the_same_idempotency_key_and_body_so_zendesk_makes_no_second_ticket(
    mocked: responses.RequestsMock,
) -> None:
    mocked.post(TICKETS_URL, body=requests.Timeout("Read timed out."))
    hit = {"x-idempotency-lookup": "hit"}
    mocked.post(TICKETS_URL, status=201, json=fixture("zendesk", "ticket_created.json"), headers=hit)

    [first] = zendesk().deliver([track()])
    [second] = zendesk().deliver([track()])  # the retry, or a replay, from another worker

    assert first.outcome == "retry"
    assert first.error_code == "timeout"
    assert first.hint
    assert second.outcome == "delivered"
    keys = [call.request.headers["Idempotency-Key"] for call in mocked.calls]
    assert keys[0] == keys[1]
    assert mocked.calls[0].request.body == mocked.calls[1].request.body
    assert second.exchanges[0]["response"]["headers"]["x-idempotency-lookup"] == "hit"


def test_the_idempotency_key_differs_per_event_and_per_ticket_mapping() -> None:
    key = zendesk().idempotency_key(track())

    assert zendesk().idempotency_key(track(messageId="msg-ticket-2")) != key
    assert zendesk(mapping={"ticket": {**TICKET, "subject": "'Checkout failed'"}}).idempotency_key(track()) != key
    assert zendesk(subdomain="other-desk").idempotency_key(track()) == key  # Zendesk keeps keys per account
    assert len(key) <= 255


def test_a_custom_mapping_reshapes_the_ticket(mocked: responses.RequestsMock) -> None:
    mocked.post(TICKETS_URL, status=201, json=fixture("zendesk", "ticket_created.json"))
    mapping = {
        "ticket": {
            "subject": "join(' ', ['Payment failed:', properties.plan])",
            "comment": {"body": "properties.reason", "public": True},
            "requester": {"email": "properties.email"},
            "priority": "'URGENT'",
            "type": "'incident'",
            "tags": "properties.labels",
            "custom_fields": [{"id": 360001234567, "value": "properties.plan"}],
        }
    }
    event = track(properties={"plan": "pro", "reason": "Card declined", "email": "ada@example.com", "labels": ["VIP"]})

    [result] = zendesk(mapping=mapping).deliver([event])

    assert result.outcome == "delivered"
    assert body_of(mocked.calls[0]) == {
        "ticket": {
            "subject": "Payment failed: pro",
            "comment": {"body": "Card declined", "public": True},
            "requester": {"email": "ada@example.com", "name": "ada"},  # a new requester needs a name
            "priority": "urgent",
            "type": "incident",
            "tags": ["vip"],
            "custom_fields": [{"id": 360001234567, "value": "pro"}],
        }
    }


def test_a_ticket_mapping_without_requester_makes_the_api_user_the_requester(mocked: responses.RequestsMock) -> None:
    mocked.post(TICKETS_URL, status=201, json=fixture("zendesk", "ticket_created.json"))
    mapping = {"ticket": {key: value for key, value in TICKET.items() if key != "requester"}}

    [result] = zendesk(mapping=mapping).deliver([track(properties={}, context={})])

    assert result.outcome == "delivered"
    assert "requester" not in body_of(mocked.calls[0])["ticket"]


def test_a_track_event_without_an_email_fails_before_any_call_and_says_where_to_put_it(
    mocked: responses.RequestsMock,
) -> None:
    [result] = zendesk().deliver([track(properties={"plan": "pro"}, context={"traits": {"name": "Ada"}})])

    assert result.outcome == "failed"
    assert result.error_code == "missing_email"
    assert "requester" in result.error_message
    assert "properties.email" in result.hint
    assert len(mocked.calls) == 0


def test_an_event_without_properties_gets_its_subject_as_the_comment_zendesk_requires(
    mocked: responses.RequestsMock,
) -> None:
    mocked.post(TICKETS_URL, status=201, json=fixture("zendesk", "ticket_created.json"))

    zendesk().deliver([track(properties={})])

    assert body_of(mocked.calls[0])["ticket"]["comment"] == {"body": "Checkout Failed", "public": False}


def test_tags_are_lower_case_with_underscores_and_enum_values_zendesk_does_not_know_are_left_out(
    mocked: responses.RequestsMock,
) -> None:
    mocked.post(TICKETS_URL, status=201, json=fixture("zendesk", "ticket_created.json"))
    mapping = {"ticket": {**TICKET, "tags": ["'cdphub'", "event", "properties.tier", "'CDPHub'"]}}
    event = track(event="Plan  Upgraded!", properties={"email": "a@example.com", "tier": 3, "priority": "High"})
    event["properties"]["type"] = "subscription"

    zendesk(mapping=mapping).deliver([event])

    ticket = body_of(mocked.calls[0])["ticket"]
    assert ticket["tags"] == ["cdphub", "plan_upgraded", "3"]
    assert ticket["priority"] == "high"
    assert "type" not in ticket


def test_a_runaway_subject_and_comment_are_cut_to_zendesks_limits(mocked: responses.RequestsMock) -> None:
    mocked.post(TICKETS_URL, status=201, json=fixture("zendesk", "ticket_created.json"))

    zendesk().deliver([track(event="x" * 1000, properties={"email": "a@example.com", "log": "y" * 100_000})])

    ticket = body_of(mocked.calls[0])["ticket"]
    assert len(ticket["subject"]) == SUBJECT_LIMIT
    assert len(ticket["comment"]["body"]) == BODY_LIMIT
    assert ticket["comment"]["body"].endswith("(cut by cdphub)")


def test_an_identify_without_a_name_sends_none_so_a_known_users_name_is_kept(mocked: responses.RequestsMock) -> None:
    mocked.post(USERS_URL, json=fixture("zendesk", "user_updated.json"))

    zendesk("user").deliver([identify(firstName=None, lastName=None, phone=None)])

    assert body_of(mocked.calls[0]) == {
        "user": {"email": "ada@example.com", "external_id": "user-42", "skip_verify_email": True}
    }


def test_an_identify_with_only_a_user_id_is_matched_by_external_id(mocked: responses.RequestsMock) -> None:
    mocked.post(USERS_URL, json=fixture("zendesk", "user_updated.json"))

    [result] = zendesk("user").deliver([identify(email=None)])

    assert result.outcome == "delivered"
    assert "email" not in body_of(mocked.calls[0])["user"]


def test_an_identify_without_email_or_user_id_fails_with_a_hint(mocked: responses.RequestsMock) -> None:
    event = identify(email=None) | {"userId": None, "anonymousId": "anon-1"}

    [result] = zendesk("user").deliver([event])

    assert result.outcome == "failed"
    assert result.error_code == "missing_identity"
    assert "traits.email" in result.hint
    assert len(mocked.calls) == 0


def test_a_mapping_that_fails_on_an_event_fails_that_event_with_a_hint(mocked: responses.RequestsMock) -> None:
    [result] = zendesk(mapping={"ticket": {**TICKET, "subject": "length(properties.amount)"}}).deliver([track()])

    assert result.outcome == "failed"
    assert result.error_code == "invalid_mapping"
    assert "length" in result.error_message
    assert result.hint


@pytest.mark.parametrize(
    ("action", "event", "reason"),
    [
        ("ticket", identify(), 'config.action "ticket" sends track events to Zendesk, not identify events'),
        (
            "ticket",
            {"type": "page", "name": "Pricing"},
            'config.action "ticket" sends track events to Zendesk, not page events',
        ),
        ("user", track(), 'config.action "user" sends identify events to Zendesk, not track events'),
        ("ticket", track(), ""),
        ("user", identify(), ""),
    ],
)
def test_events_the_action_does_not_take_are_filtered_with_a_reason(
    action: str, event: dict[str, Any], reason: str
) -> None:
    assert Zendesk.skip_reason({"subdomain": "cdphub-demo", "action": action}, event) == reason


def test_the_action_defaults_to_tickets() -> None:
    assert Zendesk.skip_reason({"subdomain": "cdphub-demo"}, identify()) != ""
    assert Zendesk.skip_reason({"subdomain": "cdphub-demo"}, track()) == ""


def test_an_event_the_action_does_not_take_fails_unsent_if_it_reaches_the_vendor(
    mocked: responses.RequestsMock,
) -> None:
    [result] = zendesk("user").deliver([track()])

    assert result.outcome == "failed"
    assert result.error_code == "not_for_vendor"
    assert 'config.action "user"' in result.error_message
    assert result.hint
    assert len(mocked.calls) == 0


# Errors ---------------------------------------------------------------------------------------------------------


def answer(mock: responses.RequestsMock, status: int, recorded: str | None = None, **kwargs: Any) -> Result:
    """Deliver one ticket that Zendesk answers with `status` (and a recorded body)."""
    if recorded:
        kwargs["json"] = fixture("zendesk", recorded)
    mock.post(TICKETS_URL, status=status, **kwargs)
    [result] = zendesk().deliver([track()])
    return result


@pytest.mark.parametrize(
    ("status", "recorded", "code", "message"),
    [
        (401, "unauthorized.json", "invalid_credentials", "HTTP 401: Couldn't authenticate you"),
        (
            403,
            "forbidden.json",
            "permission_denied",
            "HTTP 403: You do not have access to this page. Please contact the account owner of this help desk for "
            "further help.",
        ),
        (
            404,
            "no_help_desk.json",
            "wrong_subdomain",
            "HTTP 404: No help desk at cdphub-typo.zendesk.com: There is no help desk configured at this address. "
            "This means that the address is available and that you can claim it at http://www.zendesk.com/signup",
        ),
    ],
)
def test_wrong_settings_fail_and_mark_the_destination_misconfigured_with_a_hint(
    status: int, recorded: str, code: str, message: str, mocked: responses.RequestsMock
) -> None:
    result = answer(mocked, status, recorded)

    assert result.outcome == "failed"
    assert result.status_code == status
    assert result.error_code == code
    assert result.error_message == message
    assert code in Zendesk.setup_errors
    assert result.hint == Zendesk.hints[code]


def test_a_422_reads_as_zendesks_own_field_messages(mocked: responses.RequestsMock) -> None:
    result = answer(mocked, 422, "record_invalid.json")

    assert result.outcome == "failed"
    assert result.error_code == "invalid_record"
    assert result.error_message == "HTTP 422: Description: cannot be blank"
    assert "mapping" in result.hint
    assert result.error_code not in Zendesk.setup_errors  # one event's data, not the settings


def test_a_422_on_a_user_joins_every_fields_message(mocked: responses.RequestsMock) -> None:
    mocked.post(USERS_URL, status=422, json=fixture("zendesk", "user_invalid.json"))

    [result] = zendesk("user").deliver([identify()])

    assert result.error_message == (
        "HTTP 422: Email: ada@example.com is already being used by another user; "
        "Name: is too short (minimum is 1 characters)"
    )


def test_a_detail_without_a_description_still_names_its_field(mocked: responses.RequestsMock) -> None:
    body = {"error": "RecordInvalid", "description": "Record validation errors", "details": {"tags": [{"error": "X"}]}}

    result = answer(mocked, 422, json=body)

    assert result.error_message == "HTTP 422: tags: X"


def test_a_changed_body_under_the_same_idempotency_key_fails_and_says_how_to_find_the_first_ticket(
    mocked: responses.RequestsMock,
) -> None:
    result = answer(mocked, 400, "idempotency_mismatch.json")

    assert result.outcome == "failed"
    assert result.error_code == "idempotency_conflict"
    assert result.error_message == "HTTP 400: Request parameters don't match the given idempotency key"
    assert "external_id" in result.hint


def test_another_400_is_permanent_with_zendesks_description(mocked: responses.RequestsMock) -> None:
    result = answer(mocked, 400, json={"error": "ParameterMissing", "description": "Parameter ticket is required"})

    assert result.outcome == "failed"
    assert result.error_code == "bad_request"
    assert result.error_message == "HTTP 400: Parameter ticket is required"
    assert result.hint


def test_a_413_is_permanent_and_asks_for_a_shorter_comment(mocked: responses.RequestsMock) -> None:
    result = answer(mocked, 413, body="")

    assert (result.outcome, result.error_code) == ("failed", "too_large")
    assert "comment" in result.hint


def test_a_429_waits_for_retry_after_without_spending_an_attempt(mocked: responses.RequestsMock) -> None:
    result = answer(mocked, 429, "rate_limited.json", headers={"Retry-After": "37"})

    assert result.outcome == "throttled"
    assert result.retry_after == 37.0
    assert result.error_code == "rate_limited"
    assert result.error_message == "HTTP 429: Number of allowed API requests per minute exceeded"
    assert "rate limit" in result.hint


def test_a_plain_text_429_without_retry_after_waits_ten_seconds(mocked: responses.RequestsMock) -> None:
    result = answer(mocked, 429, body="Number of allowed API requests per minute exceeded")

    assert result.outcome == "throttled"
    assert result.retry_after == 10.0
    assert result.error_message == "HTTP 429: Number of allowed API requests per minute exceeded"


def test_a_503_for_maintenance_is_retried_after_its_retry_after(mocked: responses.RequestsMock) -> None:
    result = answer(mocked, 503, body="Maintenance", headers={"Retry-After": "120"})

    assert result.outcome == "retry"
    assert result.retry_after == 120.0
    assert result.error_code == "http_503"
    assert "status.zendesk.com" in result.hint


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_server_error_behind_cloudflare_is_retried_with_backoff(status: int, mocked: responses.RequestsMock) -> None:
    result = answer(mocked, status, body="<html><body>Bad gateway</body></html>", content_type="text/html")

    assert result.outcome == "retry"
    assert result.retry_after is None
    assert result.error_code == f"http_{status}"
    assert "Bad gateway" in result.error_message
    assert result.hint


def test_a_409_database_conflict_is_retried(mocked: responses.RequestsMock) -> None:
    result = answer(mocked, 409, json={"error": "DatabaseConflict", "description": "Database collision"})

    assert (result.outcome, result.error_code) == ("retry", "conflict")
    assert result.error_message == "HTTP 409: Database collision"
    assert result.hint


def test_a_redirect_from_a_host_mapped_domain_is_a_wrong_subdomain(mocked: responses.RequestsMock) -> None:
    result = answer(mocked, 301, headers={"Location": "https://acme.zendesk.com/api/v2/tickets"})

    assert (result.outcome, result.error_code) == ("failed", "wrong_subdomain")
    assert "config.subdomain" in result.hint


def test_every_error_a_marketer_can_fix_has_a_one_sentence_hint_that_says_what_to_do() -> None:
    fixable = Zendesk.setup_errors - {"invalid_settings", "invalid_url", "private_address"}
    fixable |= {"invalid_record", "bad_request", "too_large", "idempotency_conflict", "rate_limited"}
    fixable |= {"missing_email", "missing_identity", "invalid_mapping", "not_for_vendor"}
    for code in fixable:
        hint = Zendesk.hints[code]
        assert hint.endswith("."), code
        assert hint.count(". ") == 0, f"{code}: one sentence"


# Secrets --------------------------------------------------------------------------------------------------------


def test_the_token_email_and_header_never_reach_the_exchanges_or_messages_even_when_echoed(
    mocked: responses.RequestsMock,
) -> None:
    echo = f"Couldn't authenticate {EMAIL}/token:{API_TOKEN} ({AUTHORIZATION})"
    mocked.post(TICKETS_URL, status=401, json={"error": echo}, headers={"X-Echo": AUTHORIZATION.split()[1]})

    [result] = zendesk().deliver([track()])

    recorded = json.dumps(result.exchanges) + result.error_message
    for secret in (EMAIL, API_TOKEN, AUTHORIZATION.split()[1]):
        assert secret not in recorded
    assert result.exchanges[0]["request"]["headers"]["Authorization"] == REDACTED
    assert result.error_message.startswith("HTTP 401: Couldn't authenticate")


# Settings -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "credentials", "message"),
    [
        (
            {},
            CREDENTIALS,
            "config.subdomain: give the Zendesk subdomain (acme for acme.zendesk.com) or base_url, one of the two",
        ),
        (
            {"subdomain": "acme", "base_url": "https://acme.zendesk.com"},
            CREDENTIALS,
            "config.subdomain: give the Zendesk subdomain (acme for acme.zendesk.com) or base_url, one of the two",
        ),
        (
            {"subdomain": "support.acme.com"},
            CREDENTIALS,
            "config.subdomain: give the part before .zendesk.com (like acme), not a host-mapped domain",
        ),
        (
            {"subdomain": "ac_me"},
            CREDENTIALS,
            "config.subdomain: must be letters, digits and hyphens, the part before .zendesk.com (like acme)",
        ),
        (
            {"base_url": "acme.zendesk.com"},
            CREDENTIALS,
            "config.base_url: must be an http(s) URL like https://acme.zendesk.com",
        ),
        (
            {"base_url": "https://acme.zendesk.com/api/v2"},
            CREDENTIALS,
            "config.base_url: leave out /api/v2: https://acme.zendesk.com",
        ),
        ({"subdomain": "acme", "action": "ticket"}, CREDENTIALS, None),
        (
            {"subdomain": "acme", "action": "note"},
            CREDENTIALS,
            "config.action: must be one of 'ticket', 'user', not 'note'",
        ),
        ({"subdomain": "acme", "plan": "team"}, CREDENTIALS, "config.plan: unknown setting"),
        ({"subdomain": "acme"}, {"email": EMAIL}, "credentials.api_token: required"),
        ({"subdomain": "acme"}, {"email": " ", "api_token": API_TOKEN}, "credentials.email: must not be blank"),
        (
            {"subdomain": "acme"},
            {"email": f"{EMAIL}/token", "api_token": API_TOKEN},
            "credentials.email: give the email alone, cdphub adds /token itself",
        ),
    ],
)
def test_validate_names_each_bad_setting(config: Any, credentials: Any, message: str | None) -> None:
    assert Zendesk.validate(config, credentials) == ([message] if message else [])


@pytest.mark.parametrize("pasted", ["acme", "Acme", "https://acme.zendesk.com", "acme.zendesk.com/agent/dashboard"])
def test_a_pasted_agent_url_is_read_as_its_subdomain(pasted: str) -> None:
    assert Zendesk.validate({"subdomain": pasted}, CREDENTIALS) == []
    assert Zendesk({"subdomain": pasted}, CREDENTIALS).config.base == "https://acme.zendesk.com"


def test_a_base_url_points_the_calls_elsewhere(mocked: responses.RequestsMock) -> None:
    mocked.post("http://sandbox.test:8025/zendesk/api/v2/users/create_or_update", json={"user": {"id": 1}})

    [result] = Zendesk({"base_url": "http://sandbox.test:8025/zendesk/", "action": "user"}, CREDENTIALS).deliver(
        [identify()]
    )

    assert result.outcome == "delivered"


@pytest.mark.parametrize(
    ("action", "mapping", "messages"),
    [
        ("ticket", {"ticket": {"subject": "event"}}, []),
        (
            "user",
            {"ticket": {"subject": "event"}},
            ['mapping.user: required when config.action is "user": an object of field → expression'],
        ),
        ("ticket", {"ticket": {}, "tickets": {}}, ["mapping.tickets: unknown (a Zendesk mapping has ticket and user)"]),
        (
            "user",
            {"user": {"email": "traits.email", "role": "'admin'"}},
            ["mapping.user.role: cdphub never sets a role: an identify could demote an agent or admin"],
        ),
        ("ticket", {"ticket": {"subject": "event["}}, ["mapping.ticket.subject: 'event[' is not a valid JMESPath"]),
    ],
)
def test_validate_checks_the_mapping_against_the_action(action: str, mapping: Any, messages: list[str]) -> None:
    found = Zendesk.validate({"subdomain": "acme", "action": action}, CREDENTIALS, mapping)

    assert len(found) == len(messages)
    for problem, expected in zip(found, messages, strict=True):
        assert problem.startswith(expected)


def test_building_it_with_a_mapping_for_the_other_action_raises_a_clear_error() -> None:
    with pytest.raises(DeliveryError, match=r'mapping\.user: required when config\.action is "user"') as caught:
        zendesk("user", mapping={"ticket": TICKET})
    assert caught.value.code == "invalid_settings"


def test_each_preset_is_a_valid_mapping_for_its_action_and_filters_to_the_events_it_takes() -> None:
    for action, preset in (
        ("ticket", Zendesk.presets["ticket_on_track"]),
        ("user", Zendesk.presets["user_on_identify"]),
    ):
        assert Zendesk.validate({"subdomain": "acme", "action": action}, CREDENTIALS, preset["mapping"]) == []
        assert preset["filter"]["types"] == [{"ticket": "track", "user": "identify"}[action]]
    assert Zendesk.default_mapping == {"ticket": TICKET, "user": USER}


# Preview --------------------------------------------------------------------------------------------------------


def test_a_ticket_preview_is_the_real_request_with_the_credentials_masked(mocked: responses.RequestsMock) -> None:
    vendor = zendesk()

    [request] = vendor.preview(track())

    assert len(mocked.calls) == 0
    assert request["method"] == "POST"
    assert request["url"] == TICKETS_URL
    assert request["headers"] == {
        "Authorization": MASK,
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Idempotency-Key": vendor.idempotency_key(track()),
    }
    assert request["body"]["ticket"]["subject"] == "Checkout Failed"
    assert "Idempotency-Key" in request["note"]
    text = json.dumps(request)
    for secret in (EMAIL, API_TOKEN, AUTHORIZATION.split()[1], base64.b64encode(API_TOKEN.encode()).decode()):
        assert secret not in text


def test_a_user_preview_is_the_create_or_update_call(mocked: responses.RequestsMock) -> None:
    [request] = zendesk("user").preview(identify())

    assert request["url"] == USERS_URL
    assert request["headers"]["Authorization"] == MASK
    assert "Idempotency-Key" not in request["headers"]
    assert request["body"]["user"]["external_id"] == "user-42"
    assert "email or external_id" in request["note"]


@pytest.mark.parametrize(
    ("action", "event", "code"),
    [("user", track(), "not_for_vendor"), ("ticket", track(properties={}, context={}), "missing_email")],
)
def test_a_preview_says_why_an_event_could_not_be_sent(
    action: str, event: dict[str, Any], code: str, mocked: responses.RequestsMock
) -> None:
    with pytest.raises(DeliveryError) as caught:
        zendesk(action).preview(event)
    assert caught.value.code == code
    assert caught.value.message
    assert caught.value.hint

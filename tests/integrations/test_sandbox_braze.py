"""The Braze fake over real HTTP: /users/track's keys, object limit, minor errors, the fatal 400s, profiles kept by
external_id or alias, rate-limit headers, faults, control reads and reset."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from integrations.management.commands.sandbox import Command
from integrations.sandbox import Sandbox

pytestmark = pytest.mark.e2e

KEY = "sandbox-braze-rest-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
TIME = "2024-05-01T10:00:00.000Z"
NO_VALID_DATA = "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."


def track(sb: Sandbox, http: requests.Session, body: Any, headers: dict[str, str] = AUTH) -> requests.Response:
    return http.post(f"{sb.url}/braze/users/track", json=body, headers=headers)


def event(user: str = "user-1", name: str = "Signed Up", **fields: Any) -> dict[str, Any]:
    return {"external_id": user, "name": name, "time": TIME, **fields}


def purchase(user: str = "user-1", **fields: Any) -> dict[str, Any]:
    return {"external_id": user, "product_id": "sku-1", "currency": "EUR", "price": 19.5, "time": TIME, **fields}


def test_attributes_events_and_purchases_are_taken_with_201_and_kept_by_external_id(
    sb: Sandbox, http: requests.Session
) -> None:
    body = {
        "attributes": [{"external_id": "user-1", "email": "ada@example.com", "first_name": "Ada", "plan": "pro"}],
        "events": [event(properties={"plan": "pro"}), event("user-2", "Trial Started")],
        "purchases": [purchase(quantity=2, properties={"name": "Mug"})],
        "partner": "cdphub",  # unknown top-level keys are ignored
    }

    answer = track(sb, http, body)

    assert answer.status_code == 201, answer.text
    assert answer.json() == {
        "message": "success",
        "attributes_processed": 1,
        "events_processed": 2,
        "purchases_processed": 1,
    }
    assert answer.headers["X-RateLimit-Limit"] == "3000"
    assert answer.headers["X-RateLimit-Remaining"] == "2999"
    assert 0 < int(answer.headers["X-RateLimit-Reset"]) - time.time() <= 4  # epoch seconds, the window's end
    users = sb.braze_users()
    assert users["user-1"] == {
        "external_id": "user-1",
        "attributes": {"email": "ada@example.com", "first_name": "Ada", "plan": "pro"},
    }
    assert users["user-2"] == {"external_id": "user-2", "attributes": {}}  # a new external_id creates the user
    assert sb.braze_events("user-1") == [
        {"user": "user-1", "name": "Signed Up", "time": TIME, "properties": {"plan": "pro"}}
    ]
    assert [e["name"] for e in sb.braze_events()] == ["Signed Up", "Trial Started"]
    assert sb.braze_purchases() == [
        {
            "user": "user-1",
            "product_id": "sku-1",
            "currency": "EUR",
            "price": 19.5,
            "time": TIME,
            "quantity": 2,
            "properties": {"name": "Mug"},
        }
    ]
    counters = sb.counters
    assert (counters["braze_calls"], counters["braze_objects"], counters["braze_profiles"]) == (1, 4, 2)


def test_only_the_arrays_sent_are_counted_in_the_answer(sb: Sandbox, http: requests.Session) -> None:
    assert track(sb, http, {"events": [event()]}).json() == {"message": "success", "events_processed": 1}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-key"}, {"Authorization": f'Bearer "{KEY}"'}, {"Authorization": KEY}],
    ids=["missing", "wrong", "quoted", "not bearer"],
)
def test_a_missing_wrong_or_quoted_key_is_401_invalid_api_key(
    sb: Sandbox, http: requests.Session, headers: dict[str, str]
) -> None:
    answer = track(sb, http, {"events": [event()]}, headers)

    assert (answer.status_code, answer.json()) == (401, {"message": "Invalid API Key"})
    assert (sb.counters["braze_401"], sb.counters["braze_calls"]) == (1, 0)
    assert sb.braze_events() == []


def test_the_keys_are_a_secret_setting_redacted_wherever_they_are_shown(sb: Sandbox, http: requests.Session) -> None:
    changed = http.post(f"{sb.url}/_sandbox/config", json={"braze_api_keys": {"ops": "ops-braze-key"}})
    assert changed.json()["settings"]["braze_api_keys"] == {"ops": "[REDACTED]"}

    assert track(sb, http, {"events": [event()]}).status_code == 401  # the default key is no longer one
    assert track(sb, http, {"events": [event()]}, {"Authorization": "Bearer ops-braze-key"}).status_code == 201

    assert http.get(f"{sb.url}/_sandbox").json()["settings"]["braze_api_keys"] == {"ops": "[REDACTED]"}
    logged = repr(sb.received())
    assert "ops-braze-key" not in logged
    assert KEY not in logged
    assert sb.received(service="braze")[0]["headers"]["Authorization"] == "[REDACTED]"


def test_more_objects_than_the_limit_in_total_is_a_400_that_keeps_nothing(sb: Sandbox, http: requests.Session) -> None:
    body = {"attributes": [{"external_id": f"u{n}"} for n in range(40)], "events": [event() for _ in range(36)]}

    answer = track(sb, http, body)

    assert (answer.status_code, answer.json()) == (400, {"message": "Max Input Length Exceeded"})
    assert (sb.braze_users(), sb.braze_events(), sb.counters["braze_refused"]) == ({}, [], 1)
    body["events"].pop()
    assert track(sb, http, body).status_code == 201  # 75 objects


def test_the_object_limit_is_a_setting_for_mau_contracts(sb: Sandbox, http: requests.Session) -> None:
    sb.configure(braze_object_limit=50)

    assert track(sb, http, {"events": [event() for _ in range(51)]}).status_code == 400
    assert track(sb, http, {"events": [event() for _ in range(50)]}).status_code == 201


@pytest.mark.parametrize(
    ("array", "item", "error"),
    [
        ("events", event(properties={"$browser": "Firefox"}), "'properties' is not valid: the key '$browser' starts"),
        (
            "events",
            event(properties={"event_name": "x"}),
            "'properties' is not valid: the key 'event_name' is reserved",
        ),
        ("events", {"external_id": "user-1", "time": TIME}, "'name' is required"),
        ("events", event(name="$purchase"), "'name' is not valid"),
        ("events", {"external_id": "user-1", "name": "Signed Up"}, "'time' is required"),
        ("events", event(time="yesterday"), "'time' is not valid"),
        ("events", {"name": "Signed Up", "time": TIME}, "'external_id', 'braze_id', 'user_alias', 'email' or 'phone'"),
        ("events", event(user="undefined"), "provided external_id is blacklisted and disallowed"),
        ("events", {**event(), "user_alias": {"alias_name": "a-1"}, "external_id": None}, "'user_alias' needs both"),
        ("purchases", purchase(quantity=101), "'quantity' is not valid"),
        ("purchases", purchase(quantity=0), "'quantity' is not valid"),
        ("purchases", purchase(currency="EURO"), "'currency' is not valid"),
        ("purchases", purchase(currency="eur"), "'currency' is not valid"),
        ("purchases", purchase(price="19.50"), "'price' is not valid"),
        ("purchases", {**purchase(), "product_id": None}, "'product_id' is required"),
        ("attributes", {"external_id": "user-1", "email": "ada@"}, "The value provided for the 'email' field is"),
        ("attributes", {"external_id": "user-1", "gender": "female"}, "'gender' is not valid"),
        ("attributes", {"external_id": "user-1", "dob": "10/12/1990"}, "'dob' is not valid"),
        ("attributes", {"external_id": "user-1", "$add": ["x"]}, "'$add' is not a valid attribute name"),
    ],
)
def test_an_invalid_object_is_a_minor_error_in_a_201_and_the_others_are_kept(
    sb: Sandbox, http: requests.Session, array: str, item: dict[str, Any], error: str
) -> None:
    good = {"attributes": {"external_id": "user-2", "plan": "pro"}, "events": event("user-2"), "purchases": purchase()}

    answer = track(sb, http, {array: [good[array], item, good[array]]})

    assert answer.status_code == 201, answer.text
    body = answer.json()
    (minor,) = body["errors"]
    assert (minor["input_array"], minor["index"]) == (array, 1)
    assert minor["type"].startswith(error)
    assert (body["message"], body[f"{array}_processed"]) == ("success", 2)
    assert sb.counters["braze_minor_errors"] == 1
    assert sb.counters["braze_objects"] == 2


def test_when_no_object_is_valid_the_answer_is_the_valid_data_400_naming_each(
    sb: Sandbox, http: requests.Session
) -> None:
    answer = track(sb, http, {"attributes": [{"external_id": "user-1", "email": "nope"}], "events": [event(time=None)]})

    assert answer.status_code == 400
    assert answer.json() == {
        "message": NO_VALID_DATA,
        "errors": [
            {
                "type": "The value provided for the 'email' field is not a valid email.",
                "input_array": "attributes",
                "index": 0,
            },
            {"type": "'time' is required", "input_array": "events", "index": 0},
        ],
    }
    assert track(sb, http, {}).json() == {"message": NO_VALID_DATA, "errors": []}
    assert (sb.braze_users(), sb.counters["braze_refused"], sb.counters["braze_minor_errors"]) == ({}, 2, 0)


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"[]", b'{"events": {"name": "x"}}'],
    ids=["not JSON", "not an object", "not an array"],
)
def test_a_body_that_is_not_a_users_track_request_is_400_bad_request(
    sb: Sandbox, http: requests.Session, raw: bytes
) -> None:
    headers = {**AUTH, "Content-Type": "application/json"}
    answer = http.post(f"{sb.url}/braze/users/track", data=raw, headers=headers)

    assert (answer.status_code, answer.json()) == (400, {"message": "Bad Request"})


def test_other_paths_and_methods_are_404_invalid_url(sb: Sandbox, http: requests.Session) -> None:
    assert http.post(f"{sb.url}/braze/users/track/", json={}, headers=AUTH).status_code == 404
    assert http.post(f"{sb.url}/braze/messages/send", json={}, headers=AUTH).json() == {"message": "Invalid URL"}
    assert http.get(f"{sb.url}/braze/users/track", headers=AUTH).status_code == 404


def test_attributes_set_unset_increment_and_edit_arrays(sb: Sandbox, http: requests.Session) -> None:
    first = {"external_id": "user-1", "plan": "pro", "nickname": "ada", "logins": 1, "tags": ["a", "b"]}
    then = {"external_id": "user-1", "nickname": None, "logins": {"inc": 2}, "tags": {"add": ["c"], "remove": ["a"]}}
    assert track(sb, http, {"attributes": [first]}).status_code == 201
    assert track(sb, http, {"attributes": [then]}).status_code == 201

    assert sb.braze_users()["user-1"]["attributes"] == {"plan": "pro", "logins": 3, "tags": ["b", "c"]}


def test_a_user_alias_makes_a_profile_only_when_update_existing_only_is_false(
    sb: Sandbox, http: requests.Session
) -> None:
    alias = {"alias_name": "anon-1", "alias_label": "anonymous_id"}
    update_only = {"user_alias": alias, "name": "Viewed Pricing", "time": TIME}  # Braze's default for an alias

    assert track(sb, http, {"events": [update_only]}).status_code == 201
    assert (sb.braze_users(), sb.braze_events()) == ({}, [])

    assert track(sb, http, {"events": [{**update_only, "_update_existing_only": False}]}).status_code == 201
    assert sb.braze_users() == {"user_alias:anonymous_id:anon-1": {"user_alias": alias, "attributes": {}}}
    assert sb.braze_events("user_alias:anonymous_id:anon-1")[0]["name"] == "Viewed Pricing"


def test_update_existing_only_leaves_unknown_external_ids_alone(sb: Sandbox, http: requests.Session) -> None:
    answer = track(sb, http, {"attributes": [{"external_id": "user-9", "plan": "pro", "_update_existing_only": True}]})

    assert answer.json() == {"message": "success", "attributes_processed": 1}
    assert sb.braze_users() == {}


def test_throttling_is_429_with_the_reset_in_epoch_seconds(sb: Sandbox, http: requests.Session) -> None:
    sb.configure(rate_429=1.0, retry_after=5)

    answer = track(sb, http, {"events": [event()]})

    assert (answer.status_code, answer.json()) == (429, {"message": "Too Many Requests"})
    assert answer.headers["X-RateLimit-Remaining"] == "0"
    assert answer.headers["X-RateLimit-Limit"] == "3000"
    assert 4 <= int(answer.headers["X-RateLimit-Reset"]) - time.time() <= 6
    assert (sb.counters["braze_429"], sb.braze_events()) == (1, [])


def test_the_rate_window_refuses_calls_over_the_limit_until_it_ends(sb: Sandbox, http: requests.Session) -> None:
    sb.configure(braze_rate_limit=2)

    answers = [track(sb, http, {"events": [event()]}) for _ in range(3)]

    assert [a.status_code for a in answers] == [201, 201, 429]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["1", "0", "0"]
    assert answers[2].headers["X-RateLimit-Reset"] == answers[0].headers["X-RateLimit-Reset"]
    assert len(sb.braze_events()) == 2


def test_server_errors_alternate_502_503_and_a_504_after_the_data_was_kept(sb: Sandbox, http: requests.Session) -> None:
    sb.configure(error_rate=1.0)

    answers = [track(sb, http, {"events": [event(name=f"Call {n}")]}) for n in range(3)]

    assert [a.status_code for a in answers] == [502, 503, 504]
    assert answers[0].headers["Content-Type"].startswith("text/html")  # not JSON: from in front of Braze
    assert [e["name"] for e in sb.braze_events()] == ["Call 2"]  # a retry after the 504 sends it twice
    assert (sb.counters["braze_faults"], sb.counters["braze_lost_answers"]) == (3, 1)


def test_control_reads_links_and_reset(sb: Sandbox, http: requests.Session) -> None:
    track(sb, http, {"attributes": [{"external_id": "user-1", "plan": "pro"}], "events": [event()]})
    track(sb, http, {"purchases": [purchase()]})
    links = http.get(f"{sb.url}/_sandbox").json()["links"]

    assert links["braze_rest_endpoint"] == f"{sb.url}/braze"
    assert http.get(links["braze_users"]).json() == {
        "users": {"user-1": {"external_id": "user-1", "attributes": {"plan": "pro"}}}
    }
    assert [e["name"] for e in http.get(links["braze_events"]).json()["events"]] == ["Signed Up"]
    assert [p["product_id"] for p in http.get(links["braze_purchases"]).json()["purchases"]] == ["sku-1"]

    sb.configure(braze_object_limit=10)
    assert http.post(f"{sb.url}/_sandbox/reset").json() == {"ok": True}
    assert (sb.braze_users(), sb.braze_events(), sb.braze_purchases()) == ({}, [], [])
    assert (sb.counters["braze_calls"], sb.counters["braze_profiles"]) == (0, 0)
    assert sb.settings.braze_object_limit == 10  # settings survive a reset


def test_the_scalar_settings_are_flags_of_the_sandbox_command() -> None:
    options = (
        Command()
        .create_parser("manage.py", "sandbox")
        .parse_args(["--braze-object-limit", "50", "--braze-rate-limit", "10"])
    )
    assert (options.braze_object_limit, options.braze_rate_limit) == (50, 10)
    with pytest.raises(ValueError, match="braze_object_limit must be a whole number"):
        Sandbox(braze_object_limit=-1)

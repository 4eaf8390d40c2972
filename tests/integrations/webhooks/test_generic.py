"""The generic source function: HMAC settings, event selection, the mapping and its defaults, dedupe keys,
and the messages a marketer reads when the settings or a payload do not fit."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.utils.datastructures import CaseInsensitiveMapping

from deliveries.ingest.normalisation import normalise
from integrations.webhooks.base import Incoming, WebhookError
from integrations.webhooks.generic import DEFAULT_MAPPING, Generic

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "generic"
RECEIVED_AT = datetime(2024, 5, 6, 12, 0, tzinfo=UTC)
SECRET = "whsec_generic_test_3f9a1c"

TYPEFORM = {
    "events": "@",
    "mapping": {
        "type": "'track'",
        "event": "'Form Submitted'",
        "userId": "form_response.hidden.user_id",
        "properties": {
            "form_id": "form_response.form_id",
            "form_title": "form_response.definition.title",
            "email": "form_response.answers[?field.ref=='email'] | [0].email",
            "nps": "form_response.answers[?field.ref=='nps'] | [0].number",
            "topic": "form_response.answers[?field.ref=='topic'] | [0].choice.label",
        },
        "timestamp": "form_response.submitted_at",
        "messageId": "event_id",
    },
}
CALENDLY = {
    "mapping": {
        "type": "'identify'",
        "userId": "payload.email",
        "traits": {
            "email": "payload.email",
            "name": "payload.name",
            "company": "payload.questions_and_answers[?question=='Company'] | [0].answer",
            "timezone": "payload.timezone",
        },
        "context": {"campaign": {"name": "payload.tracking.utm_campaign", "source": "payload.tracking.utm_source"}},
        "timestamp": "created_at",
        "messageId": "payload.uri",
    }
}
GITHUB_STAR = {
    "signature_header": "X-Hub-Signature-256",
    "signature_prefix": "sha256=",
    "mapping": {
        "type": "'track'",
        "event": "'Repository Starred'",
        "userId": "to_string(sender.id)",
        "properties": {"repository": "repository.full_name", "stars": "repository.stargazers_count"},
        "timestamp": "starred_at",
    },
}
GITHUB_PUSH = {
    "events": "commits",
    "mapping": {
        "type": "'track'",
        "event": "'Commit Pushed'",
        "userId": "author.username",
        "properties": {"sha": "id", "message": "message", "modified_files": "length(modified)"},
        "timestamp": "timestamp",
        "messageId": "id",
    },
}


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def incoming(body: bytes | Any, **headers: str) -> Incoming:
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    return Incoming(body, CaseInsensitiveMapping(headers), json.loads(body), RECEIVED_AT)


def signature(message: bytes, algorithm: str = "sha256", encoding: str = "hex", secret: str = SECRET) -> str:
    """Sign as the tool would, without the code under test."""
    digest = hmac.new(secret.encode(), message, getattr(hashlib, algorithm)).digest()
    return digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()


def events_of(config: dict[str, Any], body: bytes | Any) -> list[dict[str, Any]]:
    return Generic(config, {}).events(incoming(body))


def refusal(config: dict[str, Any], body: bytes | Any) -> WebhookError:
    with pytest.raises(WebhookError) as caught:
        events_of(config, body)
    assert caught.value.status == 400
    return caught.value


def hash_id(item: Any) -> str:
    canonical = json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return "generic-" + hashlib.sha256(canonical).hexdigest()[:32]


# Mapping real payloads ---------------------------------------------------------------------------------


def test_a_typeform_response_becomes_one_track_with_answers_picked_by_ref() -> None:
    assert events_of(TYPEFORM, fixture("typeform_form_response")) == [
        {
            "type": "track",
            "event": "Form Submitted",
            "userId": "usr_7f3a9c",
            "properties": {
                "form_id": "lT4Z3j",
                "form_title": "Product feedback",
                "email": "ada@example.com",
                "nps": 9,
                "topic": "Pricing",
            },
            "timestamp": "2024-03-12T09:43:15Z",
            "messageId": "01HRW4ZK6Q3J1XGJ8Y0V2S9T7M",
        }
    ]


def test_a_calendly_invitee_becomes_an_identify_with_traits_and_campaign_context() -> None:
    assert events_of(CALENDLY, fixture("calendly_invitee_created")) == [
        {
            "type": "identify",
            "userId": "grace@example.com",
            "traits": {
                "email": "grace@example.com",
                "name": "Grace Hopper",
                "company": "Acme Corp",
                "timezone": "Europe/Paris",
            },
            "context": {"campaign": {"name": "spring-launch", "source": "newsletter"}},
            "timestamp": "2024-04-02T14:12:55.000000Z",
            "messageId": "https://api.calendly.com/scheduled_events/GBGBDCAADAEDCRZ2/invitees/"
            "7c1b2f3e-6d4a-4c8e-9f0b-2a5d8e1c3b47",
        }
    ]


def test_a_github_star_without_an_id_gets_the_hash_of_its_json_as_message_id() -> None:
    body = fixture("github_star")
    assert events_of(GITHUB_STAR, body) == [
        {
            "type": "track",
            "event": "Repository Starred",
            "userId": "583231",
            "properties": {"repository": "octocat/Hello-World", "stars": 81},
            "timestamp": "2024-05-06T08:15:30Z",
            # Pinned: a different hash after an upgrade would store the tools' retries a second time.
            "messageId": "generic-458732b59f987cff8b5bb8e0cafc1b50",
        }
    ]
    assert hash_id(json.loads(body)) == "generic-458732b59f987cff8b5bb8e0cafc1b50"


def test_a_github_push_makes_one_event_per_commit_mapped_against_the_commit() -> None:
    assert events_of(GITHUB_PUSH, fixture("github_push")) == [
        {
            "type": "track",
            "event": "Commit Pushed",
            "userId": "octocat",
            "properties": {
                "sha": "b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327",
                "message": "Fix the README typo",
                "modified_files": 1,
            },
            "timestamp": "2024-05-06T10:15:30+02:00",
            "messageId": "b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327",
        },
        {
            "type": "track",
            "event": "Commit Pushed",
            "userId": "monalisa",
            "properties": {
                "sha": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
                "message": "Add a contributing guide",
                "modified_files": 0,
            },
            "timestamp": "2024-05-06T10:17:02+02:00",
            "messageId": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
        },
    ]


def test_the_default_mapping_reads_a_list_of_events_with_unix_seconds_milliseconds_and_iso_times() -> None:
    body = fixture("events_list")
    assert events_of({"events": "events"}, body) == [
        {
            "type": "track",
            "event": "user.signed_up",
            "userId": "u_1001",
            "anonymousId": "ada@example.com",
            "properties": {"plan": "starter", "referrer": "newsletter"},
            "timestamp": "2024-05-06T09:55:30.000Z",
            "messageId": "evt_01HX2K8M",
        },
        {
            "type": "track",
            "event": "subscription.upgraded",
            "userId": "u_1001",
            "anonymousId": "ada@example.com",
            "properties": {"plan": "pro", "previous_plan": "starter", "mrr": 49.0},
            "timestamp": "2024-05-06T09:56:31.250Z",
            "messageId": "evt_01HX2K9Q",
        },
        {
            "type": "track",
            "event": "newsletter.subscribed",
            "anonymousId": "grace@example.com",
            "properties": {"list": "product-updates"},
            "timestamp": "2024-05-06T10:01:12Z",
            "messageId": hash_id(json.loads(body)["events"][2]),
        },
    ]


@pytest.mark.parametrize(
    ("config", "name"),
    [
        (TYPEFORM, "typeform_form_response"),
        (CALENDLY, "calendly_invitee_created"),
        (GITHUB_STAR, "github_star"),
        (GITHUB_PUSH, "github_push"),
        ({"events": "events"}, "events_list"),
    ],
)
def test_every_mapped_fixture_is_accepted_by_the_tracking_apis_normalise(config: dict[str, Any], name: str) -> None:
    for event in events_of(config, fixture(name)):
        assert normalise(event, event["type"], RECEIVED_AT)["messageId"] == event["messageId"]


def test_the_default_mapping_takes_the_whole_object_as_properties_when_it_has_no_data() -> None:
    payload = {"event": "Lead Captured", "email": "lin@example.com", "source": "landing-page", "id": 4711}
    assert events_of({}, payload) == [
        {
            "type": "track",
            "event": "Lead Captured",
            "anonymousId": "lin@example.com",
            "properties": payload,
            "messageId": "4711",
        }
    ]
    assert Generic({}, {}).config.mapping == DEFAULT_MAPPING


def test_at_selects_each_element_when_the_payload_itself_is_a_list() -> None:
    payload = [{"event": "A", "userId": "u1", "id": "1"}, {"event": "B", "userId": "u2", "id": "2"}]
    mapping = {"type": "'track'", "event": "event", "userId": "userId", "messageId": "id"}
    assert events_of({"mapping": mapping}, payload) == [
        {"type": "track", "event": "A", "userId": "u1", "messageId": "1"},
        {"type": "track", "event": "B", "userId": "u2", "messageId": "2"},
    ]


def test_the_type_can_come_from_the_payload_as_well_as_from_a_literal() -> None:
    mapping = {"type": "kind", "event": "name", "userId": "user", "traits": "traits", "messageId": "id"}
    payload = {
        "items": [
            {"kind": "identify", "user": "u1", "traits": {"plan": "pro"}, "id": "a"},
            {"kind": "track", "name": "Plan Changed", "user": "u1", "id": "b"},
        ]
    }
    assert events_of({"events": "items[]", "mapping": mapping}, payload) == [
        {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}, "messageId": "a"},
        {"type": "track", "event": "Plan Changed", "userId": "u1", "messageId": "b"},
    ]


@pytest.mark.parametrize(
    ("value", "iso"),
    [
        (1714989330, "2024-05-06T09:55:30.000Z"),
        (1714989330.5, "2024-05-06T09:55:30.500Z"),
        (1714989330250, "2024-05-06T09:55:30.250Z"),
        ("2024-05-06T09:55:30+02:00", "2024-05-06T09:55:30+02:00"),
    ],
)
def test_a_numeric_timestamp_is_unix_seconds_or_milliseconds_and_a_string_is_kept(value: Any, iso: str) -> None:
    (event,) = events_of({}, {"userId": "u1", "timestamp": value})
    assert event["timestamp"] == iso


def test_the_same_object_gets_the_same_hash_whatever_its_key_order_and_another_object_another() -> None:
    mapping = {"type": "'track'", "event": "'Ping'", "userId": "user"}
    first = events_of({"mapping": mapping}, json.loads('{"user": "u1", "n": 1, "tags": ["a", "b"]}'))
    again = events_of({"mapping": mapping}, json.loads('{"tags": ["a", "b"], "n": 1, "user": "u1"}'))
    other = events_of({"mapping": mapping}, {"user": "u1", "n": 2, "tags": ["a", "b"]})
    assert first[0]["messageId"] == again[0]["messageId"] == hash_id({"user": "u1", "n": 1, "tags": ["a", "b"]})
    assert other[0]["messageId"] != first[0]["messageId"]


def test_an_empty_message_id_falls_back_to_the_hash_and_a_number_is_made_a_string() -> None:
    assert events_of({}, {"userId": "u1", "id": ""})[0]["messageId"] == hash_id({"userId": "u1", "id": ""})
    assert events_of({}, {"userId": "u1", "id": 42})[0]["messageId"] == "42"


def test_nothing_null_is_kept_in_the_event() -> None:
    mapping = {"type": "'track'", "event": "'Ping'", "userId": "user", "anonymousId": "anon", "context": "ctx"}
    assert events_of({"mapping": mapping}, {"user": "u1", "ctx": None}) == [
        {"type": "track", "event": "Ping", "userId": "u1", "messageId": hash_id({"user": "u1", "ctx": None})}
    ]


# Signatures --------------------------------------------------------------------------------------------


def signed(config: dict[str, Any]) -> Generic:
    return Generic(config, {"signing_secret": SECRET})


def test_a_github_request_signed_with_the_sha256_prefix_is_accepted() -> None:
    body = fixture("github_star")
    signed(GITHUB_STAR).verify(incoming(body, **{"X-Hub-Signature-256": "sha256=" + signature(body)}))


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512"])
@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_each_algorithm_and_encoding_verifies_the_raw_body(algorithm: str, encoding: str) -> None:
    config = {"signature_header": "X-Signature", "signature_algorithm": algorithm, "signature_encoding": encoding}
    body = fixture("events_list")
    signed(config).verify(incoming(body, **{"x-signature": signature(body, algorithm, encoding)}))
    with pytest.raises(WebhookError) as caught:
        signed(config).verify(incoming(body + b" ", **{"X-Signature": signature(body, algorithm, encoding)}))
    assert (caught.value.status, caught.value.code) == (401, "invalid_signature")


def test_an_upper_case_hex_signature_without_its_prefix_is_accepted() -> None:
    body = fixture("github_star")
    signed(GITHUB_STAR).verify(incoming(body, **{"X-Hub-Signature-256": signature(body).upper()}))


def test_a_timestamp_dot_body_signature_covers_the_timestamp_header() -> None:
    config = {
        "signature_header": "X-Webhook-Signature",
        "signature_encoding": "base64",
        "signed_content": "timestamp.body",
        "timestamp_header": "X-Webhook-Timestamp",
    }
    body = fixture("typeform_form_response")
    good = signature(b"1714989330." + body, encoding="base64")
    signed(config).verify(incoming(body, **{"X-Webhook-Signature": good, "X-Webhook-Timestamp": "1714989330"}))
    with pytest.raises(WebhookError) as caught:
        signed(config).verify(incoming(body, **{"X-Webhook-Signature": good, "X-Webhook-Timestamp": "1714989331"}))
    assert caught.value.code == "invalid_signature"
    with pytest.raises(WebhookError) as caught:
        signed(config).verify(incoming(body, **{"X-Webhook-Signature": good}))
    assert (caught.value.status, caught.value.code) == (401, "missing_signature")
    assert caught.value.message == "The X-Webhook-Timestamp header is missing: the request is not signed."


def test_a_missing_signature_header_is_refused_with_its_name() -> None:
    with pytest.raises(WebhookError) as caught:
        signed(GITHUB_STAR).verify(incoming(fixture("github_star")))
    assert (caught.value.status, caught.value.code) == (401, "missing_signature")
    assert caught.value.message == "The X-Hub-Signature-256 header is missing: the request is not signed."


def test_a_signature_made_with_another_secret_is_refused_with_what_to_check() -> None:
    body = fixture("github_star")
    wrong = "sha256=" + signature(body, secret="an-old-secret")
    with pytest.raises(WebhookError) as caught:
        signed(GITHUB_STAR).verify(incoming(body, **{"X-Hub-Signature-256": wrong}))
    assert (caught.value.status, caught.value.code) == (401, "invalid_signature")
    assert caught.value.message == (
        "The X-Hub-Signature-256 header does not match the body signed with the source's signing secret: "
        "check the secret and the signature settings in the admin."
    )


def test_without_a_secret_nothing_is_verified() -> None:
    assert not Generic(GITHUB_STAR, {}).verifies
    assert signed(GITHUB_STAR).verifies


def test_a_secret_without_a_header_name_makes_the_source_misconfigured() -> None:
    with pytest.raises(WebhookError) as caught:
        Generic({}, {"signing_secret": SECRET})
    assert (caught.value.status, caught.value.code) == (503, "source_misconfigured")
    assert "config.signature_header: required when a signing secret is set" in caught.value.message


# Settings ----------------------------------------------------------------------------------------------


def test_the_defaults_and_the_example_settings_are_valid() -> None:
    assert Generic.validate({}, {}) == []
    for config in (TYPEFORM, CALENDLY, GITHUB_PUSH):
        assert Generic.validate(config, {}) == []
    assert Generic.validate(GITHUB_STAR, {"signing_secret": SECRET}) == []


def test_a_secret_without_a_header_name_is_one_clear_problem() -> None:
    assert Generic.validate({}, {"signing_secret": SECRET}) == [
        "config.signature_header: required when a signing secret is set: the name of the header the tool sends "
        "its signature in (e.g. X-Hub-Signature-256)"
    ]


def test_an_invalid_expression_is_named_by_its_path() -> None:
    problems = Generic.validate({"events": "items[", "mapping": {"type": "'track'", "userId": "user.id("}}, {})
    assert len(problems) == 2
    assert problems[0].startswith("config.events: 'items[' is not a valid JMESPath expression")
    assert problems[1].startswith("config.mapping.userId: 'user.id(' is not a valid JMESPath expression")


def test_a_mapping_without_type_or_identity_says_what_it_needs() -> None:
    assert Generic.validate({"mapping": {"event": "name", "properties": "@"}}, {}) == [
        "config.mapping.type: required: an expression, or a fixed type in single quotes like \"'track'\"",
        "config.mapping.userId: required (or mapping.anonymousId): every event needs one of them",
    ]


def test_a_bare_event_type_is_read_as_a_field_so_the_fix_is_named() -> None:
    assert Generic.validate({"mapping": {"type": "track", "userId": "id"}}, {}) == [
        "config.mapping.type: 'track' reads a field named track; write \"'track'\" for a fixed type"
    ]


def test_a_fixed_type_that_is_not_an_event_type_is_refused() -> None:
    assert Generic.validate({"mapping": {"type": "'purchase'", "userId": "id"}}, {}) == [
        "config.mapping.type: 'purchase' is not an event type, use one of identify, track, page, screen, group, alias"
    ]


def test_an_unknown_mapping_field_is_refused_so_a_typo_is_not_ignored() -> None:
    assert Generic.validate({"mapping": {"type": "'track'", "userid": "id"}}, {}) == [
        "config.mapping.userid: unknown field, use one of type, event, name, category, userId, anonymousId, "
        "previousId, groupId, properties, traits, context, integrations, timestamp, messageId",
        "config.mapping.userId: required (or mapping.anonymousId): every event needs one of them",
    ]


def test_timestamp_body_needs_a_timestamp_header_and_the_algorithm_is_one_of_three() -> None:
    assert Generic.validate({"signed_content": "timestamp.body", "signature_algorithm": "md5"}, {}) == [
        "config.signature_algorithm: must be one of 'sha256', 'sha1', 'sha512', not 'md5'"
    ]
    assert Generic.validate({"signed_content": "timestamp.body", "signature_header": "X-Sig"}, {}) == [
        "config.timestamp_header: required when signed_content is timestamp.body"
    ]


# Payloads that do not fit ------------------------------------------------------------------------------


def test_the_default_mapping_on_a_payload_without_identity_names_both_expressions() -> None:
    error = refusal({}, fixture("calendly_invitee_created"))
    assert error.code == "mapping_incomplete"
    assert error.message == (
        "The mapping left required fields empty, so nothing was stored: element 0: no userId or anonymousId "
        "(mapping.userId 'userId || user_id || user.id' found nothing; "
        "mapping.anonymousId 'anonymousId || email || user.email' found nothing). "
        "Fix the source's mapping (or what the tool sends); the tool's retries are then stored."
    )


def test_one_element_without_a_user_refuses_the_request_and_names_that_element() -> None:
    payload = json.loads(fixture("events_list"))
    del payload["events"][1]["user"]
    error = refusal({"events": "events"}, payload)
    assert error.code == "mapping_incomplete"
    assert error.message.startswith(
        "The mapping left required fields empty, so nothing was stored: element 1: no userId or anonymousId "
        "(mapping.userId 'userId || user_id || user.id' found nothing;"
    )
    assert "element 0" not in error.message
    assert "element 2" not in error.message


def test_a_track_without_an_event_name_and_a_type_not_allowed_are_both_named() -> None:
    mapping = {"type": "kind", "event": "name", "userId": "user"}
    payload = [{"kind": "track", "user": "u1"}, {"kind": "purchase", "user": "u1"}, {"kind": "track", "user": "u1"}]
    error = refusal({"mapping": mapping}, payload)
    assert error.message == (
        "The mapping left required fields empty, so nothing was stored: "
        "element 0: no event (mapping.event 'name' found nothing); "
        "element 1: type 'purchase' from mapping.type is not one of identify, track, page, screen, group, alias; "
        "element 2: no event (mapping.event 'name' found nothing). "
        "Fix the source's mapping (or what the tool sends); the tool's retries are then stored."
    )


def test_a_type_that_maps_to_nothing_and_the_fields_a_type_needs_are_named() -> None:
    mapping = {"type": "kind", "userId": "user", "anonymousId": "anon"}
    payload = [{"user": "u1"}, {"kind": "group", "user": "u1"}, {"kind": "alias", "anon": "a1"}]
    assert refusal({"mapping": mapping}, payload).message == (
        "The mapping left required fields empty, so nothing was stored: "
        "element 0: no type (mapping.type 'kind' found nothing); "
        "element 1: no groupId (mapping.groupId is not set); "
        "element 2: no previousId (mapping.previousId is not set); "
        "element 2: no userId (mapping.userId 'user' found nothing). "
        "Fix the source's mapping (or what the tool sends); the tool's retries are then stored."
    )


def test_only_the_first_five_failures_are_listed() -> None:
    error = refusal({"events": "events"}, {"events": [{"n": n} for n in range(8)]})
    assert error.message.count("element ") == 5
    assert "element 4: no userId" in error.message
    assert "; and 3 more. Fix the source's mapping" in error.message


def test_an_expression_that_fails_on_the_data_refuses_the_request_instead_of_crashing() -> None:
    mapping = {"type": "'track'", "event": "'Tagged'", "userId": "user", "properties": {"tags": "join(', ', tags)"}}
    error = refusal({"mapping": mapping}, {"user": "u1", "tags": None})
    assert error.code == "mapping_incomplete"
    assert error.message.startswith(
        "The mapping left required fields empty, so nothing was stored: element 0: mapping.properties "
        "{'tags': \"join(', ', tags)\"} failed: In function join()"
    )


@pytest.mark.parametrize("payload", [{"items": []}, {"other": [1]}, {"items": [None]}])
def test_an_events_expression_that_selects_nothing_is_a_clear_400(payload: Any) -> None:
    error = refusal({"events": "items"}, payload)
    assert error.code == "no_events"
    assert error.message == (
        "config.events 'items' selects nothing in this payload, so there is no event to store: "
        "check the expression against a payload the tool sends."
    )

"""A JavaScript source function through the real endpoint, POST /v1/webhooks/<write key>: what `onRequest` emits is
stored and routed like any event, what it returns goes back to the tool, what it throws decides the status the tool
gets (and is kept as a rejected event for the Debugger), and a signing secret makes the endpoint check the body."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson
import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from deliveries.models import Delivery, Event
from integrations.models import Destination, Function, Source

SECRET = "whsec_fn_source_5e0c8b1a"
API_TOKEN = "tok_crm_live_91d4e2"

EMIT = """async function onRequest(request, settings) {
  const body = request.json();
  for (const item of body.items) {
    Segment.track({userId: item.user, event: settings.prefix + item.what, properties: {id: item.id}});
  }
  Segment.identify({userId: body.items[0].user, traits: {source: request.headers.get('x-tool')}});
}"""


def make_source(code: str = EMIT, **config: Any) -> Source:
    """A source of kind "function" running `code`; its settings: a plain prefix, a sensitive apiToken."""
    function = Function(
        name="Tool hooks",
        slug="tool-hooks",
        kind="source",
        code=code,
        settings=[{"name": "prefix", "type": "string"}, {"name": "apiToken", "type": "string", "sensitive": True}],
    )
    function.full_clean()
    function.save()
    settings = {"apiToken": API_TOKEN}
    if config.pop("signed", False):
        settings["signing_secret"] = SECRET
    source = Source(
        name="Tool",
        slug="tool",
        kind="function",
        write_key="wk_fn_tool",
        config={"function": "tool-hooks", "settings": {"prefix": "Tool "}, **config},
        settings=settings,
    )
    source.full_clean()
    source.save()
    return source


def post(body: Any, *, raw: bytes | None = None, content_type: str = "application/json", **headers: str):
    data = raw if raw is not None else orjson.dumps(body)
    return Client().post("/v1/webhooks/wk_fn_tool", data, content_type=content_type, **headers)


def items(*ids: int) -> dict[str, Any]:
    return {"items": [{"id": i, "user": f"user-{i}", "what": "Happened"} for i in ids]}


def rejected(source: Source) -> Event:
    return Event.objects.get(source=source, status="rejected")


def test_the_events_it_emits_are_stored_and_routed_like_any_other(db) -> None:
    source = make_source()
    destination = Destination.objects.create(
        name="Hook", slug="hook", vendor="webhook", config={"url": "https://example.com/in"}, paused=True
    )
    destination.sources.add(source)

    response = post(items(1, 2), HTTP_X_TOOL="crm")

    assert response.status_code == 200
    assert response.json() == {"success": True, "events": 3}
    events = Event.objects.filter(source=source, status="accepted").order_by("type", "message_id")
    assert [(e.type, e.event, e.user_id) for e in events] == [
        ("identify", "", "user-1"),
        ("track", "Tool Happened", "user-1"),
        ("track", "Tool Happened", "user-2"),
    ]
    assert events[0].payload["traits"] == {"source": "crm"}
    assert events[1].payload["properties"] == {"id": 1}
    assert Delivery.objects.filter(destination=destination, status="pending").count() == 3
    source.refresh_from_db()
    assert (source.last_request_status, source.last_request_result) == (200, "3 event(s) stored")


def test_the_same_webhook_sent_twice_is_stored_once(db) -> None:
    source = make_source()
    assert post(items(1)).json() == {"success": True, "events": 2}

    again = post(items(1))

    assert again.status_code == 200
    assert again.json() == {"success": True, "events": 0, "duplicates": 2}
    assert Event.objects.filter(source=source).count() == 2


def test_a_message_id_the_function_gives_is_kept(db) -> None:
    source = make_source(
        "async function onRequest(request) { Segment.track({messageId: 'tool-' + request.json().id, "
        "userId: 'u1', event: 'Ticket Solved'}); }"
    )

    post({"id": 77})

    assert Event.objects.get(source=source).message_id == "tool-77"


def test_a_custom_response_goes_back_to_the_tool_and_the_events_are_stored_all_the_same(db) -> None:
    source = make_source(
        """async function onRequest(request) {
          const body = request.json();
          Segment.track({userId: 'u1', event: 'Challenge Seen'});
          return {status: 202, headers: {'X-Tool-Ack': 'yes'}, body: {challenge: body.challenge}};
        }"""
    )

    response = post({"challenge": "c-8f2e"})

    assert response.status_code == 202
    assert response["X-Tool-Ack"] == "yes"
    assert response["Content-Type"] == "application/json"
    assert orjson.loads(response.content) == {"challenge": "c-8f2e"}
    assert Event.objects.filter(source=source, status="accepted").count() == 1
    source.refresh_from_db()
    assert (source.last_request_status, source.last_request_result) == (202, "1 event(s) stored")


def test_a_function_that_emits_nothing_is_answered_200_with_no_events(db) -> None:
    source = make_source("async function onRequest(request) { if (request.json().kind === 'ping') return; }")

    response = post({"kind": "ping"})

    assert response.status_code == 200
    assert response.json() == {"success": True, "events": 0}
    assert not Event.objects.filter(source=source).exists()


def test_the_function_reads_the_url_and_its_settings(db) -> None:
    source = make_source(
        """async function onRequest(request, settings) {
          Segment.track({userId: request.url.searchParams.get('u'), event: settings.prefix + request.url.pathname,
            properties: {token: settings.apiToken === undefined ? 'missing' : 'given'}});
        }"""
    )

    Client().post("/v1/webhooks/wk_fn_tool?u=user-9", b"{}", content_type="application/json")

    event = Event.objects.get(source=source)
    assert (event.user_id, event.event) == ("user-9", "Tool /v1/webhooks/wk_fn_tool")
    assert event.payload["properties"] == {"token": "given"}


def test_a_form_encoded_body_reaches_request_text(db) -> None:
    source = make_source(
        """async function onRequest(request) {
          const form = new URLSearchParams(request.text());
          Segment.identify({userId: form.get('user'), traits: {email: form.get('email')}});
        }"""
    )

    response = post(None, raw=b"user=user-5&email=ada%40example.com", content_type="application/x-www-form-urlencoded")

    assert response.status_code == 200
    event = Event.objects.get(source=source)
    assert (event.user_id, event.payload["traits"]) == ("user-5", {"email": "ada@example.com"})


# What a throw tells the tool ------------------------------------------------------------------------------


def test_a_retry_error_asks_the_tool_to_send_again_later(db) -> None:
    source = make_source("async function onRequest() { throw new RetryError('the CRM lookup is down'); }")

    response = post(items(1))

    assert response.status_code == 503
    assert response["Retry-After"] == "60"
    assert response.json()["code"] == "function_retry"
    assert response.json()["message"].startswith("RetryError: the CRM lookup is down (at onRequest (function.js:1:")
    assert not Event.objects.filter(source=source, status="accepted").exists()


def test_an_event_segment_would_refuse_is_a_400(db) -> None:
    source = make_source("async function onRequest() { Segment.track({userId: 'u1', properties: {}}); }")

    response = post(items(1))

    assert response.status_code == 400
    assert response.json()["code"] == "message_rejected"
    assert response.json()["message"].startswith("ValidationError: Segment.track(): event is required")
    assert not Event.objects.filter(source=source, status="accepted").exists()


def test_any_other_throw_is_a_422_with_the_line(db) -> None:
    make_source("async function onRequest(request) {\n  const who = request.json().customer.id;\n}")

    response = post({"no": "customer"})

    assert response.status_code == 422
    assert response.json() == {
        "success": False,
        "code": "function_error",
        "message": "TypeError: Cannot read properties of undefined (reading 'id') (at onRequest (function.js:2:38))",
    }


def test_the_refusal_is_kept_as_a_rejected_event_with_the_reason_and_the_body(db) -> None:
    source = make_source(
        "async function onRequest() {\n  throw new InvalidEventPayload('no customer in this webhook');\n}"
    )

    post({"no": "customer"})

    event = rejected(source)
    assert event.reject_reason == (
        "message_rejected: InvalidEventPayload: no customer in this webhook (at onRequest (function.js:2:9))"
    )
    assert orjson.loads(event.payload["raw"]) == {"no": "customer"}
    source.refresh_from_db()
    assert source.last_request_status == 400
    assert source.last_request_result.startswith("message_rejected: InvalidEventPayload: no customer")


def test_the_console_output_given_with_a_refusal_has_the_secrets_redacted(db) -> None:
    source = make_source(
        """async function onRequest(request, settings) {
          console.log('calling the CRM with', settings.apiToken);
          throw new RetryError('CRM said 503');
        }"""
    )

    response = post(items(1))

    assert response.status_code == 503
    assert response.json()["message"].endswith("(console: calling the CRM with [REDACTED])")
    assert API_TOKEN not in rejected(source).reject_reason


def test_a_source_whose_function_has_no_on_request_asks_the_tool_to_retry(db) -> None:
    source = make_source()
    # Past the check on save (which refuses such code): the endpoint still says what is wrong.
    Function.objects.filter(slug="tool-hooks").update(code="async function onTrack() {}")

    response = post(items(1))

    assert response.status_code == 503
    assert response.json()["code"] == "source_misconfigured"
    assert response.json()["message"] == "The source function has no onRequest handler."
    assert rejected(source).reject_reason.startswith("source_misconfigured")


# Signatures ------------------------------------------------------------------------------------------------


def signature(body: bytes) -> str:
    return hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("prefix", ["", "sha256="])
def test_a_signed_source_takes_a_body_with_its_hmac(db, prefix: str) -> None:
    make_source(signed=True, signature_header="X-Tool-Signature")
    body = orjson.dumps(items(1))

    response = post(None, raw=body, HTTP_X_TOOL_SIGNATURE=prefix + signature(body))

    assert response.status_code == 200
    assert response.json()["events"] == 2


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_signature"),
        ({"HTTP_X_TOOL_SIGNATURE": signature(b"another body")}, "invalid_signature"),
    ],
    ids=["missing", "wrong"],
)
def test_a_signed_source_refuses_a_missing_or_wrong_signature_before_running_the_code(
    db, headers: dict[str, str], code: str
) -> None:
    source = make_source(
        "async function onRequest() { console.log('ran'); Segment.track({userId: 'u', event: 'Ran'}); }",
        signed=True,
        signature_header="X-Tool-Signature",
    )

    response = post(items(1), **headers)

    assert response.status_code == 401
    assert response.json()["code"] == code
    assert not Event.objects.filter(source=source, status="accepted").exists()
    assert rejected(source).reject_reason.startswith(f"{code}: ")


def test_a_signing_secret_without_a_signature_header_is_refused_on_save(db) -> None:
    with pytest.raises(ValidationError) as raised:
        make_source(signed=True)

    assert raised.value.message_dict == {
        "config": ["config.signature_header: required when a signing secret is set (e.g. X-Signature)"]
    }

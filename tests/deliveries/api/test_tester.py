"""POST /api/v1/destinations/<slug>/test: a dry run (routing, mapped payload, exact requests with secrets masked, why
it could not be sent; no HTTP, nothing stored), a test send (stored as a test, sent once, the outcome and the
delivery to poll), the Tracking API's refusals as 400s, who may test, and no secret in any answer."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import responses
from django.contrib.auth.models import Permission
from django_q.conf import Conf

from deliveries.models import Attempt, Delivery, Event
from integrations.models import ApiToken, Destination, Source
from tests.deliveries.api.conftest import client_with, leaks

HOOK = "https://hooks.example.com/in"
API_KEY = "sk-api-tester-0123456789abcdef"
SIGNING_SECRET = "whsec_YXBpLXRlc3Rlci1zaWduaW5nLWtleQ=="
SUBDOMAIN = "mc563885gzs27c5t9-63k636ttgm"
SFMC_SECRET = "s3cr3t-YXBpLXRlc3Rlci1zZm1j"
SFMC_TOKEN = "eyJhbGciOiJIUzI1NiJ9.api-tester.fake"
IDENTIFY = {"type": "identify", "userId": "user-42", "traits": {"email": "ada@example.com", "firstName": "Ada"}}


pytestmark = pytest.mark.django_db


def webhook(source: Source, **fields: Any) -> Destination:
    destination = Destination.objects.create(
        name="Welcome hook",
        slug="welcome-hook",
        vendor="webhook",
        config={"url": HOOK},
        credentials={"signing_secret": SIGNING_SECRET, "headers": {"X-Api-Key": API_KEY}},
        timeout=5.0,
        **fields,
    )
    destination.sources.add(source)
    return destination


def sfmc(source: Source) -> Destination:
    destination = Destination.objects.create(
        name="Welcome journey",
        slug="welcome-journey",
        vendor="sfmc_journey",
        config={"subdomain": SUBDOMAIN, "event_definition_key": "APIEvent-welcome"},
        credentials={"client_id": "cid-api-tester-4k2j9x7q", "client_secret": SFMC_SECRET},
        timeout=5.0,
    )
    destination.sources.add(source)
    return destination


def try_event(client, slug: str, event: Any = None, **body: Any):
    """POST the event to the destination's test action (IDENTIFY unless given)."""
    return client.post(f"/api/v1/destinations/{slug}/test", {"event": event or IDENTIFY, **body}, format="json")


# Dry run ---------------------------------------------------------------------------------------------


def test_a_dry_run_answers_routing_the_mapped_payload_and_the_exact_request_without_sending(api, source, mocked):
    webhook(source, mapping={"id": "messageId", "email": "traits.email"})

    response = try_event(api, "welcome-hook")

    assert response.status_code == 200
    body = response.json()
    assert (body["send"], body["destination"], body["routing"]) == (False, "welcome-hook", {"send": True, "reason": ""})
    assert body["event"]["userId"] == "user-42"
    assert body["event"]["messageId"]  # normalised as the Tracking API would
    assert body["mapped"] == {"id": body["event"]["messageId"], "email": "ada@example.com"}
    (request,) = body["requests"]
    assert (request["method"], request["url"]) == ("POST", HOOK)
    assert request["headers"]["X-Api-Key"] == "••••••••"
    assert request["headers"]["webhook-signature"] == "••••••••"
    assert body["error"] is None
    assert API_KEY not in response.content.decode()
    assert not Event.objects.exists()
    assert not Delivery.objects.exists()
    assert len(mocked.calls) == 0


def test_a_dry_run_says_why_routing_would_filter_the_event(api, source):
    webhook(source, filter={"types": ["track"]})

    routing = try_event(api, "welcome-hook").json()["routing"]

    assert routing == {"send": False, "reason": "The filter lets through track only, not identify."}


def test_a_dry_run_of_sfmc_shows_the_journey_call_after_the_token_call(api, source):
    sfmc(source)

    (request,) = try_event(api, "welcome-journey").json()["requests"]

    assert request["url"] == f"https://{SUBDOMAIN}.rest.marketingcloudapis.com/interaction/v1/events"
    assert f"https://{SUBDOMAIN}.auth.marketingcloudapis.com/v2/token" in request["note"]
    assert request["body"]["EventDefinitionKey"] == "APIEvent-welcome"


def test_a_dry_run_says_why_the_vendor_could_not_send_it_and_how_to_fix_that(api, source):
    sfmc(source)
    anonymous = {"type": "identify", "anonymousId": "anon-1", "traits": {"email": "ada@example.com"}}

    error = try_event(api, "welcome-journey", anonymous).json()["error"]

    assert error["code"] == "missing_contact_key"
    assert "filter this destination to identified users" in error["hint"]


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"type": "identify", "traits": {}}, "(missing_identity): Every event needs a userId or an anonymousId."),
        ({"type": "track", "userId": "u1"}, "A track call needs an event name (the event field)."),
        ({"type": "visit", "userId": "u1"}, "type must be one of identify, track, page, screen, group, alias"),
        ("identify me", "An event must be a JSON object"),
    ],
)
def test_an_event_the_tracking_api_would_refuse_is_a_400_with_its_reason(api, source, event, message: str):
    webhook(source)

    response = try_event(api, "welcome-hook", event)

    assert response.status_code == 400
    (problem,) = response.json()["event"]
    assert problem.startswith("The Tracking API would refuse this event (")
    assert message in problem
    assert not Event.objects.exists()


def test_a_missing_event_or_a_bad_body_is_a_400(api, source):
    webhook(source)
    url = "/api/v1/destinations/welcome-hook/test"

    assert api.post(url, {"send": True}, format="json").json() == {"event": ["This field is required."]}
    bad = api.post(url, '{"event": ', content_type="application/json")
    assert bad.status_code == 400
    assert bad.json()["detail"].startswith("JSON parse error")


# Test send -------------------------------------------------------------------------------------------


def test_a_test_send_stores_a_test_sends_it_once_and_answers_each_exchange(api, source, mocked):
    sfmc(source)
    token_url = f"https://{SUBDOMAIN}.auth.marketingcloudapis.com/v2/token"
    events_url = f"https://{SUBDOMAIN}.rest.marketingcloudapis.com/interaction/v1/events"
    mocked.post(token_url, json={"access_token": SFMC_TOKEN, "expires_in": 1079})
    mocked.post(events_url, json={"eventInstanceId": "b5d3b2b0-1111-2222-3333-444455556666"}, status=201)

    response = try_event(api, "welcome-journey", send=True)

    assert response.status_code == 202
    body = response.json()
    delivery = Delivery.objects.get()
    assert (body["send"], body["delivery"], body["status"], body["done"]) == (True, delivery.pk, "delivered", True)
    assert response["Location"] == body["poll_url"] == f"http://testserver/api/v1/deliveries/{delivery.pk}"
    assert [(x["attempt"], x["request"]["url"], x["response"]["status"]) for x in body["exchanges"]] == [
        (1, token_url, 200),
        (1, events_url, 201),
    ]
    assert (delivery.is_test, delivery.event.status, delivery.event.source) == (True, Event.Status.TEST, source)
    assert body["event_id"] == delivery.event_id
    polled = api.get(body["poll_url"]).json()
    assert polled["is_test"] is True
    assert [len(a["exchanges"]) for a in polled["attempt_log"]] == [2]
    for text in (response.content.decode(), json.dumps(polled)):
        assert SFMC_SECRET not in text
        assert SFMC_TOKEN not in text


def test_a_test_send_is_never_retried_a_500_fails_it(api, source, mocked):
    webhook(source)
    mocked.post(HOOK, json={"error": "boom"}, status=500)

    body = try_event(api, "welcome-hook", send=True).json()

    assert (body["status"], body["error_code"], body["attempts"]) == ("failed", "http_500", 1)
    assert "(test sends are not retried)" in body["error_message"]
    assert mocked.calls[0].request.headers["X-Api-Key"] == API_KEY  # the real request carries the secret …
    assert API_KEY not in json.dumps(body)  # … the answer does not


def test_an_event_routing_would_filter_is_sent_anyway_and_says_so(api, source, mocked):
    webhook(source, filter={"types": ["track"]})
    mocked.post(HOOK, json={"ok": True})

    body = try_event(api, "welcome-hook", send=True).json()

    assert body["status"] == "delivered"
    assert body["note"] == (
        "Routing would filter this event (The filter lets through track only, not identify.); sent anyway: a test."
    )


def test_a_test_is_stored_under_the_chosen_source_or_the_destinations_first(api, source, mocked):
    mocked.post(HOOK, json={"ok": True})
    app = Source.objects.create(name="App", slug="app", write_key="wk_api_tester_app_7a6b")
    android = Source.objects.create(name="Android", slug="android", write_key="wk_api_tester_android_5c4d")
    webhook(app).sources.add(android)

    first = try_event(api, "welcome-hook", send=True).json()
    chosen = try_event(api, "welcome-hook", send=True, source="website").json()

    assert Event.objects.get(pk=first["event_id"]).source == android  # by name, of its own sources
    assert Event.objects.get(pk=chosen["event_id"]).source == source
    unknown = try_event(api, "welcome-hook", send=True, source="nowhere")
    assert unknown.status_code == 400
    assert unknown.json() == {"source": ['No source has the slug "nowhere".']}


def test_a_queued_test_send_answers_where_to_poll(api, source, mocked, monkeypatch):
    webhook(source)
    monkeypatch.setattr(Conf, "SYNC", False)  # the send task is queued for a worker, not run here

    response = try_event(api, "welcome-hook", send=True)

    body = response.json()
    assert response.status_code == 202
    assert (body["status"], body["done"], body["exchanges"]) == ("pending", False, [])
    assert api.get(body["poll_url"]).json()["status"] == "pending"


# Who may test ----------------------------------------------------------------------------------------


def test_the_permission_matrix(caller, source, mocked):
    name, client = caller
    webhook(source)
    if name in ("admin", "marketer"):
        mocked.post(HOOK, json={"ok": True})

    assert try_event(client, "welcome-hook").status_code == {"admin": 200, "marketer": 200}.get(name, 401)
    assert try_event(client, "welcome-hook", send=True).status_code == {"admin": 202, "marketer": 202}.get(name, 401)
    assert try_event(client, "nowhere").status_code == {"admin": 404, "marketer": 404}.get(name, 401)


def test_testing_needs_the_event_testers_permission(django_user_model, source):
    webhook(source)
    user = django_user_model.objects.create_user("tom", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_destination"))
    client = client_with(ApiToken.issue(user, "viewer")[1])

    response = try_event(client, "welcome-hook")

    assert response.status_code == 403
    assert response.json() == {
        "detail": "This needs the permissions deliveries.use_event_tester, integrations.view_destination."
    }
    assert not Event.objects.exists()


# No secrets ------------------------------------------------------------------------------------------


def test_no_answer_carries_a_secret(api, marketer_api, seeded):
    from tests.test_marketer_sees_no_secrets import token_or_refusal

    secrets = seeded.marketer_secrets()
    event = {"type": "track", "userId": "user-1", "event": "Signed Up", "properties": {"plan": "pro"}}
    texts = []
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        for method in (responses.GET, responses.POST, responses.PUT):
            mock.add_callback(method, re.compile(r"https://.*"), callback=token_or_refusal)
        for client in (api, marketer_api):
            for destination in seeded.destinations:
                texts.append(try_event(client, destination.slug, event).content.decode())
                sent = try_event(client, destination.slug, event, send=True)
                assert sent.status_code == 202, sent.content
                texts += [sent.content.decode(), client.get(sent.json()["poll_url"]).content.decode()]
    assert Attempt.objects.filter(delivery__is_test=True).exclude(exchanges=[]).exists()
    assert leaks(" ".join(texts), secrets) == []


def test_the_schema_documents_the_test_action_without_a_warning():
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.validation import validate_schema

    GENERATOR_STATS.reset()

    schema = SchemaGenerator().get_schema(request=None, public=True)

    validate_schema(schema)
    assert not GENERATOR_STATS._warn_cache
    operation = schema["paths"]["/api/v1/destinations/{slug}/test/"]["post"]
    assert set(operation["responses"]) == {"200", "202"}

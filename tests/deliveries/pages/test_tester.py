"""The Event Tester: prefill from a stored event, dry runs (routing, mapped payload, the vendor's requests, errors),
test sends (stored as tests, sent once by the task, never retried, every exchange in order) and permissions."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.urls import reverse
from django_q.conf import Conf

from deliveries.engine.slots import kick
from deliveries.models import Attempt, Delivery, DeliveryRollup, Event
from integrations.models import Destination, Source
from tests.factories import make_event

pytestmark = pytest.mark.django_db

TESTER = reverse("admin:deliveries_event_tester")
HOOK = "https://hooks.example.com/in"
API_KEY = "sk-tester-0123456789abcdef"
SIGNING_SECRET = "whsec_dGVzdGVyLXNpZ25pbmcta2V5LWZvci10ZXN0cw=="
SUBDOMAIN = "mc563885gzs27c5t9-63k636ttgm"
SFMC_SECRET = "s3cr3t-Qm9vbi1sYW5kaW5nLTE5Njk"
SFMC_TOKEN = "eyJhbGciOiJIUzI1NiJ9.tester.fake"


def webhook(source: Source, **fields: Any) -> Destination:
    fields.setdefault("credentials", {"signing_secret": SIGNING_SECRET, "headers": {"X-Api-Key": API_KEY}})
    destination = Destination.objects.create(
        name=fields.pop("name", "Welcome hook"),
        slug=fields.pop("slug", "welcome-hook"),
        vendor="webhook",
        config=fields.pop("config", {"url": HOOK}),
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
        credentials={"client_id": "cid-tester-4k2j9x7q", "client_secret": SFMC_SECRET},
        timeout=5.0,
    )
    destination.sources.add(source)
    return destination


def event_json(**extra: Any) -> str:
    event = {
        "type": "identify",
        "userId": "user-42",
        "traits": {"email": "ada@example.com", "firstName": "Ada"},
        **extra,
    }
    return json.dumps({k: v for k, v in event.items() if v is not None})


def post(client, destination: Destination, source: Source, payload: str, action: str = "dry_run"):
    data = {"destination": destination.pk, "source": source.pk, "payload": payload, "action": action}
    return client.post(TESTER, data)


# The page and its prefill ----------------------------------------------------------------------------


def test_the_page_lists_destinations_and_starts_from_a_sample_event(admin_client, source):
    webhook(source)
    response = admin_client.get(TESTER)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Welcome hook (Webhook)" in html
    assert "Order Completed" in response.context["payload_text"]
    assert response.context["source_id"] == source.pk


def test_it_prefills_from_a_stored_event_and_preselects_the_destination(admin_client, source):
    other = Source.objects.create(name="App", slug="app", write_key="wk_tester_app")
    first = webhook(source, name="A hook", slug="a-hook")
    chosen = webhook(source, name="B hook", slug="b-hook")
    event = make_event(other, event="Trial Started", user_id="user-9")
    response = admin_client.get(TESTER, {"event": event.pk, "destination": chosen.pk})
    payload = json.loads(response.context["payload_text"])
    assert payload["event"] == "Trial Started"
    assert payload["userId"] == "user-9"
    assert "receivedAt" not in payload
    assert response.context["destination_id"] == chosen.pk != first.pk
    assert response.context["source_id"] == other.pk  # the event's own source, not the destination's


def test_the_source_defaults_to_the_destinations_first_source(admin_client, source):
    mobile = Source.objects.create(name="Android", slug="android", write_key="wk_tester_android")
    destination = webhook(mobile)
    response = admin_client.get(TESTER, {"destination": destination.pk})
    assert response.context["source_id"] == mobile.pk
    assert f'data-first-source="{mobile.pk}"' in response.content.decode()


# Dry run ---------------------------------------------------------------------------------------------


def test_a_dry_run_shows_routing_the_mapped_payload_and_the_request_without_sending(admin_client, source, mocked):
    destination = webhook(source, mapping={"id": "messageId", "email": "traits.email", "plan": "traits.plan"})
    response = post(admin_client, destination, source, event_json(traits={"email": "ada@example.com", "plan": "pro"}))
    dry_run = response.context["dry_run"]
    assert dry_run["send"] is True
    assert json.loads(dry_run["mapped"])["plan"] == "pro"
    (request,) = dry_run["requests"]
    assert request["method"] == "POST"
    assert request["url"] == HOOK
    html = response.content.decode()
    assert "Would be sent." in html
    assert "webhook-signature: ••••••••" in html
    assert "X-Api-Key: ••••••••" in html
    assert API_KEY not in html
    assert SIGNING_SECRET not in html
    assert not Event.objects.exists()
    assert not Delivery.objects.exists()
    assert len(mocked.calls) == 0


def test_a_dry_run_says_why_routing_would_filter_the_event(admin_client, source):
    destination = webhook(source, filter={"types": ["track"]})
    response = post(admin_client, destination, source, event_json())
    assert response.context["dry_run"]["send"] is False
    assert "Would be filtered:</strong> The filter lets through track only, not identify." in response.content.decode()


def test_a_dry_run_of_sfmc_shows_the_journey_call_after_the_token_call(admin_client, source):
    destination = sfmc(source)
    response = post(admin_client, destination, source, event_json())
    (request,) = response.context["dry_run"]["requests"]
    assert request["url"] == f"https://{SUBDOMAIN}.rest.marketingcloudapis.com/interaction/v1/events"
    assert f"https://{SUBDOMAIN}.auth.marketingcloudapis.com/v2/token" in request["note"]
    assert '"EventDefinitionKey": "APIEvent-welcome"' in request["text"]
    assert SFMC_SECRET not in response.content.decode()


def test_a_dry_run_shows_why_the_vendor_could_not_send_it_with_the_hint(admin_client, source):
    destination = sfmc(source)
    response = post(admin_client, destination, source, event_json(userId=None, anonymousId="anon-1"))
    error = response.context["dry_run"]["error"]
    assert error["code"] == "missing_contact_key"
    assert "filter this destination to identified users" in error["hint"]
    assert "How to fix:" in response.content.decode()


def test_a_dry_run_shows_bad_destination_settings_with_their_message(admin_client, source):
    destination = webhook(source)
    Destination.objects.filter(pk=destination.pk).update(config={"url": "ftp://nowhere"})
    response = post(admin_client, destination, source, event_json())
    error = response.context["dry_run"]["error"]
    assert error["code"] == "invalid_settings"
    assert "config.url: must start with http:// or https://" in error["message"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ('{"type": "identify", "userId": ', "The event is not valid JSON: Expecting value (line 1, column 32)."),
        ('{"type": "identify", "traits": {}}', "Every event needs a userId or an anonymousId."),
        ('{"type": "track", "userId": "u1"}', "A track call needs an event name (the event field)."),
        ('{"type": "visit", "userId": "u1"}', "type must be one of identify, track, page, screen, group, alias"),
        ("", "Paste an event as JSON, or build one with the form."),
    ],
)
def test_a_bad_event_is_refused_as_the_tracking_api_would(admin_client, source, payload: str, message: str):
    destination = webhook(source)
    response = post(admin_client, destination, source, payload)
    assert response.context["dry_run"] is None
    assert any(message in error for error in response.context["errors"])
    assert message.split(" (line")[0] in response.content.decode().replace("&quot;", '"').replace("&#x27;", "'")


def test_a_pasted_event_is_read_as_the_tracking_api_reads_it(admin_client, source, mocked):
    """A NUL character is kept as U+FFFD (PostgreSQL cannot store NUL: a send was a 500 there), half a surrogate
    pair is refused with the Tracking API's message, and neither is a 500."""
    destination = webhook(source)
    mocked.post(destination.config["url"], status=200)
    response = post(admin_client, destination, source, event_json(traits={"name": "Ada\u0000L"}), action="send")
    assert response.status_code == 302
    assert Event.objects.get().payload["traits"]["name"] == "Ada\ufffdL"

    response = post(admin_client, destination, source, event_json(traits={"name": "\ud800"}))
    assert response.status_code == 200
    assert any("The Tracking API would refuse this event (invalid_json)" in e for e in response.context["errors"])


# Send ------------------------------------------------------------------------------------------------


def test_send_stores_a_test_event_sends_it_once_and_shows_each_exchange(admin_client, source, mocked):
    destination = sfmc(source)
    token_url = f"https://{SUBDOMAIN}.auth.marketingcloudapis.com/v2/token"
    mocked.post(token_url, json={"access_token": SFMC_TOKEN, "expires_in": 1079})
    mocked.post(
        f"https://{SUBDOMAIN}.rest.marketingcloudapis.com/interaction/v1/events",
        json={"eventInstanceId": "b5d3b2b0-1111-2222-3333-444455556666"},
        status=201,
    )
    response = post(admin_client, destination, source, event_json(), action="send")
    assert response.status_code == 302
    event = Event.objects.get()
    assert event.status == Event.Status.TEST
    assert event.source == source
    assert event.email == "ada@example.com"
    delivery = Delivery.objects.get()
    assert delivery.is_test
    assert delivery.status == Delivery.Status.DELIVERED
    assert delivery.next_attempt_at is None
    assert not DeliveryRollup.objects.exists()  # a test is kept out of the Event Delivery numbers

    page = admin_client.get(response["Location"])
    sent = page.context["sent"]
    assert sent["done"]
    assert [(x["number"], x["total"], x["request"]["url"]) for x in sent["exchanges"]] == [
        (1, 2, token_url),
        (2, 2, f"https://{SUBDOMAIN}.rest.marketingcloudapis.com/interaction/v1/events"),
    ]
    html = page.content.decode()
    assert 'Exchange <b class="pager-current">1</b> of 2' in html
    assert 'data-number="2" hidden' in html  # one page per exchange: the second waits behind Next
    assert SFMC_SECRET not in html
    assert SFMC_TOKEN not in html
    assert page.context["destination_id"] == destination.pk
    assert json.loads(page.context["payload_text"])["userId"] == "user-42"

    result = admin_client.get(reverse("admin:deliveries_event_tester_result", args=[delivery.pk])).json()
    assert result["status"] == "delivered"
    assert result["done"] is True
    assert [x["response"]["status"] for x in result["exchanges"]] == [200, 201]
    assert [x["attempt"] for x in result["exchanges"]] == [1, 1]
    assert 'data-number="2"' in result["html"]
    assert SFMC_SECRET not in json.dumps(result)


def test_a_test_send_is_never_retried_a_500_fails_it(admin_client, source, mocked):
    destination = webhook(source)
    mocked.post(HOOK, json={"error": "boom"}, status=500)
    post(admin_client, destination, source, event_json(), action="send")
    delivery = Delivery.objects.get()
    assert delivery.status == Delivery.Status.FAILED
    assert delivery.attempts == 1
    assert delivery.next_attempt_at is None
    assert "(test sends are not retried)" in delivery.error_message
    assert Attempt.objects.get().outcome == "failed"
    request = mocked.calls[0].request
    assert request.headers["X-Api-Key"] == API_KEY  # the real request carries the secret ...
    result = admin_client.get(reverse("admin:deliveries_event_tester_result", args=[delivery.pk])).json()
    assert result["status"] == "failed"
    assert result["error_code"] == "http_500"
    assert API_KEY not in json.dumps(result)  # ... what the page shows does not


def test_a_filtered_event_is_sent_anyway_and_says_so(admin_client, source, mocked):
    destination = webhook(source, filter={"types": ["track"]})
    mocked.post(HOOK, json={"ok": True})
    response = post(admin_client, destination, source, event_json(), action="send")
    assert Delivery.objects.get().status == Delivery.Status.DELIVERED
    page = admin_client.get(response["Location"])
    assert "sent anyway: this is a test" in page.content.decode()


def test_bad_destination_settings_fail_the_test_send_with_the_message(admin_client, source, mocked):
    destination = webhook(source)
    Destination.objects.filter(pk=destination.pk).update(config={"url": "ftp://nowhere"})
    post(admin_client, destination, source, event_json(), action="send")
    delivery = Delivery.objects.get()
    assert delivery.status == Delivery.Status.FAILED
    assert delivery.error_code == "invalid_settings"
    assert len(mocked.calls) == 0


def test_the_drain_never_claims_a_test_delivery(admin_client, source, mocked, monkeypatch):
    destination = webhook(source)
    monkeypatch.setattr(Conf, "SYNC", False)  # the send task is queued, not run
    post(admin_client, destination, source, event_json(), action="send")
    monkeypatch.setattr(Conf, "SYNC", True)
    kick(destination.pk, fill=True)  # a drain runs inline: it finds nothing due
    delivery = Delivery.objects.get()
    assert delivery.status == Delivery.Status.PENDING
    assert len(mocked.calls) == 0
    result = admin_client.get(reverse("admin:deliveries_event_tester_result", args=[delivery.pk])).json()
    assert result["done"] is False
    assert result["exchanges"] == []


def test_the_result_of_a_delivery_that_is_not_a_test_is_not_found(admin_client, source):
    destination = webhook(source)
    event = make_event(source)
    delivery = Delivery.objects.create(event=event, destination=destination, created_at=event.received_at)
    response = admin_client.get(reverse("admin:deliveries_event_tester_result", args=[delivery.pk]))
    assert response.status_code == 404


# Permissions -----------------------------------------------------------------------------------------


def test_a_marketer_can_dry_run_and_send_but_never_sees_a_credential(marketer_client, source, mocked):
    destination = webhook(source)
    mocked.post(HOOK, json={"ok": True})
    assert marketer_client.get(TESTER).status_code == 200
    dry = post(marketer_client, destination, source, event_json())
    assert dry.context["dry_run"]["send"] is True
    sent = post(marketer_client, destination, source, event_json(), action="send")
    page = marketer_client.get(sent["Location"])
    result = marketer_client.get(reverse("admin:deliveries_event_tester_result", args=[Delivery.objects.get().pk]))
    for text in (dry.content.decode(), page.content.decode(), result.content.decode()):
        assert API_KEY not in text
        assert SIGNING_SECRET not in text


def test_without_the_tester_permission_the_page_and_both_actions_are_forbidden(client, django_user_model, source):
    destination = webhook(source)
    user = django_user_model.objects.create_user("viewer", "v@example.com", "pw", is_staff=True)
    client.force_login(user)
    delivery_id = 1
    assert client.get(TESTER).status_code == 403
    assert post(client, destination, source, event_json()).status_code == 403
    assert post(client, destination, source, event_json(), action="send").status_code == 403
    result = client.get(reverse("admin:deliveries_event_tester_result", args=[delivery_id]))
    assert result.status_code == 403
    assert not Event.objects.exists()

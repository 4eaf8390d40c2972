"""What runs functions, through the API: a destination function's sensitive settings are its credentials and a
JavaScript source's are among its settings (write-only, kept key by key like any vendor's), an insert function is
chosen by slug with its plain settings and write-only secrets, each checked against what the function declares; an
attempt's console lines are in its delivery."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from deliveries.models import Attempt, Delivery, Event
from integrations.crypto import CANNOT_DECRYPT, Undecryptable
from integrations.models import ApiToken, Destination, Function, Source
from tests.deliveries.api.conftest import client_with

pytestmark = pytest.mark.django_db

API_KEY = "crmApiKeyDestinationTest_7c1e"
LOOKUP_TOKEN = "lookupTokenInsertTest_3a9f0b"
CRM_CODE = "async function onTrack(event, settings) { await fetch('https://crm.example.com/' + settings.region); }"
INSERT_CODE = "async function onTrack(event, settings) { return event; }"
BILLING_TOKEN = "billApiTokenSourceTest_4d3c2b1a"
SIGNING_SECRET = "whsec_billingSourceTest_9e8d7c"
CRM = {
    "name": "CRM",
    "slug": "crm",
    "vendor": "function",
    "sources": ["website"],
    "config": {"function": "crm-sync", "settings": {"region": "eu"}},
    "credentials": {"apiKey": API_KEY},
}


@pytest.fixture
def functions(db) -> None:
    declaration = [
        {"name": "apiKey", "type": "string", "required": True, "sensitive": True},
        {"name": "region", "type": "string", "required": True},
        {"name": "webhookSecret", "type": "string", "sensitive": True},
    ]
    Function(name="CRM sync", slug="crm-sync", code=CRM_CODE, settings=declaration).save()
    insert = [
        {"name": "domains", "type": "array"},
        {"name": "lookupToken", "type": "string", "sensitive": True, "required": True},
    ]
    Function(name="Enrich", slug="enrich", kind="insert", code=INSERT_CODE, settings=insert).save()


@pytest.fixture
def crm(functions, source) -> Destination:
    destination = Destination.objects.create(
        name="CRM", slug="crm", vendor="function", config=CRM["config"], credentials=CRM["credentials"]
    )
    destination.sources.add(source)
    return destination


def test_a_destination_functions_sensitive_settings_are_write_only_credentials(api, marketer_api, functions, source):
    response = api.post("/api/v1/destinations", CRM, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["credentials_set"] == {"apiKey": "set"}
    assert Destination.objects.get(slug="crm").credentials == {"apiKey": API_KEY}
    for client in (api, marketer_api):
        assert API_KEY not in client.get("/api/v1/destinations/crm").content.decode()
    assert marketer_api.get("/api/v1/destinations/crm").json()["credentials_set"] is None


def test_a_change_keeps_a_destination_functions_credentials_key_by_key(api, crm) -> None:
    """The function's declaration, not a vendor's dataclass, says which keys are kept: none is lost on a change."""
    assert api.patch("/api/v1/destinations/crm", {"name": "CRM (EU)"}, format="json").status_code == 200
    crm.refresh_from_db()
    assert crm.credentials == {"apiKey": API_KEY}
    answer = api.patch("/api/v1/destinations/crm", {"credentials": {"webhookSecret": "whsec_crm"}}, format="json")
    assert answer.json()["credentials_set"] == {"apiKey": "set", "webhookSecret": "set"}
    answer = api.patch("/api/v1/destinations/crm", {"credentials": {"webhookSecret": None}}, format="json")
    assert answer.json()["credentials_set"] == {"apiKey": "set"}


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"config": {"function": "nope"}}, "config", "config.function: there is no destination function 'nope'"),
        ({"config": {"function": "enrich"}}, "config", "there is no destination function 'enrich'"),
        ({"config": {"function": "crm-sync"}}, "config", "config.settings.region: required"),
        ({"credentials": {}}, "credentials", "credentials.apiKey: required"),
        ({"credentials": {"apiKey": API_KEY, "region": "eu"}}, "credentials", "not a sensitive setting"),
        (
            {"config": {"function": "crm-sync", "settings": {"region": "eu", "apiKey": "k"}}},
            "config",
            "config.settings.apiKey: a sensitive setting",
        ),
    ],
)
def test_a_destination_functions_settings_are_checked_against_its_declaration(
    api, functions, source, change, field, message
) -> None:
    response = api.post("/api/v1/destinations", {**CRM, **change}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == [field], response.json()
    assert message in " ".join(response.json()[field])
    assert not Destination.objects.exists()


def test_an_insert_function_is_chosen_by_slug_with_write_only_secrets(api, marketer_api, functions, destination):
    body = {
        "insert_function": "enrich",
        "insert_settings": {"domains": ["example.com"]},
        "insert_secrets": {"lookupToken": f" {LOOKUP_TOKEN}\n"},
    }
    response = api.patch("/api/v1/destinations/welcome-hook", body, format="json")
    assert response.status_code == 200, response.json()
    answer = response.json()
    assert (answer["insert_function"], answer["insert_settings"]) == ("enrich", {"domains": ["example.com"]})
    assert answer["insert_secrets_set"] == {"lookupToken": "set"}
    assert "insert_secrets" not in answer
    destination.refresh_from_db()
    assert (destination.insert_function.slug, destination.insert_secrets) == ("enrich", {"lookupToken": LOOKUP_TOKEN})
    marketers = marketer_api.get("/api/v1/destinations/welcome-hook")
    assert marketers.json()["insert_secrets_set"] is None
    for reply in (response, marketers, api.get("/api/v1/destinations")):
        assert LOOKUP_TOKEN not in reply.content.decode()


def test_an_insert_secret_left_out_is_kept_and_no_insert_function_takes_its_settings_and_secrets_along(
    api, functions, destination
) -> None:
    url = "/api/v1/destinations/welcome-hook"
    body = {"insert_function": "enrich", "insert_secrets": {"lookupToken": LOOKUP_TOKEN}}
    assert api.patch(url, body, format="json").status_code == 200
    assert api.patch(url, {"insert_settings": {"domains": ["a.example"]}}, format="json").status_code == 200
    destination.refresh_from_db()
    assert destination.insert_secrets == {"lookupToken": LOOKUP_TOKEN}

    answer = api.patch(url, {"insert_function": None}, format="json").json()
    assert (answer["insert_function"], answer["insert_settings"], answer["insert_secrets_set"]) == (None, {}, {})
    destination.refresh_from_db()
    assert (destination.insert_function, destination.insert_settings, destination.insert_secrets) == (None, {}, {})


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"insert_function": "crm-sync"}, "insert_function", "crm-sync is a destination function, not an insert"),
        ({"insert_function": "nope"}, "insert_function", "No function with slug nope."),
        ({"insert_function": "enrich"}, "insert_secrets", "insert_secrets.lookupToken: required"),
        ({"insert_settings": {"domains": ["x"]}}, "insert_settings", "no insert function is chosen"),
        (
            {"insert_function": "enrich", "insert_secrets": {"lookupToken": "t"}, "insert_settings": {"x": 1}},
            "insert_settings",
            "insert_settings.x: the function declares no such setting",
        ),
        ({"insert_secrets": "t"}, "insert_secrets", "Must be an object of secret values"),
    ],
)
def test_an_insert_functions_settings_are_checked_against_its_declaration(
    api, functions, destination, change, field, message
) -> None:
    response = api.patch("/api/v1/destinations/welcome-hook", change, format="json")
    assert response.status_code == 400
    assert list(response.json()) == [field], response.json()
    assert message in " ".join(response.json()[field])
    destination.refresh_from_db()
    assert destination.insert_function is None


def test_only_an_administrator_sets_insert_secrets_or_chooses_an_insert_function(
    django_user_model, marketer_api, functions, destination
) -> None:
    user = django_user_model.objects.create_user("sam", is_staff=True)
    codenames = ["view_destination", "add_destination", "change_destination"]
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = client_with(ApiToken.issue(user, "sam's script")[1])
    secrets = {"insert_function": "enrich", "insert_secrets": {"lookupToken": LOOKUP_TOKEN}}

    new = {"name": "Hook 2", "slug": "hook-2", "vendor": "webhook", "config": {"url": "https://example.com/in"}}
    response = client.post("/api/v1/destinations", {**new, **secrets}, format="json")
    assert response.status_code == 403
    assert "insert_secrets" in response.json()["detail"]
    for caller in (client, marketer_api):
        response = caller.patch("/api/v1/destinations/welcome-hook", secrets, format="json")
        assert response.status_code == 403
    destination.refresh_from_db()
    assert (destination.insert_function, destination.insert_secrets) == (None, {})


def test_stored_secrets_that_cannot_be_decrypted_say_so(api, crm) -> None:
    Destination.objects.filter(pk=crm.pk).update(credentials=Undecryptable("gAAAAA-not-a-token"))
    answer = api.get("/api/v1/destinations/crm").json()
    assert answer["credentials_set"] == {"apiKey": CANNOT_DECRYPT, "webhookSecret": CANNOT_DECRYPT}


def test_an_attempts_console_lines_are_in_its_delivery(api, crm, source) -> None:
    now = timezone.now()
    event = Event.objects.create(
        source=source, message_id="m-1", type="track", event="Signed Up", payload={}, received_at=now, timestamp=now
    )
    delivery = Delivery.objects.create(
        event=event, destination=crm, status=Delivery.Status.FAILED, attempts=1, created_at=now
    )
    logs = [{"level": "log", "message": "posting"}, {"level": "error", "message": "the CRM said no"}]
    Attempt.objects.create(delivery=delivery, number=1, started_at=timezone.now(), outcome="failed", logs=logs)

    answer = api.get(f"/api/v1/deliveries/{delivery.pk}").json()
    assert answer["attempt_log"][0]["logs"] == logs
    trace = api.get(f"/api/v1/events/{event.pk}").json()
    assert trace["deliveries"][0]["attempt_log"][0]["logs"] == logs


@pytest.fixture
def billing(db) -> Function:
    declaration = [{"name": "apiToken", "type": "string", "sensitive": True, "required": True}]
    code = "async function onRequest(request, settings) { Segment.track({userId: 'u', event: 'Paid'}); }"
    function = Function(name="Billing", slug="billing-webhooks", kind="source", code=code, settings=declaration)
    function.save()
    return function


def test_a_javascript_sources_sensitive_settings_are_kept_key_by_key_beside_its_signing_secret(
    api, marketer_api, billing
) -> None:
    body = {
        "name": "Billing",
        "slug": "billing",
        "kind": "function",
        "config": {"function": "billing-webhooks", "signature_header": "X-Signature"},
        "settings": {"apiToken": BILLING_TOKEN, "signing_secret": SIGNING_SECRET},
    }
    response = api.post("/api/v1/sources", body, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["settings_set"] == {"apiToken": "set", "signing_secret": "set"}

    assert api.patch("/api/v1/sources/billing", {"name": "Billing (live)"}, format="json").status_code == 200
    assert Source.objects.get(slug="billing").settings == {"apiToken": BILLING_TOKEN, "signing_secret": SIGNING_SECRET}
    answer = api.patch("/api/v1/sources/billing", {"settings": {"signing_secret": None}}, format="json")
    assert answer.json()["settings_set"] == {"apiToken": "set"}
    answer = api.patch("/api/v1/sources/billing", {"settings": {"apiToken": None}}, format="json")
    assert answer.json() == {"settings": ["settings.apiToken: required"]}
    for client in (api, marketer_api):
        text = client.get("/api/v1/sources/billing").content.decode()
        assert BILLING_TOKEN not in text
        assert SIGNING_SECRET not in text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"config": {"function": "nope"}}, "config.function: there is no source function 'nope'"),
        ({"settings": {}}, "settings.apiToken: required"),
        ({"settings": {"apiToken": "t", "other": "x"}}, "settings.other: the function declares no such setting"),
    ],
)
def test_a_javascript_sources_settings_are_checked_against_its_declaration(api, billing, change, message) -> None:
    body = {"name": "Billing", "slug": "billing", "kind": "function", "config": {"function": "billing-webhooks"}}
    response = api.post("/api/v1/sources", {**body, "settings": {"apiToken": "t"}, **change}, format="json")
    assert response.status_code == 400
    assert message in " ".join(m for messages in response.json().values() for m in messages), response.json()
    assert not Source.objects.exists()

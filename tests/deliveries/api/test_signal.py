"""POST /v1/admin/integrations: the seed's Datafly Signal body becomes the equivalent SFMC journey destination, checked
as the admin checks it, saved whole or not at all, its credentials encrypted and never answered."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from django.db import connection
from django.db.models.signals import m2m_changed
from rest_framework.test import APIClient

from deliveries.api.signal import SEED_BODY
from integrations.models import Destination, Source
from tests.deliveries.api.conftest import client_with

pytestmark = pytest.mark.django_db

URL = "/v1/admin/integrations"
SECRETS = ("abc123clientid", "shh-secret-value")


@pytest.fixture
def src() -> Source:
    return Source.objects.create(name="Website", slug="src_abc123")


def body(**changes: Any) -> dict[str, Any]:
    """The seed's body, verbatim but for `changes` (config.<key> changes a config key; None leaves a key out)."""
    data = copy.deepcopy(SEED_BODY)
    for key, value in changes.items():
        target, name = (data["config"], key.removeprefix("config_")) if key.startswith("config_") else (data, key)
        if value is None:
            target.pop(name)
        else:
            target[name] = value
    return data


def post(client: APIClient, data: dict[str, Any]) -> Any:
    return client.post(URL, json.dumps(data, ensure_ascii=False), content_type="application/json")


def test_the_seeds_body_creates_the_equivalent_journey_destination(api, src: Source) -> None:
    response = post(api, SEED_BODY)

    assert response.status_code == 201, response.json()
    destination = Destination.objects.get()
    answer = response.json()
    assert answer["id"] == destination.pk
    assert answer["slug"] == destination.slug == "marketing-cloud-welcome-journey"
    assert answer["vendor"] == destination.vendor == "sfmc_journey"
    assert (
        answer["config"]
        == destination.config
        == {
            "subdomain": "mc-abc123xyz",
            "event_definition_key": "datafly_lead_submitted",
        }
    )
    assert answer["credentials"] == {"client_id": "set", "client_secret": "set"}
    assert answer["sources"] == ["src_abc123"]
    assert answer["admin_url"] == f"http://testserver/admin/integrations/destination/{destination.pk}/change/"
    assert destination.name == "Marketing Cloud — Welcome Journey"
    assert destination.enabled is True
    assert destination.consent_categories == ["marketing"]
    assert list(destination.sources.all()) == [src]
    assert destination.credentials == {"client_id": "abc123clientid", "client_secret": "shh-secret-value"}
    destination.full_clean()  # what the admin would save, too


def test_credentials_are_stored_encrypted_and_never_answered(api, src: Source) -> None:
    response = post(api, SEED_BODY)

    assert response.status_code == 201
    assert not [secret for secret in SECRETS if secret in response.content.decode()]
    with connection.cursor() as cursor:
        cursor.execute("SELECT credentials FROM integrations_destination")
        (stored,) = cursor.fetchone()
    assert not [secret for secret in SECRETS if secret in str(stored)]


def test_the_destination_sends_what_signal_sends(api, src: Source) -> None:
    """Signal's Lead Submitted example: ContactKey is the email, Data the fields of its table (nulls left out)."""
    post(api, SEED_BODY)
    vendor = Destination.objects.get().build_vendor()
    identify = {
        "type": "identify",
        "userId": "user-123",
        "traits": {
            "email": "jane.doe@example.com",
            "first_name": "Jane",
            "last_name": "Doe",
            "phone": "+447700900123",
            "lead_type": "newsletter",
            "lead_value": 0,
        },
    }
    lead = {
        "type": "track",
        "event": "Lead Submitted",
        "userId": "user-123",
        "properties": {"lead_type": "newsletter", "value": 0, "currency": "GBP"},
        "context": {"traits": {"email": "jane.doe@example.com", "firstName": "Jane", "lastName": "Doe"}},
    }

    (entry,) = vendor.preview(identify)
    (tracked,) = vendor.preview(lead)

    assert entry["url"] == "https://mc-abc123xyz.rest.marketingcloudapis.com/interaction/v1/events"
    assert entry["body"] == {
        "ContactKey": "jane.doe@example.com",
        "EventDefinitionKey": "datafly_lead_submitted",
        "Data": {**identify["traits"], "user_id": "user-123"},
    }
    assert tracked["body"]["Data"] == {
        "email": "jane.doe@example.com",
        "first_name": "Jane",
        "last_name": "Doe",
        "lead_type": "newsletter",
        "lead_value": 0,
        "currency": "GBP",
        "user_id": "user-123",
    }


def test_an_account_id_is_kept_as_the_business_units_mid(api, src: Source) -> None:
    assert post(api, body(config_account_id=7281234)).status_code == 201
    assert Destination.objects.get().config["account_id"] == "7281234"


def test_a_second_integration_of_the_same_name_gets_a_slug_of_its_own(api, src: Source) -> None:
    slugs = [post(api, SEED_BODY).json()["slug"] for _ in range(3)]
    assert slugs == [
        "marketing-cloud-welcome-journey",
        "marketing-cloud-welcome-journey-2",
        "marketing-cloud-welcome-journey-3",
    ]


def test_an_unknown_vendor_is_a_400_that_lists_the_known_ones(api, src: Source) -> None:
    response = post(api, body(vendor="salesforce_data_cloud"))

    assert response.status_code == 400
    assert response.json() == {
        "vendor": ['Unknown vendor "salesforce_data_cloud": use one of salesforce_marketing_cloud, sfmc_journey.']
    }
    assert not Destination.objects.exists()


def test_an_unknown_source_is_a_400_that_names_the_known_ones(api, src: Source) -> None:
    Source.objects.create(name="App", slug="app", write_key="wk_app")

    response = post(api, body(source_id="src_nope"))

    assert response.status_code == 400
    assert response.json() == {"source_id": ["No source with the slug 'src_nope'. Known sources: app, src_abc123."]}
    assert not Destination.objects.exists()


def test_missing_fields_are_a_400_per_field(api, src: Source) -> None:
    data = body(name=None, config_tenant_subdomain=None, config_client_secret=None, config_event_definition_key="")

    response = post(api, data)

    assert response.status_code == 400
    required = ["This field is required."]
    assert response.json() == {
        "name": required,
        "config": {
            "tenant_subdomain": required,
            "client_secret": required,
            "event_definition_key": ["This field may not be blank."],
        },
    }
    assert not Destination.objects.exists()


def test_wrong_values_are_the_destinations_own_checks_under_signals_names(api, src: Source) -> None:
    data = body(
        name="x" * 201,
        config_tenant_subdomain="https://mc-abc123xyz.auth.marketingcloudapis.com",
        config_event_definition_key="datafly.lead",
        config_account_id="BU-1",
    )

    response = post(api, data)

    assert response.status_code == 400
    errors = response.json()
    assert errors["name"] == ["Ensure this value has at most 200 characters (it has 201)."]
    assert errors["config"] == {
        "tenant_subdomain": [
            "give only the subdomain, the part of the Authentication Base URI before .auth.marketingcloudapis.com"
        ],
        "account_id": ["must be the MID of a business unit (digits only)"],
        "event_definition_key": ["must not contain a period"],
    }
    assert not Destination.objects.exists()


def test_nothing_is_half_written_when_saving_fails_midway(admin_token: str, src: Source) -> None:
    def refuse(sender: Any, action: str, **kwargs: Any) -> None:
        if action == "pre_add":
            raise RuntimeError("the database went away")

    m2m_changed.connect(refuse, sender=Destination.sources.through)
    try:
        client = APIClient(raise_request_exception=False)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {admin_token}")
        response = post(client, SEED_BODY)
    finally:
        m2m_changed.disconnect(refuse, sender=Destination.sources.through)

    assert response.status_code == 500
    assert not Destination.objects.exists()  # the destination went with its sources


def test_a_marketers_token_is_refused(marketer_api, src: Source) -> None:
    response = post(marketer_api, SEED_BODY)

    assert response.status_code == 403
    assert "manage credentials" in response.json()["detail"]
    assert not Destination.objects.exists()


@pytest.mark.parametrize("token", [None, "cdp_unknown"])
def test_without_a_valid_token_the_call_is_a_401(token: str | None, src: Source) -> None:
    response = post(client_with(token), SEED_BODY)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert not Destination.objects.exists()


def test_a_session_is_not_enough(admin_client, src: Source) -> None:
    """A script's call: the Bearer token only, so no browser page can make it with a logged-in cookie."""
    response = admin_client.post(URL, SEED_BODY, content_type="application/json")
    assert response.status_code == 401


def test_the_openapi_document_describes_the_call_with_the_seeds_example(anonymous_api) -> None:
    document = anonymous_api.get("/api/schema/", HTTP_ACCEPT="application/json").json()

    operation = document["paths"]["/v1/admin/integrations"]["post"]
    request = operation["requestBody"]["content"]["application/json"]
    assert next(iter(request["examples"].values()))["value"] == SEED_BODY
    assert set(operation["responses"]) == {"201", "400", "401", "403"}
    config = document["components"]["schemas"]["SignalConfigRequest"]["properties"]
    assert config["client_secret"]["writeOnly"] is True
    assert config["client_id"]["writeOnly"] is True
    vendor = document["components"]["schemas"]["SignalIntegrationRequest"]["properties"]["vendor"]
    assert vendor["description"].startswith("One of salesforce_marketing_cloud, sfmc_journey")

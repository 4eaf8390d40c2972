"""Roles: a Marketer sees every list, edits a destination's mapping and filter and nothing else, and never receives a
credential, write key or signing secret; a staff user without a group sees nothing; a superuser manages secrets."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.models import Group, Permission, User
from django.db import connection
from django.test import Client
from django.urls import reverse

from deliveries.models import Delivery
from integrations.models import Destination, Source
from tests.factories import make_delivery, make_event

pytestmark = pytest.mark.django_db

SIGNING_SECRET = "whsec_roles-signing-secret-4d2e9a"
API_KEY = "sk-roles-api-key-7c1b0f"
CLIENT_SECRET = "sfmc-roles-client-secret-55aa"
WRITE_KEY = "wk_roles_website_0f9e8d7c"
STRIPE_WRITE_KEY = "wk_roles_stripe_1a2b3c4d"
STRIPE_SECRET = "whsec_roles-stripe-secret-9988"
SECRETS = [SIGNING_SECRET, API_KEY, CLIENT_SECRET, WRITE_KEY, STRIPE_WRITE_KEY, STRIPE_SECRET]
HIDDEN = "stored — only an administrator can see or change them"


def change_url(obj: Any) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def login(client: Client, user: User) -> Client:
    client.force_login(user)
    return client


@pytest.fixture
def marketer(django_user_model) -> User:
    user = django_user_model.objects.create_user("mia", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="Marketer"))
    return user


@pytest.fixture
def marketer_client(client: Client, marketer: User) -> Client:
    return login(client, marketer)


@pytest.fixture
def website() -> Source:
    return Source.objects.create(name="Website", slug="website", write_key=WRITE_KEY)


@pytest.fixture
def stripe() -> Source:
    return Source.objects.create(
        name="Stripe",
        slug="stripe",
        kind="stripe",
        write_key=STRIPE_WRITE_KEY,
        settings={"signing_secret": STRIPE_SECRET},
    )


@pytest.fixture
def hook(website: Source) -> Destination:
    destination = Destination.objects.create(
        name="Welcome hook",
        slug="welcome-hook",
        vendor="webhook",
        config={"url": "https://hooks.example.com/in"},
        credentials={"signing_secret": SIGNING_SECRET, "headers": {"X-Api-Key": API_KEY}},
        filter={"types": ["identify"]},
        mapping={"email": "traits.email"},
        consent_categories=["Analytics"],
        rate_limit=10,
    )
    destination.sources.add(website)
    return destination


@pytest.fixture
def journey(website: Source) -> Destination:
    destination = Destination.objects.create(
        name="Welcome journey",
        slug="welcome-journey",
        vendor="sfmc_journey",
        config={"subdomain": "mc563885gzs27c5t9-63k636ttgm", "event_definition_key": "APIEvent-welcome"},
        credentials={"client_id": "sfmc-roles-client", "client_secret": CLIENT_SECRET},
        mapping={"ContactKey": "userId", "Data": {"email": "traits.email"}},
    )
    destination.sources.add(website)
    return destination


def crafted_post(destination: Destination, **changes: Any) -> dict[str, Any]:
    """Everything a full form would post, with other values for the fields a marketer may not change."""
    data: dict[str, Any] = {
        "name": "Renamed",
        "slug": "renamed",
        "vendor": "segment",
        "sources": [],
        "config": '{"url": "https://attacker.example.com/steal"}',
        "credentials__webhook__signing_secret": "whsec_typed-by-the-marketer",
        "credentials__webhook__headers": '{"X-Api-Key": "typed"}',
        "credentials__webhook__headers__remove": "on",
        "consent_categories": "",
        "rate_limit": "99",
        "rate_period": "",
        "concurrency": "",
        "timeout": "1.0",
        "retry_deadline": "1:00:00",
        "paused": "on",
        "mapping": json.dumps(destination.mapping),
        "filter": json.dumps(destination.filter),
    }
    data.update(changes)
    return data


def no_secret_in(html: str) -> list[str]:
    return [s for s in SECRETS if s in html]


# A Marketer sees everything


def test_a_marketer_opens_every_list_and_every_record(marketer_client: Client, hook: Destination, stripe: Source):
    event = make_event(hook.sources.get())
    delivery = make_delivery(hook, event, status=Delivery.Status.FAILED)
    pages = [
        reverse("admin:index"),
        reverse("admin:integrations_source_changelist"),
        reverse("admin:integrations_destination_changelist"),
        reverse("admin:deliveries_event_changelist"),
        reverse("admin:deliveries_delivery_changelist"),
        reverse("admin:deliveries_replay_changelist"),
        change_url(stripe),
        change_url(hook),
        change_url(event),
        change_url(delivery),
        reverse("admin:integrations_source_try", args=[stripe.pk]),
    ]
    for url in pages:
        response = marketer_client.get(url)
        assert response.status_code == 200, url
        assert no_secret_in(response.content.decode()) == [], url


def test_no_list_shows_a_credential_or_a_write_key_to_a_marketer(
    marketer_client: Client, hook: Destination, journey: Destination, stripe: Source
):
    destinations = marketer_client.get(reverse("admin:integrations_destination_changelist")).content.decode()
    sources = marketer_client.get(reverse("admin:integrations_source_changelist")).content.decode()

    assert "Welcome hook" in destinations
    assert "Welcome journey" in destinations
    assert "column-credentials_" not in destinations
    assert "X-Api-Key" not in destinations  # not even the name of a secret header
    assert "Stripe" in sources
    assert no_secret_in(destinations + sources) == []


# A Marketer's destination page


def test_a_marketers_destination_page_has_no_credential_input_only_whether_some_are_stored(
    marketer_client: Client, hook: Destination
):
    html = marketer_client.get(change_url(hook)).content.decode()

    assert 'name="credentials__' not in html
    assert "credential-state" not in html  # the superuser's masks, with the names of secret headers
    assert "X-Api-Key" not in html
    assert HIDDEN in html
    assert no_secret_in(html) == []
    assert "you can change the mapping and the filter below" in html
    # Mapping and filter are inputs; the rest reads as text.
    assert 'name="mapping"' in html
    assert 'name="filter"' in html
    for field in ("name", "slug", "vendor", "config", "sources", "enabled", "paused", "consent_categories", "timeout"):
        assert f'name="{field}"' not in html, field
    assert re.search(r'class="readonly">\s*Welcome hook\s*<', html)
    assert "https://hooks.example.com/in" in html  # the config is not secret: it is shown, read-only


def test_a_destination_without_credentials_says_none_are_stored(marketer_client: Client, website: Source):
    bare = Destination.objects.create(
        name="Bare hook", slug="bare", vendor="webhook", config={"url": "https://hooks.example.com/in"}
    )

    html = marketer_client.get(change_url(bare)).content.decode()

    assert "none stored" in html
    assert HIDDEN not in html


def test_a_marketer_changes_the_mapping_and_filter_and_nothing_else(marketer_client: Client, hook: Destination):
    before = Destination.objects.get(pk=hook.pk)
    mapping = {"email": "traits.email", "plan": "traits.plan"}
    filter_spec = {"types": ["identify", "track"], "events": ["Signed Up"]}

    response = marketer_client.post(
        change_url(hook), crafted_post(hook, mapping=json.dumps(mapping), filter=json.dumps(filter_spec))
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    after = Destination.objects.get(pk=hook.pk)
    assert after.mapping == mapping
    assert after.filter == filter_spec
    assert after.credentials == {"signing_secret": SIGNING_SECRET, "headers": {"X-Api-Key": API_KEY}}
    for field in ("name", "slug", "vendor", "config", "consent_categories", "rate_limit", "timeout", "paused"):
        assert getattr(after, field) == getattr(before, field), field
    assert after.retry_deadline == before.retry_deadline
    assert list(after.sources.all()) == list(before.sources.all())
    assert after.updated_at > before.updated_at


def test_a_crafted_post_cannot_change_credentials_even_with_an_unchanged_mapping(
    marketer_client: Client, journey: Destination
):
    data = crafted_post(
        journey,
        vendor="sfmc_journey",
        credentials__sfmc_journey__client_id="stolen",
        credentials__sfmc_journey__client_secret="stolen",
    )

    response = marketer_client.post(change_url(journey), data)

    assert response.status_code == 302
    journey.refresh_from_db()
    assert journey.credentials == {"client_id": "sfmc-roles-client", "client_secret": CLIENT_SECRET}
    assert journey.name == "Welcome journey"


def test_a_marketers_bad_filter_or_mapping_is_refused_with_the_fields_message(
    marketer_client: Client, journey: Destination
):
    response = marketer_client.post(
        change_url(journey), crafted_post(journey, filter='{"types": ["purchase"]}', mapping='{"email": "traits.["}')
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "'purchase' is not an event type" in " ".join(errors["filter"])
    assert errors["mapping"]
    assert no_secret_in(response.content.decode()) == []
    journey.refresh_from_db()
    assert journey.filter == {}


def test_a_syntax_error_in_the_mapping_says_where_it_is(marketer_client: Client, hook: Destination):
    response = marketer_client.post(change_url(hook), crafted_post(hook, mapping='{"email": '))

    assert response.status_code == 200
    assert "This is not valid JSON" in response.context["adminform"].form.errors["mapping"][0]


def test_a_credential_problem_only_an_administrator_can_fix_does_not_block_the_marketers_mapping(
    marketer_client: Client, journey: Destination
):
    Destination.objects.filter(pk=journey.pk).update(credentials={"client_id": "sfmc-roles-client"})
    journey.refresh_from_db()
    mapping = {"ContactKey": "userId", "Data": {"email": "traits.email", "plan": "traits.plan"}}

    response = marketer_client.post(change_url(journey), crafted_post(journey, mapping=json.dumps(mapping)))

    assert response.status_code == 302
    journey.refresh_from_db()
    assert journey.mapping == mapping
    assert journey.credentials == {"client_id": "sfmc-roles-client"}


def test_the_presets_on_a_marketers_page_are_its_vendors_only(marketer_client: Client, journey: Destination):
    html = marketer_client.get(change_url(journey)).content.decode()

    assert 'class="button preset" data-vendor="sfmc_journey"' in html
    assert 'data-vendor="webhook"' not in html  # no other vendor's help: there is no vendor to switch to


def test_a_marketer_pauses_and_resumes_a_destination_from_the_list(marketer_client: Client, hook: Destination):
    url = reverse("admin:integrations_destination_changelist")

    marketer_client.post(url, {"action": "pause_delivery", "_selected_action": [hook.pk]})
    hook.refresh_from_db()
    assert hook.paused
    marketer_client.post(url, {"action": "resume_delivery", "_selected_action": [hook.pk]})
    hook.refresh_from_db()
    assert not hook.paused


def test_a_marketer_cannot_add_or_delete_destinations_or_change_sources(
    marketer_client: Client, hook: Destination, stripe: Source
):
    assert marketer_client.get(reverse("admin:integrations_destination_add")).status_code == 403
    assert marketer_client.get(reverse("admin:integrations_destination_delete", args=[hook.pk])).status_code == 403
    assert marketer_client.post(reverse("admin:integrations_destination_delete", args=[hook.pk])).status_code == 403
    assert marketer_client.get(reverse("admin:integrations_source_add")).status_code == 403
    response = marketer_client.post(change_url(stripe), {"name": "Mine", "slug": "stripe", "kind": "stripe"})
    assert response.status_code == 403
    assert Destination.objects.filter(pk=hook.pk).exists()
    assert Source.objects.get(pk=stripe.pk).name == "Stripe"


# A Marketer's source page


def test_a_marketers_source_page_hides_the_write_key_and_the_signing_secret(marketer_client: Client, stripe: Source):
    html = marketer_client.get(change_url(stripe)).content.decode()

    assert no_secret_in(html) == []
    assert "hidden — only an administrator can see it" in html  # the write key
    assert "stored — only an administrator can see or change it" in html  # the signing secret
    assert "••" not in html  # not even a mask
    assert "/v1/webhooks/" not in html  # the webhook URL holds the write key
    assert "curl -u YOUR_WRITE_KEY: -H" in html  # the snippets keep their shape, with a placeholder


def test_the_try_a_payload_page_shows_a_marketer_no_secret(marketer_client: Client, stripe: Source):
    body = json.dumps({"id": "evt_1", "type": "customer.created", "data": {"object": {"id": "cus_1"}}})
    url = reverse("admin:integrations_source_try", args=[stripe.pk])

    response = marketer_client.post(url, {"payload": body})

    assert response.status_code == 200
    assert no_secret_in(response.content.decode()) == []


# Everyone else


def test_a_staff_user_without_a_group_gets_403_on_every_page(client: Client, django_user_model, hook: Destination):
    nobody = django_user_model.objects.create_user("nobody", password="pw", is_staff=True)
    login(client, nobody)
    event = make_event(hook.sources.get())
    pages = [
        reverse("admin:integrations_source_changelist"),
        reverse("admin:integrations_destination_changelist"),
        reverse("admin:deliveries_event_changelist"),
        reverse("admin:deliveries_delivery_changelist"),
        reverse("admin:deliveries_replay_changelist"),
        change_url(hook),
        change_url(hook.sources.get()),
        change_url(event),
        reverse("admin:integrations_source_try", args=[hook.sources.get().pk]),
    ]
    for url in pages:
        assert client.get(url).status_code == 403, url
    index = client.get(reverse("admin:index"))
    assert no_secret_in(index.content.decode()) == []


def test_a_superuser_sees_which_credentials_are_set_and_changes_them(admin_client: Client, hook: Destination):
    html = admin_client.get(change_url(hook)).content.decode()

    assert 'name="credentials__webhook__signing_secret"' in html
    assert "X-Api-Key: ••••••••" in html
    assert no_secret_in(html) == []  # set, never echoed

    data = crafted_post(
        hook,
        name="Welcome hook",
        slug="welcome-hook",
        vendor="webhook",
        config='{"url": "https://hooks.example.com/in"}',
        sources=[s.pk for s in hook.sources.all()],
        enabled="on",
        paused="",
        consent_categories="Analytics",
        **{"credentials__webhook__signing_secret": "whsec_cm90YXRlZC1ieS10aGUtYWRtaW4="},
    )
    del data["credentials__webhook__headers__remove"]
    data["credentials__webhook__headers"] = ""
    response = admin_client.post(change_url(hook), data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    hook.refresh_from_db()
    rotated = "whsec_cm90YXRlZC1ieS10aGUtYWRtaW4="
    assert hook.credentials == {"signing_secret": rotated, "headers": {"X-Api-Key": API_KEY}}


def test_a_superuser_sees_a_sources_write_key_and_webhook_url(admin_client: Client, stripe: Source):
    html = admin_client.get(change_url(stripe)).content.decode()

    assert f"/v1/webhooks/{STRIPE_WRITE_KEY}" in html
    assert 'name="settings__stripe__signing_secret"' in html
    assert STRIPE_SECRET not in html


def test_an_editor_without_the_credentials_permission_is_told_about_a_signing_secret_problem(
    client: Client, django_user_model, stripe: Source
):
    editor = django_user_model.objects.create_user("eddie", password="pw", is_staff=True)
    editor.user_permissions.add(*Permission.objects.filter(codename__in=["view_source", "change_source"]))
    login(client, editor)
    token = Fernet(Fernet.generate_key()).encrypt(b'{"signing_secret": "old"}').decode()  # a retired key's
    with connection.cursor() as cursor:
        cursor.execute("UPDATE integrations_source SET settings = %s WHERE id = %s", [token, stripe.pk])
    data = {"name": "Stripe", "slug": "stripe", "kind": "stripe", "enabled": "on", "config": ""}

    page = client.get(change_url(stripe)).content.decode()
    response = client.post(change_url(stripe), data)

    assert 'name="settings__' not in page
    assert 'name="write_key"' not in page
    assert response.status_code == 200
    assert "only an administrator can change the signing secret" in response.content.decode()
    assert no_secret_in(page + response.content.decode()) == []

"""A function's settings on the destination and source forms: one input per declared setting, plain values into the
JSON config, sensitive ones write-only (never rendered, blank keeps, Remove drops), the model's messages beside the
inputs; an insert function on any destination; and a Marketer who cannot change any of it."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.urls import reverse

from integrations.models import Destination, Function, Source

pytestmark = pytest.mark.django_db

API_KEY = "sk-destination-fn-key-33ad91"
SALT = "insert-salt-value-7f2e0c"
TOKEN = "source-fn-token-a81c3d"
ADD = reverse("admin:integrations_destination_add")
DECLARED = [
    {"name": "region", "type": "string", "required": True},
    {"name": "batchLimit", "type": "number"},
    {"name": "verbose", "type": "boolean"},
    {"name": "tags", "type": "array"},
    {"name": "apiKey", "type": "string", "sensitive": True, "required": True},
    {"name": "backupKey", "type": "string", "sensitive": True},
]


@pytest.fixture
def hook() -> Function:
    function = Function(
        name="Order hook", slug="order-hook", kind="destination", code="function onTrack(e) {}", settings=DECLARED
    )
    function.save()
    return function


@pytest.fixture
def tidy() -> Function:
    function = Function(
        name="Tidy",
        slug="tidy",
        kind="insert",
        code="function onTrack(e) { return e; }",
        settings=[{"name": "prefix", "type": "string"}, {"name": "salt", "type": "string", "sensitive": True}],
    )
    function.save()
    return function


def change_url(obj: Any) -> str:
    return reverse(f"admin:integrations_{obj._meta.model_name}_change", args=[obj.pk])


def form_data(**changes: Any) -> dict[str, Any]:
    data = {
        "name": "Orders",
        "slug": "orders",
        "vendor": "function",
        "enabled": "on",
        "config": "",
        "mapping": "",
        "filter": "",
        "consent_categories": "",
        "timeout": "10.0",
        "retry_deadline": "4:00:00",
        "function": "order-hook",
        "function_settings__order-hook__region": "eu",
        "function_settings__order-hook__batchLimit": "50",
        "function_settings__order-hook__verbose": "on",
        "function_settings__order-hook__tags": "vip\nnew",
        "function_settings__order-hook__secret__apiKey": API_KEY,
    }
    return {**data, **changes}


def test_a_function_destination_stores_plain_settings_in_config_and_sensitive_ones_in_credentials(admin_client, hook):
    response = admin_client.post(ADD, form_data())

    assert response.status_code == 302
    destination = Destination.objects.get()
    assert destination.config == {
        "function": "order-hook",
        "settings": {"region": "eu", "batchLimit": 50, "verbose": True, "tags": ["vip", "new"]},
    }
    assert destination.credentials == {"apiKey": API_KEY}


def test_the_page_shows_one_input_per_setting_and_never_a_secret(admin_client, hook):
    admin_client.post(ADD, form_data())
    destination = Destination.objects.get()

    page = admin_client.get(change_url(destination)).content.decode()

    assert API_KEY not in page
    assert re.search(r'<input type="password" name="function_settings__order-hook__secret__apiKey"', page)
    assert 'name="function_settings__order-hook__region" id="id_function_settings__order-hook__region" ' in page
    assert 'value="eu"' in page
    assert '<option value="order-hook" selected>' in page
    # The JSON config leaves out what the inputs show.
    config = re.search(r'<textarea name="config"[^>]*>(.*?)</textarea>', page, re.S).group(1)
    assert "order-hook" not in config


def test_a_blank_secret_keeps_the_stored_one_and_remove_drops_an_optional_one(admin_client, hook):
    admin_client.post(ADD, form_data(**{"function_settings__order-hook__secret__backupKey": "backup-1234"}))
    destination = Destination.objects.get()

    admin_client.post(change_url(destination), form_data(**{"function_settings__order-hook__secret__apiKey": ""}))
    destination.refresh_from_db()
    assert destination.credentials == {"apiKey": API_KEY, "backupKey": "backup-1234"}

    admin_client.post(
        change_url(destination),
        form_data(
            **{
                "function_settings__order-hook__secret__apiKey": "",
                "function_settings__order-hook__secret__backupKey__remove": "on",
            }
        ),
    )
    destination.refresh_from_db()
    assert destination.credentials == {"apiKey": API_KEY}


def test_a_missing_or_mistyped_setting_is_reported_beside_the_function_s_inputs(admin_client, hook):
    response = admin_client.post(
        ADD,
        form_data(
            **{
                "function_settings__order-hook__region": "",
                "function_settings__order-hook__batchLimit": "lots",
            }
        ),
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["function_settings"] == ["config.settings.batchLimit: must be a number, e.g. 30 or 2.5"]
    response = admin_client.post(ADD, form_data(**{"function_settings__order-hook__region": ""}))
    assert response.context["adminform"].form.errors["function_settings"] == ["config.settings.region: required"]
    assert not Destination.objects.exists()


def test_an_insert_function_s_settings_are_kept_and_its_secret_is_write_only(admin_client, hook, tidy):
    prefix = f"insert_values__{tidy.pk}__"
    admin_client.post(
        ADD,
        form_data(insert_function=str(tidy.pk), **{f"{prefix}prefix": "eu-", f"{prefix}secret__salt": SALT}),
    )
    destination = Destination.objects.get()
    assert (destination.insert_function, destination.insert_settings) == (tidy, {"prefix": "eu-"})
    assert destination.insert_secrets == {"salt": SALT}
    assert SALT not in admin_client.get(change_url(destination)).content.decode()

    admin_client.post(change_url(destination), form_data(insert_function=str(tidy.pk), **{f"{prefix}prefix": "us-"}))
    destination.refresh_from_db()
    assert (destination.insert_settings, destination.insert_secrets) == ({"prefix": "us-"}, {"salt": SALT})

    admin_client.post(change_url(destination), form_data(insert_function=""))
    destination.refresh_from_db()
    assert (destination.insert_function, destination.insert_settings, destination.insert_secrets) == (None, {}, {})


def test_a_missing_insert_setting_is_refused_on_a_change_too(admin_client, hook, tidy):
    admin_client.post(ADD, form_data())
    destination = Destination.objects.get()
    tidy.settings = [{"name": "prefix", "type": "string", "required": True}]
    tidy.save()

    response = admin_client.post(change_url(destination), form_data(insert_function=str(tidy.pk)))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["insert_values"] == ["insert_settings.prefix: required"]
    destination.refresh_from_db()
    assert destination.insert_function is None


def test_a_marketer_s_page_has_no_function_inputs_and_a_crafted_post_changes_none(marketer_client, hook, tidy):
    destination = Destination.objects.create(
        name="Orders",
        slug="orders",
        vendor="function",
        config={"function": "order-hook", "settings": {"region": "eu"}},
        credentials={"apiKey": API_KEY},
    )

    page = marketer_client.get(change_url(destination)).content.decode()
    assert "function_settings__" not in page
    assert "insert_values__" not in page
    assert API_KEY not in page

    marketer_client.post(
        change_url(destination),
        {
            "mapping": "",
            "filter": "",
            "function_settings__order-hook__region": "us",
            "function_settings__order-hook__secret__apiKey": "stolen",
            "insert_function": str(tidy.pk),
            f"insert_values__{tidy.pk}__secret__salt": "x-1234",
        },
    )
    destination.refresh_from_db()
    assert destination.config["settings"] == {"region": "eu"}
    assert destination.credentials == {"apiKey": API_KEY}
    assert destination.insert_function is None


def test_a_javascript_source_keeps_its_sensitive_settings_beside_the_signing_secret(admin_client):
    Function(
        name="Stripe events",
        slug="stripe-events",
        kind="source",
        code="function onRequest(r, s) {}",
        settings=[{"name": "region", "type": "string"}, {"name": "token", "type": "string", "sensitive": True}],
    ).save()
    data = {
        "name": "Stripe",
        "slug": "stripe",
        "kind": "function",
        "write_key": "wk_fn_source_2b7c",
        "enabled": "on",
        "config": '{"signature_header": "Stripe-Signature"}',
        "function": "stripe-events",
        "function_settings__stripe-events__region": "eu",
        "function_settings__stripe-events__secret__token": TOKEN,
        "settings__function__signing_secret": "whsec_fn_source_1234",
    }
    assert admin_client.post(reverse("admin:integrations_source_add"), data).status_code == 302
    source = Source.objects.get()

    blank = {**data, "function_settings__stripe-events__secret__token": "", "settings__function__signing_secret": ""}
    admin_client.post(change_url(source), blank)

    source.refresh_from_db()
    assert source.config == {
        "signature_header": "Stripe-Signature",
        "function": "stripe-events",
        "settings": {"region": "eu"},
    }
    assert source.settings == {"token": TOKEN, "signing_secret": "whsec_fn_source_1234"}
    page = admin_client.get(change_url(source)).content.decode()
    assert TOKEN not in page
    assert "whsec_fn_source_1234" not in page


def test_saving_a_vendor_destination_does_not_log_function_settings_as_changed(admin_client, hook, tidy):
    from django.contrib.admin.models import LogEntry

    data = {**form_data(vendor="webhook", config='{"url": "https://hooks.example.com/in"}', function="")}
    data = {k: v for k, v in data.items() if not k.startswith("function_settings__")}
    admin_client.post(ADD, data)
    destination = Destination.objects.get()
    admin_client.post(change_url(destination), {**data, "name": "Orders 2"})

    message = LogEntry.objects.order_by("pk").last().get_change_message()
    assert message.startswith("Changed Name")
    assert "function settings" not in message.lower()

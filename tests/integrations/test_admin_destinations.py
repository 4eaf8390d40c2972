"""The admin for destinations: the list and its counts, the form and its secrets, per-field errors, pause, resume."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from deliveries.models import Delivery
from integrations.crypto import CANNOT_DECRYPT, MASK
from integrations.models import Destination, Source
from tests import factories
from tests.factories import cell, make_event
from tests.receiver import Receiver

pytestmark = pytest.mark.django_db

SIGNING_SECRET = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LWZvci10ZXN0cw=="
API_KEY = "sk-test-0123456789abcdef"
WRITE_KEY = "segment-write-key-9876"
DESTINATIONS = reverse("admin:integrations_destination_changelist")
ADD = reverse("admin:integrations_destination_add")


def change_url(destination: Destination) -> str:
    return reverse("admin:integrations_destination_change", args=[destination.pk])


def make_destination(slug: str = "hook", *, sources: list[Source] = (), **fields: Any) -> Destination:
    fields.setdefault("name", slug.replace("-", " ").title())
    fields.setdefault("vendor", "webhook")
    fields.setdefault("config", {"url": "http://127.0.0.1:9/hook"})
    fields.setdefault(
        "credentials",
        {"signing_secret": SIGNING_SECRET, "headers": {"X-Api-Key": API_KEY}} if fields["vendor"] == "webhook" else {},
    )
    destination = Destination.objects.create(slug=slug, **fields)
    destination.sources.set(sources)
    return destination


def make_delivery(destination: Destination, source: Source, ago: timedelta = timedelta(minutes=5), **fields: Any):
    return factories.make_delivery(destination, make_event(source, timezone.now() - ago), **fields)


def form_data(destination: Destination | None = None, **changes: Any) -> dict[str, Any]:
    """What the browser posts for the form: the destination's current values (never its secrets), or a new one."""
    data: dict[str, Any] = {
        "name": "Welcome hook",
        "slug": "welcome-hook",
        "vendor": "webhook",
        "enabled": "on",
        "config": '{"url": "https://hooks.example.com/in"}',
        "mapping": "",
        "filter": "",
        "consent_categories": "",
        "rate_limit": "",
        "rate_period": "",
        "concurrency": "",
        "timeout": "10.0",
        "retry_deadline": "4:00:00",
    }
    if destination is not None:
        data.update(
            name=destination.name,
            slug=destination.slug,
            vendor=destination.vendor,
            config=json.dumps(destination.config),
            sources=[s.pk for s in destination.sources.all()],
        )
        if not destination.enabled:
            del data["enabled"]
        if destination.paused:
            data["paused"] = "on"
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def errors_of(response, field: str) -> list[str]:
    form = response.context["adminform"].form
    return [str(e) for e in form.errors.get(field, [])]


# The list


def test_the_list_shows_vendor_state_sources_and_last_delivery(admin_client, source):
    make_destination("live", sources=[source], last_delivered_at=timezone.now() - timedelta(minutes=3))
    make_destination("on-hold", paused=True)
    make_destination("off", enabled=False, vendor="segment", config={}, credentials={"write_key": WRITE_KEY})

    html = admin_client.get(DESTINATIONS).content.decode()

    assert cell(html, "Live", "vendor_") == "Webhook"
    assert cell(html, "Live", "state") == "Enabled"
    assert cell(html, "On Hold", "state") == "Paused"
    assert cell(html, "Off", "state") == "Disabled"
    assert cell(html, "Off", "vendor_") == "Segment"
    assert cell(html, "Live", "sources_") == "Website"
    assert cell(html, "On Hold", "sources_") == "none"
    assert cell(html, "Live", "last_delivered") == "3 minutes ago"
    assert cell(html, "Off", "last_delivered") == "never"


def test_a_destination_whose_settings_are_wrong_shows_as_misconfigured_until_it_delivers_again(admin_client):
    now = timezone.now()
    refused = dict(
        vendor="segment",
        config={},
        credentials={"write_key": WRITE_KEY},
        last_error="HTTP 401: Invalid write key",
        last_error_code="http_401",
        last_error_hint="Copy the write key again.",
        last_error_at=now - timedelta(minutes=1),
    )
    make_destination("refused", **refused)
    make_destination("recovered", **refused | {"last_delivered_at": now})
    make_destination("flaky", **refused | {"last_error_code": "http_503"})

    html = admin_client.get(DESTINATIONS).content.decode()

    assert cell(html, "Refused", "state") == "Misconfigured"
    assert 'title="Every delivery fails until the settings are fixed. Copy the write key again."' in html
    assert cell(html, "Recovered", "state") == "Enabled"
    assert cell(html, "Flaky", "state") == "Enabled"


def test_the_list_counts_delivered_and_failed_deliveries_of_the_last_24_hours(admin_client, source):
    hook = make_destination("hook", sources=[source])
    make_destination("quiet", sources=[source])
    for minutes in (1, 60, 23 * 60):
        make_delivery(hook, source, timedelta(minutes=minutes), status=Delivery.Status.DELIVERED)
    make_delivery(hook, source, timedelta(hours=25), status=Delivery.Status.DELIVERED)
    make_delivery(hook, source, timedelta(hours=2), status=Delivery.Status.FAILED)
    make_delivery(hook, source, timedelta(days=3), status=Delivery.Status.FAILED)
    make_delivery(hook, source, status=Delivery.Status.RETRYING)
    make_delivery(hook, source, status=Delivery.Status.FILTERED)

    html = admin_client.get(DESTINATIONS).content.decode()

    assert (cell(html, "Hook", "delivered_24h"), cell(html, "Hook", "failed_24h")) == ("3", "1")
    assert (cell(html, "Quiet", "delivered_24h"), cell(html, "Quiet", "failed_24h")) == ("0", "0")
    delivered_link = f"?destination__id__exact={hook.pk}&amp;status__exact=delivered"
    assert delivered_link in html


def test_the_list_shows_how_many_deliveries_wait_for_a_paused_destination(admin_client, source):
    held = make_destination("held", paused=True)
    for status in (Delivery.Status.PENDING, Delivery.Status.PENDING, Delivery.Status.RETRYING):
        make_delivery(held, source, status=status)
    make_delivery(held, source, status=Delivery.Status.DELIVERED)

    html = admin_client.get(DESTINATIONS).content.decode()

    assert cell(html, "Held", "state") == "Paused 3 waiting"


def test_the_list_queries_do_not_grow_with_the_number_of_destinations(admin_client, source):
    make_destination("first", sources=[source])
    admin_client.get(DESTINATIONS)  # sessions, content types: warm up
    with CaptureQueriesContext(connection) as one:
        assert admin_client.get(DESTINATIONS).status_code == 200
    for n in range(10):
        destination = make_destination(f"more-{n}", sources=[source])
        make_delivery(destination, source, status=Delivery.Status.DELIVERED)
        make_delivery(destination, source, status=Delivery.Status.FAILED)

    with CaptureQueriesContext(connection) as eleven:
        html = admin_client.get(DESTINATIONS).content.decode()

    assert len(eleven) == len(one)
    assert cell(html, "More 9", "failed_24h") == "1"


def test_the_last_error_is_short_with_the_whole_message_in_its_tooltip(admin_client):
    message = "HTTP 400: " + "the receiver explains at length " * 10
    make_destination("broken", last_error=message, last_error_at=timezone.now() - timedelta(minutes=10))

    html = admin_client.get(DESTINATIONS).content.decode()

    shown = cell(html, "Broken", "last_error_")
    assert shown.startswith("HTTP 400: the receiver explains")
    assert "…" in shown
    assert shown.endswith("10 minutes ago")
    assert f'title="{message}"' in html


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        ("vendor__exact=segment", ["Segment Copy"]),
        ("enabled__exact=0", ["Off"]),
        ("paused__exact=1", ["On Hold"]),
        ("enabled__exact=1&paused__exact=0", ["Live", "Segment Copy"]),
    ],
)
def test_the_list_filters_by_vendor_enabled_and_paused(admin_client, query, shown):
    make_destination("live")
    make_destination("on-hold", paused=True)
    make_destination("off", enabled=False)
    make_destination("segment-copy", vendor="segment", config={}, credentials={"write_key": WRITE_KEY})

    response = admin_client.get(f"{DESTINATIONS}?{query}")

    assert [d.name for d in response.context["cl"].result_list] == shown


# Credentials are never shown


def test_neither_the_list_nor_the_page_contains_a_stored_secret(admin_client):
    hook = make_destination("hook")
    make_destination("segment-copy", vendor="segment", config={}, credentials={"write_key": WRITE_KEY})

    pages = {
        "list": admin_client.get(DESTINATIONS).content.decode(),
        "hook": admin_client.get(change_url(hook)).content.decode(),
        "segment": admin_client.get(change_url(Destination.objects.get(slug="segment-copy"))).content.decode(),
    }

    for name, html in pages.items():
        for secret in (SIGNING_SECRET, API_KEY, WRITE_KEY):
            assert secret not in html, f"{secret} is on the {name} page"
    assert cell(pages["list"], "Hook", "credentials_") == f"signing_secret: {MASK} headers: X-Api-Key: {MASK}"
    assert cell(pages["list"], "Segment Copy", "credentials_") == f"write_key: {MASK}"
    assert f"signing_secret: {MASK}" in pages["hook"]
    assert f"headers: X-Api-Key: {MASK}" in pages["hook"]
    # Every credential input starts empty.
    inputs = re.findall(r'<input[^>]*name="credentials__[^"]*"[^>]*>', pages["hook"])
    assert inputs
    assert all("value=" not in tag for tag in inputs)
    textareas = re.findall(r'<textarea[^>]*name="credentials__[^"]*"[^>]*>(.*?)</textarea>', pages["hook"], re.S)
    assert textareas == [""]  # the webhook's secret headers


def test_an_unset_credential_says_not_set(admin_client):
    hook = make_destination("hook", credentials={"headers": {"X-Api-Key": API_KEY}})

    html = admin_client.get(DESTINATIONS).content.decode()

    assert cell(html, "Hook", "credentials_") == f"signing_secret: not set headers: X-Api-Key: {MASK}"
    assert "signing_secret: not set" in admin_client.get(change_url(hook)).content.decode()


def test_a_new_destination_is_saved_with_its_credentials_encrypted(admin_client, source):
    response = admin_client.post(
        ADD,
        form_data(
            sources=[source.pk],
            credentials__webhook__signing_secret=SIGNING_SECRET + "\n",
            credentials__webhook__headers=f'{{"X-Api-Key": "{API_KEY}"}}',
        ),
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    destination = Destination.objects.get(slug="welcome-hook")
    assert destination.credentials == {"signing_secret": SIGNING_SECRET, "headers": {"X-Api-Key": API_KEY}}
    assert destination.config == {"url": "https://hooks.example.com/in"}
    assert destination.mapping == {}
    assert destination.filter == {}
    assert destination.consent_categories == []
    assert list(destination.sources.all()) == [source]
    with connection.cursor() as cursor:
        cursor.execute("SELECT credentials FROM integrations_destination WHERE id = %s", [destination.pk])
        (stored,) = cursor.fetchone()
    assert API_KEY not in stored
    assert SIGNING_SECRET not in stored


def test_blank_credential_inputs_keep_what_is_stored(admin_client):
    hook = make_destination("hook", name="Hook")

    response = admin_client.post(change_url(hook), form_data(hook, name="Renamed hook"))

    assert response.status_code == 302, response.context["adminform"].form.errors
    hook.refresh_from_db()
    assert hook.name == "Renamed hook"
    assert hook.credentials == {"signing_secret": SIGNING_SECRET, "headers": {"X-Api-Key": API_KEY}}


def test_a_typed_credential_replaces_that_key_only(admin_client):
    hook = make_destination("hook")

    response = admin_client.post(
        change_url(hook), form_data(hook, credentials__webhook__headers='{"X-Api-Key": "sk-new-key-1234"}')
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    hook.refresh_from_db()
    assert hook.credentials == {"signing_secret": SIGNING_SECRET, "headers": {"X-Api-Key": "sk-new-key-1234"}}


def test_remove_drops_an_optional_credential(admin_client):
    hook = make_destination("hook")

    response = admin_client.post(change_url(hook), form_data(hook, credentials__webhook__signing_secret__remove="on"))

    assert response.status_code == 302, response.context["adminform"].form.errors
    hook.refresh_from_db()
    assert hook.credentials == {"headers": {"X-Api-Key": API_KEY}}


def test_a_vendor_change_keeps_only_the_new_vendors_keys_and_asks_for_the_missing_ones(admin_client):
    hook = make_destination("hook")
    data = form_data(hook, vendor="segment", config="{}")

    missing = admin_client.post(change_url(hook), data)
    saved = admin_client.post(change_url(hook), {**data, "credentials__segment__write_key": WRITE_KEY})

    assert errors_of(missing, "credentials") == ["credentials.write_key: required"]
    assert saved.status_code == 302, saved.context["adminform"].form.errors
    hook.refresh_from_db()
    assert (hook.vendor, hook.credentials) == ("segment", {"write_key": WRITE_KEY})


def test_credentials_that_cannot_be_decrypted_say_so_and_can_be_entered_again(admin_client):
    hook = make_destination("hook")
    token = Fernet(Fernet.generate_key()).encrypt(b'{"signing_secret": "old"}').decode()  # a retired key's
    with connection.cursor() as cursor:
        cursor.execute("UPDATE integrations_destination SET credentials = %s WHERE id = %s", [token, hook.pk])

    page = admin_client.get(change_url(hook)).content.decode()
    listed = cell(admin_client.get(DESTINATIONS).content.decode(), "Hook", "credentials_")
    kept = admin_client.post(change_url(hook), form_data(hook))
    replaced = admin_client.post(
        change_url(hook),
        form_data(hook, credentials__webhook__headers=f'{{"X-Api-Key": "{API_KEY}"}}'),
    )

    assert f"signing_secret: {CANNOT_DECRYPT}" in page
    assert listed == f"signing_secret: {CANNOT_DECRYPT} headers: {CANNOT_DECRYPT}"
    assert errors_of(kept, "credentials")[0].startswith(f"credentials: {CANNOT_DECRYPT}")
    assert replaced.status_code == 302, replaced.context["adminform"].form.errors
    hook.refresh_from_db()
    assert hook.credentials == {"headers": {"X-Api-Key": API_KEY}}


# Errors show next to their fields


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        ({"config": '{"method": "PUT"}'}, "config", ["config.url: required"]),
        (
            {"config": '{"url": "ftp://x", "batch_size": 0}'},
            "config",
            ["config.url: must start with http:// or https://", "config.batch_size: must be between 1 and 500"],
        ),
        (
            {"credentials__webhook__headers": '["X-Api-Key"]'},
            "credentials",
            ["credentials.headers: must be an object of strings, not a list"],
        ),
        (
            {"credentials__webhook__headers": "{X-Api-Key: 1}"},
            "credentials",
            [
                "credentials.headers: this is not valid JSON: "
                "Expecting property name enclosed in double quotes (column 2)."
            ],
        ),
        ({"mapping": '{"email": "traits.["}'}, "mapping", None),
        ({"filter": '{"types": ["purchase"]}'}, "filter", None),
        ({"filter": '{"kinds": []}'}, "filter", ["filter.kinds: unknown key (use types, events, condition)"]),
        ({"timeout": "0"}, "timeout", ["timeout: must be more than 0 seconds"]),
        ({"rate_period": "-1"}, "rate_period", ["rate_period: must be more than 0 seconds"]),
        (
            {"retry_deadline": "31 00:00:00"},
            "retry_deadline",
            ["retry_deadline: must be more than 0 seconds and at most 30 days"],
        ),
        ({"config": '{"url": "https://x",}'}, "config", None),
    ],
)
def test_each_problem_is_shown_next_to_its_field(admin_client, changes, field, expected):
    response = admin_client.post(ADD, form_data(**changes))

    assert response.status_code == 200
    errors = errors_of(response, field)
    assert errors, response.context["adminform"].form.errors
    if expected is not None:
        assert errors == expected
    html = response.content.decode()
    assert re.search(rf'class="[^"]*(errors[^"]*field-{field}\b|field-{field} errors)', html), f"no error for {field}"
    assert not Destination.objects.exists()


def test_typed_secrets_are_not_sent_back_after_an_error_and_the_page_says_so(admin_client):
    response = admin_client.post(
        ADD, form_data(config="{}", credentials__webhook__headers=f'{{"X-Api-Key": "{API_KEY}"}}')
    )

    html = response.content.decode()
    assert errors_of(response, "config") == ["config.url: required"]
    assert API_KEY not in html
    assert "Type the credentials again: what you typed is not sent back to the page." in html


def test_broken_json_says_where_and_is_not_blamed_twice(admin_client):
    response = admin_client.post(ADD, form_data(config='{"url": "https://x",\n}'))

    assert errors_of(response, "config") == [
        "This is not valid JSON: Expecting property name enclosed in double quotes (line 2, column 1)."
    ]
    # What was typed comes back as typed, to fix in place.
    assert '{"url": "https://x",\n}' in response.context["adminform"].form["config"].value()


@pytest.mark.parametrize(
    ("field", "typed", "says"),
    [
        ("config", '{"url": ' + "[" * 5000 + "]" * 5000 + "}", "nested more than 64 levels deep"),
        ("config", '{"url": "https://x", "n": ' + "9" * 5000 + "}", "a number has more than 4,300 digits"),
        ("config", '{"url": "https://x", "n": 1e400}', "1e400 is too large for a JSON number"),
        ("config", '{"url": "https://x", "n": NaN}', "NaN is not a JSON number"),
        ("filter", '{"events": ["a\\u0000b"]}', "NUL character"),
        ("mapping", '{"email": "\\ud800"}', "half a surrogate pair"),
        ("mapping", '{"email": "' + "1" * 5000 + '"}', "holds a number too long to read"),
    ],
)
def test_json_no_database_could_store_is_explained_and_nothing_is_saved(admin_client, field, typed, says):
    """Found by the fuzz tests (tests/fuzz/test_admin_json_fuzz.py): each was a server error, or stored and then
    failed on PostgreSQL or in the management API's answer."""
    destination = make_destination()

    response = admin_client.post(change_url(destination), form_data(destination, **{field: typed}))

    assert response.status_code == 200
    assert any(says in error for error in errors_of(response, field)), errors_of(response, field)
    destination.refresh_from_db()
    assert (destination.config, destination.filter, destination.mapping) == ({"url": "http://127.0.0.1:9/hook"}, {}, {})


def test_a_filter_type_and_a_consent_list_are_checked_in_words(admin_client):
    response = admin_client.post(ADD, form_data(filter='{"types": ["purchase"]}', consent_categories="Advertising"))

    assert errors_of(response, "filter") == [
        "filter.types: 'purchase' is not an event type (use identify, track, page, screen, group, alias)"
    ]
    assert errors_of(response, "consent_categories") == []


def test_consent_categories_are_typed_comma_separated(admin_client):
    response = admin_client.post(ADD, form_data(consent_categories="Advertising, Analytics ,"))

    assert response.status_code == 302, response.context["adminform"].form.errors
    destination = Destination.objects.get()
    assert destination.consent_categories == ["Advertising", "Analytics"]
    page = admin_client.get(change_url(destination)).content.decode()
    assert 'value="Advertising, Analytics"' in page


# Pause and resume


def test_pause_delivery_pauses_the_selected_destinations(admin_client):
    hook = make_destination("hook")
    other = make_destination("other")

    response = admin_client.post(DESTINATIONS, {"action": "pause_delivery", "_selected_action": [hook.pk]}, follow=True)

    hook.refresh_from_db()
    other.refresh_from_db()
    assert (hook.paused, other.paused) == (True, False)
    assert "Paused Hook. New events are kept and wait until you resume delivery." in [
        str(m) for m in response.context["messages"]
    ]


def test_resume_delivery_sends_what_waited(admin_client, source, django_capture_on_commit_callbacks):
    with Receiver() as receiver:
        hook = make_destination("hook", config={"url": receiver.url}, paused=True)
        waiting = [make_delivery(hook, source) for _ in range(3)]

        with django_capture_on_commit_callbacks(execute=True):
            response = admin_client.post(
                DESTINATIONS, {"action": "resume_delivery", "_selected_action": [hook.pk]}, follow=True
            )

        hook.refresh_from_db()
        assert hook.paused is False
        assert {d.status for d in Delivery.objects.filter(pk__in=[d.pk for d in waiting])} == {"delivered"}
        assert len(receiver.requests) == 3
    assert "Resumed Hook. Waiting events are being sent now." in [str(m) for m in response.context["messages"]]


def test_resuming_a_disabled_destination_says_it_is_disabled(admin_client):
    off = make_destination("off", enabled=False, paused=True)

    response = admin_client.post(DESTINATIONS, {"action": "resume_delivery", "_selected_action": [off.pk]}, follow=True)

    assert [str(m) for m in response.context["messages"]] == [
        "Off is no longer paused but is disabled: enable it to send events there."
    ]


def test_unticking_paused_in_the_form_also_sends_what_waited(admin_client, source, django_capture_on_commit_callbacks):
    with Receiver() as receiver:
        hook = make_destination("hook", config={"url": receiver.url}, paused=True)
        delivery = make_delivery(hook, source)

        with django_capture_on_commit_callbacks(execute=True):
            response = admin_client.post(change_url(hook), form_data(hook, paused=None))

        assert response.status_code == 302, response.context["adminform"].form.errors
        delivery.refresh_from_db()
        assert delivery.status == Delivery.Status.DELIVERED


def test_a_view_only_user_sees_destinations_without_secrets_or_actions(client, django_user_model):
    make_destination("hook")
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_destination"))
    client.force_login(viewer)

    html = client.get(DESTINATIONS).content.decode()

    assert "Hook" in html
    assert "pause_delivery" not in html
    page = client.get(change_url(Destination.objects.get())).content.decode()
    assert API_KEY not in page
    assert SIGNING_SECRET not in page
    assert "X-Api-Key" not in page  # without the credentials permission, not even which secrets are set
    assert "stored — only an administrator can see or change them" in page


# The change page


def test_the_change_page_links_to_the_destinations_deliveries_and_shows_its_status(admin_client, source):
    hook = make_destination("hook", sources=[source])
    make_delivery(hook, source, status=Delivery.Status.DELIVERED)

    html = admin_client.get(change_url(hook)).content.decode()

    assert f'href="/admin/deliveries/delivery/?destination__id__exact={hook.pk}"' in html
    assert re.search(r'field-delivered_24h.*?<a class="count count-delivered"[^>]*>1</a>', html, re.S)
    assert 'class="state state-enabled"' in html


def test_deleting_a_destination_counts_its_deliveries_instead_of_listing_them(admin_client, source):
    hook = make_destination("hook")
    for _ in range(3):
        make_delivery(hook, source, status=Delivery.Status.DELIVERED)

    html = admin_client.get(reverse("admin:integrations_destination_delete", args=[hook.pk])).content.decode()

    assert "3 deliveries, with everything recorded for them" in html

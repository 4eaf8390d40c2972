"""The admin for sources and events: lists, counts, filters, search, snippets, secrets and read-only events."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from deliveries.models import Event
from integrations.models import Source

pytestmark = pytest.mark.django_db

SECRET = "s3cr3t-value"
SOURCES = reverse("admin:integrations_source_changelist")
EVENTS = reverse("admin:deliveries_event_changelist")


def make_event(source: Source, ago: timedelta = timedelta(minutes=5), **fields: Any) -> Event:
    at = timezone.now() - ago
    fields.setdefault("message_id", str(uuid.uuid4()))
    fields.setdefault("type", Event.Type.TRACK)
    fields.setdefault("event", "Order Completed" if fields["type"] == Event.Type.TRACK else "")
    fields.setdefault("user_id", "user-1")
    payload = {"type": fields["type"], "messageId": fields["message_id"], "userId": fields["user_id"]}
    if fields["event"]:
        payload["event"] = fields["event"]
    fields.setdefault("payload", payload)
    return Event.objects.create(source=source, received_at=at, timestamp=at, **fields)


def cell(html: str, row_of: str, column: str) -> str:
    """Return the text of one changelist cell: the row that mentions `row_of`, the column's class."""
    for row in re.findall(r"<tr>.*?</tr>", html, re.S):
        if row_of in row:
            match = re.search(rf'class="field-{column}[^"]*">(.*?)</t[dh]>', row, re.S)
            assert match, f"no {column} cell in the row of {row_of}"
            return re.sub(r"<[^>]+>", "", match.group(1)).strip()
    raise AssertionError(f"no row mentions {row_of}")


def result_names(response) -> list[str]:
    return [str(obj) for obj in response.context["cl"].result_list]


@pytest.fixture
def quiet(db) -> Source:
    return Source.objects.create(name="Mobile app", slug="mobile", write_key="wk_test_mobile")


@pytest.fixture
def webhook(db) -> Source:
    return Source.objects.create(
        name="Customer.io",
        slug="cio",
        kind="customerio",
        write_key="wk_test_cio",
        settings={"signing_secret": SECRET},
    )


# Sources: the list


def test_the_source_list_counts_the_events_of_the_last_24_hours(admin_client, source, quiet):
    for minutes in (1, 60, 23 * 60):
        make_event(source, timedelta(minutes=minutes))
    make_event(source, timedelta(hours=25))
    make_event(source, timedelta(days=3))

    html = admin_client.get(SOURCES).content.decode()

    assert cell(html, "Website", "events_24h") == "3"
    assert cell(html, "Mobile app", "events_24h") == "0"


def test_the_source_list_shows_when_the_last_event_arrived(admin_client, source, quiet):
    make_event(source, timedelta(days=3))
    latest = make_event(source, timedelta(hours=2))

    response = admin_client.get(SOURCES)
    by_name = {s.name: s for s in response.context["cl"].result_list}

    assert by_name["Website"].last_event_at == latest.received_at
    assert by_name["Mobile app"].last_event_at is None
    assert cell(response.content.decode(), "Mobile app", "last_event_at") == "never"
    assert cell(response.content.decode(), "Website", "last_event_at") == "2\xa0hours ago"


def test_the_event_count_links_to_the_events_of_that_source(admin_client, source):
    html = admin_client.get(SOURCES).content.decode()

    assert f'href="{EVENTS}?source__id__exact={source.pk}"' in html


def test_the_source_list_sorts_by_activity(admin_client, source, quiet):
    busy = Source.objects.create(name="Backend", slug="backend", write_key="wk_test_backend")
    for _ in range(3):
        make_event(busy)
    make_event(source)
    make_event(quiet, timedelta(days=2))

    columns = ["name", "kind", "enabled", "events_24h", "last_event_at"]
    by_count = admin_client.get(SOURCES, {"o": f"-{columns.index('events_24h') + 1}"})
    by_last_event = admin_client.get(SOURCES, {"o": f"-{columns.index('last_event_at') + 1}"})

    assert result_names(by_count) == ["Backend", "Website", "Mobile app"]
    assert result_names(by_last_event)[-1] == "Mobile app"


def test_the_source_list_runs_the_same_queries_for_two_or_two_hundred_sources(
    admin_client, django_assert_max_num_queries
):
    for i in range(2):
        make_event(Source.objects.create(name=f"Source {i}", slug=f"s{i}", write_key=f"wk_{i}"))
    with CaptureQueriesContext(connection) as few:
        assert admin_client.get(SOURCES).status_code == 200
    for i in range(2, 200):
        make_event(Source.objects.create(name=f"Source {i}", slug=f"s{i}", write_key=f"wk_{i}"))

    with django_assert_max_num_queries(len(few)):
        response = admin_client.get(SOURCES)

    assert len(response.context["cl"].result_list) == 100  # one full page, each row annotated


def test_sources_can_be_searched_by_name_and_slug(admin_client, source, quiet):
    assert result_names(admin_client.get(SOURCES, {"q": "mobile"})) == ["Mobile app"]
    assert result_names(admin_client.get(SOURCES, {"q": "web"})) == ["Website"]


def test_sources_can_be_filtered_by_kind_and_enabled(admin_client, source, webhook):
    Source.objects.filter(pk=source.pk).update(enabled=False)

    assert result_names(admin_client.get(SOURCES, {"kind__exact": "customerio"})) == ["Customer.io"]
    assert result_names(admin_client.get(SOURCES, {"enabled__exact": "0"})) == ["Website"]


def test_a_source_can_be_disabled_from_the_list(admin_client, source):
    response = admin_client.post(
        SOURCES,
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-MIN_NUM_FORMS": "0",
            "form-MAX_NUM_FORMS": "1000",
            "form-0-id": str(source.pk),
            "_save": "Save",
        },
    )

    assert response.status_code == 302
    source.refresh_from_db()
    assert source.enabled is False


# Sources: the page of one source


def test_the_source_page_shows_the_write_key_endpoint_and_snippets(admin_client, source):
    html = admin_client.get(reverse("admin:integrations_source_change", args=[source.pk])).content.decode()

    assert '<code id="write-key">wk_test_website</code>' in html
    assert '<code id="endpoint-url">http://testserver/v1/</code>' in html
    assert "curl -u wk_test_website: -H &#x27;Content-Type: application/json&#x27;" not in html  # not escaped twice
    assert "curl -u wk_test_website: -H 'Content-Type: application/json'" in html
    assert "http://testserver/v1/track</pre>" in html
    assert "import segment.analytics as analytics" in html
    assert 'analytics.write_key = "wk_test_website"' in html
    assert 'analytics.host = "http://testserver"' in html
    assert 'analytics.load("wk_test_website", {' in html
    assert '{"Segment.io": {apiHost: "testserver/v1", protocol: "http"}}' in html
    assert "&lt;script&gt;" in html  # the analytics.js snippet is shown, not run
    assert f'href="{EVENTS}?source__id__exact={source.pk}"' in html


def test_the_snippets_use_the_public_url_when_it_is_set(admin_client, source, settings):
    settings.PUBLIC_URL = "https://cdp.example.com/"

    html = admin_client.get(reverse("admin:integrations_source_change", args=[source.pk])).content.decode()

    assert '<code id="endpoint-url">https://cdp.example.com/v1/</code>' in html
    assert "https://cdp.example.com/v1/track</pre>" in html
    assert 'analytics.host = "https://cdp.example.com"' in html
    assert '{"Segment.io": {apiHost: "cdp.example.com/v1", protocol: "https"}}' in html
    assert "testserver" not in html


def test_a_webhook_source_page_shows_its_webhook_url(admin_client, webhook):
    html = admin_client.get(reverse("admin:integrations_source_change", args=[webhook.pk])).content.decode()

    assert '<code id="webhook-url">http://testserver/v1/webhooks/wk_test_cio</code>' in html


def test_the_write_key_cannot_be_changed_after_creation(admin_client, source):
    url = reverse("admin:integrations_source_change", args=[source.pk])
    assert 'name="write_key"' not in admin_client.get(url).content.decode()

    response = admin_client.post(
        url, {"name": "Web site", "slug": "website", "kind": "http", "enabled": "on", "write_key": "wk_hijack"}
    )

    assert response.status_code == 302
    source.refresh_from_db()
    assert (source.name, source.write_key) == ("Web site", "wk_test_website")


def test_a_new_source_gets_a_write_key_that_can_be_replaced_by_a_segment_one(admin_client):
    add = reverse("admin:integrations_source_add")
    html = admin_client.get(add).content.decode()
    assert re.search(r'name="write_key" value="wk_[\w-]+"', html)

    response = admin_client.post(
        add, {"name": "Shop", "slug": "shop", "kind": "http", "enabled": "on", "write_key": "SegmentKey123"}
    )

    assert response.status_code == 302
    assert Source.objects.get(slug="shop").write_key == "SegmentKey123"


# Sources: secrets


def test_secret_settings_never_appear_in_any_page(admin_client, webhook):
    make_event(webhook)
    pages = [
        SOURCES,
        reverse("admin:integrations_source_change", args=[webhook.pk]),
        reverse("admin:integrations_source_delete", args=[webhook.pk]),
        reverse("admin:integrations_source_history", args=[webhook.pk]),
    ]
    for url in pages:
        html = admin_client.get(url).content.decode()
        assert SECRET not in html, url
        assert 'name="settings"' not in html, url
    # The change page has an empty input for a new secret, and says one is stored, by a mask.
    html = admin_client.get(reverse("admin:integrations_source_change", args=[webhook.pk])).content.decode()
    assert 'name="settings__customerio__signing_secret"' in html
    assert 'data-key="signing_secret">••••••••' in html


def test_saving_a_source_keeps_its_secret_settings(admin_client, webhook):
    response = admin_client.post(
        reverse("admin:integrations_source_change", args=[webhook.pk]),
        {"name": "Customer.io (prod)", "slug": "cio", "kind": "customerio", "enabled": "on"},
    )

    assert response.status_code == 302
    webhook.refresh_from_db()
    assert webhook.name == "Customer.io (prod)"
    assert webhook.settings == {"signing_secret": SECRET}


# Sources: deleting


def test_deleting_a_source_counts_its_events_instead_of_listing_them(admin_client, source):
    for _ in range(5):
        make_event(source)
    url = reverse("admin:integrations_source_delete", args=[source.pk])

    html = admin_client.get(url).content.decode()

    assert "5 events" in html
    assert "Order Completed" not in html  # no line per event
    assert admin_client.post(url, {"post": "yes"}).status_code == 302
    assert not Source.objects.exists()
    assert not Event.objects.exists()


# Events


def test_the_event_list_shows_events_newest_first(admin_client, source):
    old = make_event(source, timedelta(hours=3), event="Signed Up", user_id="user-7", anonymous_id="anon-7")
    new = make_event(source, timedelta(minutes=1))

    response = admin_client.get(EVENTS)
    html = response.content.decode()

    assert list(response.context["cl"].result_list) == [new, old]
    row = old.message_id[:8]  # long ids are shortened in the list, whole in the tooltip
    assert f'title="{old.message_id}"' in html
    assert cell(html, row, "source") == "Website"
    assert cell(html, row, "type") == "Track"
    assert cell(html, row, "event") == "Signed Up"
    assert cell(html, row, "user") == "user-7"
    assert cell(html, row, "anonymous") == "anon-7"
    assert cell(html, row, "status_") == "Accepted"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d\xa0\d\d:\d\d:\d\d", cell(html, row, "received"))


def test_events_can_be_filtered_by_source_type_and_status(admin_client, source, quiet):
    web = make_event(source)
    mobile = make_event(quiet, type=Event.Type.IDENTIFY)
    bad = make_event(quiet, status=Event.Status.REJECTED, reject_reason="missing_user_id: no userId")

    def shown(**params: str) -> set[Event]:
        return set(admin_client.get(EVENTS, params).context["cl"].result_list)

    assert shown(source__id__exact=str(source.pk)) == {web}
    assert shown(type__exact="identify") == {mobile}
    assert shown(status__exact="rejected") == {bad}
    assert shown(source__id__exact=str(quiet.pk), status__exact="accepted") == {mobile}
    html = admin_client.get(EVENTS, {"status__exact": "rejected"}).content.decode()
    assert '<span class="rejected" title="missing_user_id: no userId">Rejected</span>' in html


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("msg-123", {"by_message"}),
        ("user-42", {"by_user"}),
        ("anon-42", {"by_anonymous"}),
        ("Order Completed", {"by_message", "by_user", "by_anonymous"}),  # spaces need no quotes
        ("Checkout Started", {"by_name"}),
        ("msg-12", set()),  # identifiers match exactly, so the indexes are used
        ("user-4", set()),
    ],
)
def test_events_can_be_searched(admin_client, source, term, expected):
    events = {
        "by_message": make_event(source, message_id="msg-123", user_id="u1"),
        "by_user": make_event(source, user_id="user-42"),
        "by_anonymous": make_event(source, user_id="", anonymous_id="anon-42"),
        "by_name": make_event(source, user_id="u2", event="Checkout Started"),
    }

    found = set(admin_client.get(EVENTS, {"q": term}).context["cl"].result_list)

    assert found == {events[name] for name in expected}


def test_the_event_list_runs_the_same_queries_for_any_number_of_rows(
    admin_client, source, django_assert_max_num_queries
):
    make_event(source)
    with CaptureQueriesContext(connection) as few:
        admin_client.get(EVENTS)
    others = [Source.objects.create(name=f"S{i}", slug=f"s{i}", write_key=f"wk_{i}") for i in range(10)]
    for i in range(60):
        make_event(others[i % 10])

    with django_assert_max_num_queries(len(few)):
        response = admin_client.get(EVENTS)

    assert len(response.context["cl"].result_list) == 50


def test_the_event_list_never_counts_the_whole_table_when_filtered(admin_client, source):
    make_event(source)

    with CaptureQueriesContext(connection) as queries:
        admin_client.get(EVENTS, {"status__exact": "accepted"})

    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"] and "deliveries_event" in q["sql"]]
    assert counts
    assert all("WHERE" in sql for sql in counts)


def test_an_event_page_shows_the_payload_as_json_and_the_reject_reason(admin_client, source):
    event = make_event(
        source,
        status=Event.Status.REJECTED,
        reject_reason="missing_event: track calls need an event name",
        payload={"type": "track", "userId": "user-1", "properties": {"plan": "pro"}},
    )

    response = admin_client.get(reverse("admin:deliveries_event_change", args=[event.pk]))
    html = response.content.decode()

    assert response.status_code == 200
    assert "missing_event: track calls need an event name" in html
    assert '<pre class="payload">{\n  &quot;type&quot;: &quot;track&quot;,' in html
    assert "  &quot;properties&quot;: {\n    &quot;plan&quot;: &quot;pro&quot;\n  }" in html
    assert 'name="_save"' not in html  # nothing to save


def test_an_accepted_event_page_has_no_reject_reason(admin_client, source):
    event = make_event(source)

    html = admin_client.get(reverse("admin:deliveries_event_change", args=[event.pk])).content.decode()

    assert "Reject reason" not in html


def test_events_cannot_be_added_edited_or_deleted(admin_client, source):
    event = make_event(source, event="Order Completed")
    change = reverse("admin:deliveries_event_change", args=[event.pk])

    assert admin_client.get(reverse("admin:deliveries_event_add")).status_code == 403
    assert admin_client.post(change, {"event": "Tampered", "user_id": "x"}).status_code == 403
    assert admin_client.get(reverse("admin:deliveries_event_delete", args=[event.pk])).status_code == 403
    html = admin_client.get(EVENTS).content.decode()
    assert reverse("admin:deliveries_event_add") not in html
    assert 'name="action"' not in html
    event.refresh_from_db()
    assert event.event == "Order Completed"


def test_the_admin_is_titled_cdphub(admin_client):
    html = admin_client.get(reverse("admin:index")).content.decode()

    assert "<title>Customer data hub | cdphub</title>" in html
    assert '<a href="/admin/">cdphub</a>' in html

"""The Debugger: the list and its filters, each kind of search, the live feed, an event's trace, permissions."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import orjson
import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from deliveries.models import Attempt, Event
from deliveries.pages.debugger import query
from integrations.models import Destination, Source
from tests.factories import make_delivery, make_event

pytestmark = pytest.mark.django_db

LIST = "admin:deliveries_event_debugger"
FEED = "admin:deliveries_event_debugger_feed"
DETAIL = "admin:deliveries_event_debugger_detail"


def ids_shown(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr class="event-row[^"]*" data-id="(\d+)"', html)]


def shown(client: Any, **params: Any) -> list[int]:
    response = client.get(reverse(LIST), params)
    assert response.status_code == 200
    return ids_shown(response.content.decode())


def rejected(source: Source, reason: str = "type: required", **fields: Any) -> Event:
    event = make_event(source, **fields)
    Event.objects.filter(pk=event.pk).update(status=Event.Status.REJECTED, reject_reason=reason)
    event.refresh_from_db()
    return event


# The list -------------------------------------------------------------------------------------------


def test_it_lists_events_newest_first_with_their_delivery_summary(admin_client, source, destination):
    other = Destination.objects.create(name="CRM", slug="crm", vendor="webhook", config={"url": "https://c.example"})
    old = make_event(source, received_at=timezone.now() - timedelta(minutes=5), event="Signed Up")
    new = make_event(source, event="Order Completed", user_id="user-42")
    make_delivery(destination, new, status="delivered")
    make_delivery(other, new, status="failed", error_code="http_500", error_message="HTTP 500")

    response = admin_client.get(reverse(LIST))
    html = response.content.decode()

    assert ids_shown(html) == [new.pk, old.pk]
    row = re.search(rf'data-id="{new.pk}".*?</tr>', html, re.S).group(0)
    assert "Order Completed" in row
    assert "user-42" in row
    assert "1 delivered" in row
    assert "1 failed" in row
    assert "failed-badge" in row
    assert "Website" in row
    assert f'data-newest="{new.pk}"' in html


def test_a_rejected_event_shows_red_with_its_reason_as_tooltip(admin_client, source):
    event = rejected(source, reason="userId or anonymousId is required")

    html = admin_client.get(reverse(LIST)).content.decode()

    row = re.search(rf'data-id="{event.pk}".*?</tr>', html, re.S).group(0)
    assert '<span class="rejected" title="userId or anonymousId is required">Rejected</span>' in row


def test_it_pages_older_events_by_keyset(admin_client, source, monkeypatch):
    monkeypatch.setattr(query, "PAGE_SIZE", 3)
    events = [make_event(source, received_at=timezone.now() - timedelta(seconds=10 - i)) for i in range(7)]
    newest_first = [e.pk for e in reversed(events)]

    response = admin_client.get(reverse(LIST))
    html = response.content.decode()
    assert ids_shown(html) == newest_first[:3]
    older = re.search(r'href="\?before=(\d+)" class="older"', html).group(1)
    assert int(older) == newest_first[2]

    assert shown(admin_client, before=older) == newest_first[3:6]
    assert shown(admin_client, before=newest_first[5]) == newest_first[6:]


def test_it_filters_by_source(admin_client, source):
    app = Source.objects.create(name="App", slug="app", write_key="wk_app")
    web = make_event(source)
    mobile = make_event(app)

    assert shown(admin_client, source=app.pk) == [mobile.pk]
    assert shown(admin_client, source=source.pk) == [web.pk]


def test_it_filters_by_type_and_event_name(admin_client, source):
    signed_up = make_event(source, event="Signed Up")
    ordered = make_event(source, event="Order Completed")
    identify = make_event(source, event="")
    Event.objects.filter(pk=identify.pk).update(type="identify")

    assert shown(admin_client, type="identify") == [identify.pk]
    assert shown(admin_client, type="track") == [ordered.pk, signed_up.pk]
    assert shown(admin_client, event="Order Completed") == [ordered.pk]


def test_it_filters_by_status_and_hides_test_sends_unless_asked(admin_client, source, destination):
    accepted = make_event(source)
    refused = rejected(source)
    failing = make_event(source)
    make_delivery(destination, failing, status="failed", error_code="http_500", error_message="HTTP 500")
    test = make_event(source)
    Event.objects.filter(pk=test.pk).update(status=Event.Status.TEST)

    assert shown(admin_client) == [failing.pk, refused.pk, accepted.pk]
    assert shown(admin_client, status="accepted") == [failing.pk, accepted.pk]
    assert shown(admin_client, status="rejected") == [refused.pk]
    assert shown(admin_client, status="failed") == [failing.pk]
    assert shown(admin_client, status="test") == [test.pk]


def test_the_rejected_filter_pages_by_received_time(admin_client, source, monkeypatch):
    monkeypatch.setattr(query, "PAGE_SIZE", 2)
    now = timezone.now()
    # Ids out of time order: a batch's events may carry any receivedAt order; the page follows time.
    late = rejected(source, received_at=now)
    early = rejected(source, received_at=now - timedelta(minutes=2))
    middle = rejected(source, received_at=now - timedelta(minutes=1))

    assert shown(admin_client, status="rejected") == [late.pk, middle.pk]
    assert shown(admin_client, status="rejected", before=middle.pk) == [early.pk]


# Search ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "term", "kind"),
    [
        ("user_id", "user-777", "user-777", "user id"),
        ("anonymous_id", "anon-abc", "anon-abc", "anonymous id"),
        ("message_id", "msg-123", "msg-123", "message id"),
        ("email", "ada@example.com", "Ada@Example.com", "email"),
    ],
)
def test_the_search_finds_an_exact_identifier(admin_client, source, field, value, term, kind):
    wanted = make_event(source, **{field: value})
    make_event(source)

    response = admin_client.get(reverse(LIST), {"q": term})
    html = response.content.decode()

    assert ids_shown(html) == [wanted.pk]
    assert f"Events whose {kind} is" in html


def test_the_search_falls_back_to_free_text_in_the_payload(admin_client, source):
    wanted = make_event(source, event="Coupon Applied")
    Event.objects.filter(pk=wanted.pk).update(payload={"type": "track", "properties": {"coupon": "SPRING-SALE-25"}})
    make_event(source)

    response = admin_client.get(reverse(LIST), {"q": "spring-sale"})
    html = response.content.decode()

    assert ids_shown(html) == [wanted.pk]
    assert "free-text search of payloads" in html
    assert "newest 20,000 events" in html


def test_free_text_looks_only_at_the_newest_events_and_offers_to_search_older(admin_client, source, monkeypatch):
    monkeypatch.setattr(query, "SCAN_BOUND", 3)
    old = make_event(source, received_at=timezone.now() - timedelta(minutes=10))
    Event.objects.filter(pk=old.pk).update(payload={"note": "needle"})
    recent = [make_event(source) for _ in range(3)]

    response = admin_client.get(reverse(LIST), {"q": "needle"})
    html = response.content.decode()
    assert ids_shown(html) == []
    older = re.search(r'href="\?q=needle&amp;before=(\d+)" class="older"', html).group(1)
    assert int(older) == recent[0].pk
    assert "The search looked as far back as" in html

    assert shown(admin_client, q="needle", before=older) == [old.pk]


def test_the_failed_filter_is_bounded_too(admin_client, source, destination, monkeypatch):
    monkeypatch.setattr(query, "SCAN_BOUND", 2)
    failing = make_event(source, received_at=timezone.now() - timedelta(minutes=10))
    make_delivery(destination, failing, status="failed")
    newer = [make_event(source) for _ in range(2)]

    html = admin_client.get(reverse(LIST), {"status": "failed"}).content.decode()
    assert ids_shown(html) == []
    assert shown(admin_client, status="failed", before=newer[0].pk) == [failing.pk]


# The live feed --------------------------------------------------------------------------------------


def test_the_feed_returns_only_events_newer_than_the_newest_shown(admin_client, source, destination):
    seen = make_event(source)
    fresh = make_event(source, event="Order Completed")
    make_delivery(destination, fresh, status="delivered")

    data = admin_client.get(reverse(FEED), {"after": seen.pk}).json()

    assert data["count"] == 1
    assert data["newest"] == fresh.pk
    assert ids_shown(data["html"]) == [fresh.pk]
    assert "1 delivered" in data["html"]
    assert admin_client.get(reverse(FEED), {"after": fresh.pk}).json()["count"] == 0


def test_the_feed_applies_the_filters_and_search(admin_client, source):
    first = make_event(source)
    make_event(source, user_id="someone-else")
    wanted = make_event(source, user_id="user-9")
    rejected(source, user_id="user-9")

    data = admin_client.get(reverse(FEED), {"after": first.pk, "q": "user-9", "status": "accepted"}).json()

    assert ids_shown(data["html"]) == [wanted.pk]


# An event's trace -----------------------------------------------------------------------------------


def test_the_detail_shows_the_payload_pretty_and_raw(admin_client, source):
    event = make_event(source, event="Order Completed")

    html = admin_client.get(reverse(DETAIL, args=[event.pk])).content.decode()

    assert "Order Completed" in html
    assert event.message_id in html
    assert '<details class="json-node" open>' in html
    assert '<span class="json-key">&quot;plan&quot;</span>: <span class="json-string">&quot;pro&quot;</span>' in html
    raw = re.search(r'<pre class="raw-json">(.*?)</pre>', html, re.S).group(1)
    assert orjson.loads(raw.replace("&quot;", '"')) == event.payload


def test_the_detail_shows_the_rejection_reason(admin_client, source):
    event = rejected(source, reason="type: must be one of identify, track, page")

    html = admin_client.get(reverse(DETAIL, args=[event.pk])).content.decode()

    assert '<p class="errornote reject-reason"><b>Rejected:</b> type: must be one of identify, track, page</p>' in html


def test_the_detail_traces_each_delivery_with_its_attempts_and_exchanges(admin_client, source, destination):
    crm = Destination.objects.create(name="CRM", slug="crm", vendor="webhook", config={"url": "https://c.example"})
    event = make_event(source)
    delivery = make_delivery(
        destination, event, status="delivered", attempts=2, delivered_at=timezone.now(), latency_ms=1200
    )
    exchange = {
        "request": {"method": "POST", "url": "https://hooks.example.com/in", "headers": {}, "body": '{"a": 1}'},
        "response": {"status": 503, "headers": {}, "body": "Down for maintenance"},
        "error": None,
        "duration_ms": 40,
    }
    Attempt.objects.create(
        delivery=delivery,
        number=1,
        started_at=timezone.now(),
        outcome="retry",
        status_code=503,
        error_code="http_503",
        error_message="HTTP 503",
        exchanges=[exchange],
    )
    Attempt.objects.create(
        delivery=delivery,
        number=2,
        started_at=timezone.now(),
        outcome="delivered",
        status_code=200,
        exchanges=[{**exchange, "response": {"status": 200, "headers": {}, "body": "ok"}}],
    )
    make_delivery(crm, event, status="filtered", error_code="filtered_type", error_message="Only identify events pass")

    html = admin_client.get(reverse(DETAIL, args=[event.pk])).content.decode()

    assert "2 destinations, 1 delivered" in html
    assert html.index("Attempt 2") < html.index("Attempt 1")  # newest first
    assert "HTTP 503" in html
    assert "Down for maintenance" in html
    assert "POST</span> https://hooks.example.com/in" in html
    assert "<b>Filtered:</b>" in html
    assert "Only identify events pass" in html
    assert reverse("admin:deliveries_delivery_change", args=[delivery.pk]) in html
    assert reverse("admin:integrations_destination_change", args=[crm.pk]) in html


def test_the_side_panel_gets_the_trace_without_the_admin_page_around_it(admin_client, source):
    event = make_event(source)

    html = admin_client.get(reverse(DETAIL, args=[event.pk]), {"panel": "1"}).content.decode()

    assert html.lstrip().startswith('<div class="event-detail"')
    assert "Open as a page" in html


def test_the_buttons_follow_the_permissions(client, django_user_model, source):
    event = make_event(source)
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_event"))
    client.force_login(user)

    html = client.get(reverse(DETAIL, args=[event.pk])).content.decode()
    assert "Send to Event Tester" not in html
    assert ">Replay<" not in html

    user.user_permissions.add(
        Permission.objects.get(codename="add_replay"), Permission.objects.get(codename="use_event_tester")
    )
    user = django_user_model.objects.get(pk=user.pk)  # a fresh permission cache
    client.force_login(user)
    html = client.get(reverse(DETAIL, args=[event.pk])).content.decode()
    replay = reverse("admin:deliveries_replay_add") + f"?events={event.pk}"
    assert f'<a href="{replay}">Replay</a>' in html
    tester = reverse("admin:deliveries_event_tester") + f"?event={event.pk}"
    assert f'<a href="{tester}">Send to Event Tester</a>' in html


def test_send_to_event_tester_picks_the_destination_that_failed(admin_client, source, destination):
    other = Destination.objects.create(
        name="Other", slug="other", vendor="webhook", config={"url": "https://o.example"}
    )
    event = make_event(source)
    make_delivery(other, event, status="delivered")
    make_delivery(destination, event, status="failed")

    html = admin_client.get(reverse(DETAIL, args=[event.pk])).content.decode()
    tester = reverse("admin:deliveries_event_tester") + f"?event={event.pk}&amp;destination={destination.pk}"
    assert f'<a href="{tester}">Send to Event Tester</a>' in html


# Permissions ----------------------------------------------------------------------------------------


def test_a_staff_user_without_view_event_gets_403(client, django_user_model, source):
    event = make_event(source)
    client.force_login(django_user_model.objects.create_user("staff", password="pw", is_staff=True))

    assert client.get(reverse(LIST)).status_code == 403
    assert client.get(reverse(FEED)).status_code == 403
    assert client.get(reverse(DETAIL, args=[event.pk])).status_code == 403


def test_a_marketer_uses_the_debugger_and_sees_no_write_key(marketer_client, source, destination):
    event = make_event(source)
    make_delivery(destination, event, status="delivered")

    page = marketer_client.get(reverse(LIST))
    detail = marketer_client.get(reverse(DETAIL, args=[event.pk]))

    assert page.status_code == 200
    assert ids_shown(page.content.decode()) == [event.pk]
    assert "Replay selected" in page.content.decode()
    assert detail.status_code == 200
    assert f"?events={event.pk}" in detail.content.decode()
    assert marketer_client.get(reverse(FEED), {"after": 0}).status_code == 200
    for response in (page, detail):
        assert source.write_key not in response.content.decode()


def test_the_event_list_links_to_the_debugger(admin_client, source):
    html = admin_client.get(reverse("admin:deliveries_event_changelist")).content.decode()

    assert f'<a href="{reverse(LIST)}">Debugger</a>' in html

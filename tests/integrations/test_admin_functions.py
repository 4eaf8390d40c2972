"""The function admin: the list and what runs each function, the change page (code editor, settings rows, a
syntax error marked on its line), versions with diffs and a confirmed roll back, Run test (fetch recorded and
never sent unless asked, secrets never echoed), and what a Marketer may do there."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import responses
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.test import Client
from django.urls import reverse

from integrations.models import Destination, Function, Source
from tests.factories import make_event

pytestmark = pytest.mark.django_db

FUNCTIONS = reverse("admin:integrations_function_changelist")
ADD = reverse("admin:integrations_function_add")
RUN = reverse("admin:integrations_function_run_test")
EVENTS = reverse("admin:integrations_function_test_events")
API_KEY = "sk-run-test-secret-81c4f2"
CODE = """async function onTrack(event, settings) {
  console.log("order", event.properties.order_id);
  console.warn("key", settings.apiKey);
  const response = await fetch("https://api.example.com/orders", {
    method: "POST",
    headers: { Authorization: "Bearer " + settings.apiKey },
    body: JSON.stringify({ id: event.properties.order_id, region: settings.region }),
  });
  return { status: response.status, key: settings.apiKey };
}
async function onIdentify(event) {
  throw new RetryError("the CRM is down");
}
"""
DECLARED = [
    {"name": "region", "type": "string", "required": True},
    {"name": "apiKey", "label": "API key", "type": "string", "sensitive": True},
]
EVENT = {"type": "track", "event": "Order Completed", "userId": "user-1", "properties": {"order_id": "A-1"}}


def make_function(slug: str = "order-hook", kind: str = "destination", code: str = CODE, **fields: Any) -> Function:
    function = Function(name=slug.replace("-", " ").title(), slug=slug, kind=kind, code=code, **fields)
    function.settings = fields.get("settings", DECLARED if kind == "destination" else [])
    function.save()
    return function


def change_url(function: Function) -> str:
    return reverse("admin:integrations_function_change", args=[function.pk])


def form_data(**changes: Any) -> dict[str, Any]:
    """What the browser posts for the function form: the code and one row per declared setting."""
    data = {"name": "Order hook", "slug": "order-hook", "kind": "destination", "description": "", "code": CODE}
    for index, item in enumerate(DECLARED):
        data[f"settings-{index}-name"] = item["name"]
        data[f"settings-{index}-label"] = item.get("label", "")
        data[f"settings-{index}-type"] = item["type"]
        data[f"settings-{index}-description"] = ""
        for flag in ("required", "sensitive"):
            if item.get(flag):
                data[f"settings-{index}-{flag}"] = "on"
    return {**data, **changes}


def run(client: Client, **fields: Any) -> Any:
    data = {
        "code": CODE,
        "kind": "destination",
        "declaration": json.dumps(DECLARED),
        "event": json.dumps(EVENT),
        "setting.region": "eu",
        "secret.apiKey": API_KEY,
        "fetch": "record",
        **fields,
    }
    return client.post(RUN, data)


# The list


def test_the_list_shows_each_function_s_kind_version_and_what_runs_it(admin_client, source):
    hook = make_function()
    make_function("tidy", kind="insert", code="function onTrack(e) { return e; }")
    Destination.objects.create(
        name="Orders", slug="orders", vendor="function", config={"function": "order-hook", "settings": {"region": "eu"}}
    )
    Destination.objects.create(
        name="Other", slug="other", vendor="webhook", config={"url": "https://x.example.com"}, insert_function=None
    )
    hook.code += "\n// v2\n"
    hook.save()

    page = admin_client.get(FUNCTIONS).content.decode()

    row = next(r for r in re.findall(r"<tr>.*?</tr>", page, re.S) if "Order Hook" in r)
    assert "Destination function" in row
    assert ">v2<" in row
    assert "1 destination" in row
    assert "nothing yet" in next(r for r in re.findall(r"<tr>.*?</tr>", page, re.S) if "Tidy" in r)


def test_the_list_is_searched_by_name_and_filtered_by_kind(admin_client):
    make_function()
    make_function("tidy", kind="insert", code="function onTrack(e) { return e; }")

    assert "Tidy" not in admin_client.get(FUNCTIONS + "?q=order").content.decode()
    filtered = admin_client.get(FUNCTIONS + "?kind__exact=insert").content.decode()
    assert "Tidy" in filtered
    assert "Order Hook" not in filtered


# The change page and saving


def test_the_change_page_puts_the_code_in_the_editor_and_each_setting_in_a_row(admin_client):
    function = make_function()

    page = admin_client.get(change_url(function)).content.decode()

    assert re.search(r'<textarea name="code"[^>]*data-code-editor="javascript"', page)
    assert 'name="settings-1-name" value="apiKey"' in page
    assert re.search(r'name="settings-1-sensitive" aria-label="Sensitive" checked', page)
    assert reverse("admin:integrations_function_versions", args=[function.pk]) in page
    assert 'id="run-test"' in page
    assert "integrations/editor/editor.js" in page
    assert "cdn" not in page.lower()


def test_a_save_with_a_syntax_error_says_where_and_marks_the_line_in_the_editor(admin_client):
    broken = "async function onTrack(event) {\n  const total = ;\n}\n"

    response = admin_client.post(ADD, form_data(code=broken))

    assert response.status_code == 200
    page = response.content.decode()
    assert "line 2, column 17: SyntaxError: Unexpected token &#x27;;&#x27;" in page
    assert 'data-error-line="2"' in page
    assert 'data-error-column="17"' in page
    assert not Function.objects.exists()


def test_a_save_keeps_a_version_with_who_saved_it_and_why_and_logs_it(admin_client, admin_user):
    response = admin_client.post(ADD, form_data(note="first cut"))
    assert response.status_code == 302
    function = Function.objects.get()
    assert function.settings == DECLARED
    admin_client.post(change_url(function), form_data(code=CODE.replace('("order"', '("order id"'), note="clearer log"))

    versions = list(function.versions.order_by("number").values_list("number", "created_by", "note"))
    assert versions == [(1, admin_user.pk, "first cut"), (2, admin_user.pk, "clearer log")]
    assert list(LogEntry.objects.order_by("pk").values_list("action_flag", flat=True)) == [ADDITION, CHANGE]


def test_saving_the_same_code_and_settings_makes_no_new_version(admin_client):
    function = make_function(settings=[{"name": "region", "type": "string", "required": True, "sensitive": False}])
    data = form_data()
    for key in [k for k in data if k.startswith("settings-1-")]:
        del data[key]

    admin_client.post(change_url(function), {**data, "code": CODE.replace("\n", "\r\n")})  # as a browser posts it

    function.refresh_from_db()
    assert function.version == 1
    assert function.code == CODE


# Versions, diffs, roll back


def test_the_versions_page_lists_each_version_and_one_version_diffs_against_the_current(admin_client):
    function = make_function()
    function.code = CODE.replace("console.log", "console.info")
    function.save(note="info, not log")

    listing = admin_client.get(reverse("admin:integrations_function_versions", args=[function.pk])).content.decode()
    assert "info, not log" in listing
    assert "v2</a> <span" in listing  # the current one is marked

    page = admin_client.get(reverse("admin:integrations_function_version", args=[function.pk, 1])).content.decode()
    diff = re.search(r'<div class="code-diff" id="code-diff" data-code-diff="javascript" ([^>]*)>', page).group(1)
    assert "console.log" in re.search(r'data-original="([^"]*)"', diff).group(1)
    assert "console.info" in re.search(r'data-modified="([^"]*)"', diff).group(1)
    assert reverse("admin:integrations_function_roll_back", args=[function.pk, 1]) in page


def test_roll_back_asks_first_then_makes_the_old_code_current_as_a_new_version_and_logs_it(admin_client, admin_user):
    function = make_function()
    function.code = CODE.replace("console.log", "console.info")
    function.save()
    url = reverse("admin:integrations_function_roll_back", args=[function.pk, 1])

    confirm = admin_client.get(url)
    assert confirm.status_code == 200
    assert "Yes, roll back to version 1" in confirm.content.decode()
    function.refresh_from_db()
    assert function.version == 2  # asking changes nothing

    response = admin_client.post(url)

    assert response.status_code == 302
    function.refresh_from_db()
    assert (function.version, function.code) == (3, CODE)
    assert function.versions.get(number=3).created_by == admin_user
    entry = LogEntry.objects.get()
    assert entry.action_flag == CHANGE
    assert entry.get_change_message() == "Rolled back to version 1 (saved as version 3)."


def test_roll_back_needs_the_csrf_token(admin_user):
    function = make_function()
    function.code += "\n"
    function.save()
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)

    response = client.post(reverse("admin:integrations_function_roll_back", args=[function.pk, 1]))

    assert response.status_code == 403
    function.refresh_from_db()
    assert function.version == 2


# Run test


def test_run_test_records_fetch_without_sending_and_shows_the_console_and_the_exchange(admin_client):
    with responses.RequestsMock() as mock:  # any HTTP call would fail the test
        response = run(admin_client)
        assert len(mock.calls) == 0

    data = response.json()
    assert data["outcome"] == "returned"
    assert data["sent"] is False
    assert [line["level"] for line in data["logs"]] == ["log", "warn"]
    assert data["logs"][0]["message"] == "order A-1"
    (exchange,) = data["exchanges"]
    assert exchange["request"]["url"] == "https://api.example.com/orders"
    assert json.loads(exchange["request"]["body"]) == {"id": "A-1", "region": "eu"}
    assert "not sent" in exchange["note"]
    html = data["html"]
    assert 'class="log log-warn"' in html
    assert "POST</span> https://api.example.com/orders" in html


def test_run_test_never_sends_a_secret_back(admin_client):
    response = run(admin_client)

    text = response.content.decode()
    assert API_KEY not in text
    data = response.json()
    assert data["value"]["key"] == "[REDACTED]"
    assert data["logs"][1]["message"] == "key [REDACTED]"
    assert data["exchanges"][0]["request"]["headers"]["authorization"] == "[REDACTED]"


def test_run_test_runs_the_unsaved_code_and_marks_the_line_an_error_was_thrown_on(admin_client):
    make_function()  # saved with CODE; the editor's text is what runs

    data = run(admin_client, event=json.dumps({"type": "identify", "userId": "user-1"})).json()

    assert data["outcome"] == "would be retried"
    assert data["error"]["name"] == "RetryError"
    assert data["marker"]["line"] == 12
    assert "RetryError" in data["html"]


def test_run_test_sends_for_real_when_someone_who_may_change_functions_asks(admin_client):
    with responses.RequestsMock() as mock:
        mock.post("https://api.example.com/orders", json={"ok": True}, status=201)
        data = run(admin_client, fetch="send").json()
        assert len(mock.calls) == 1
        assert mock.calls[0].request.headers["Authorization"] == f"Bearer {API_KEY}"

    assert data["sent"] is True
    assert data["value"]["status"] == 201


def test_run_test_refuses_an_event_that_is_not_json(admin_client):
    response = run(admin_client, event='{"type": "track",')

    assert response.status_code == 400
    assert response.json()["errors"] == [
        "The event is not valid JSON: Expecting property name enclosed in double quotes (line 1, column 18)."
    ]


def test_run_test_of_a_source_function_shows_the_events_it_emits(admin_client):
    code = """async function onRequest(request, settings) {
  const body = request.json();
  Segment.identify({ userId: body.id, traits: { email: body.email, via: request.headers.get("x-tool") } });
}"""

    data = run(
        admin_client,
        code=code,
        kind="source",
        declaration="[]",
        body=json.dumps({"id": "user-9", "email": "ada@example.com"}),
        headers="X-Tool: crm",
    ).json()

    assert data["handler"] == "onRequest"
    (event,) = data["emitted"]
    assert event["userId"] == "user-9"
    assert event["traits"] == {"email": "ada@example.com", "via": "crm"}
    assert "Events emitted (1)" in data["html"]


def test_the_event_picker_lists_recent_accepted_events_and_searches_them(admin_client, source):
    make_event(source, event="Order Completed", user_id="user-1")
    make_event(source, event="Signed Up", user_id="user-2")

    newest = admin_client.get(EVENTS).json()["events"]
    found = admin_client.get(EVENTS + "?q=order").json()["events"]

    assert [e["payload"]["event"] for e in newest] == ["Signed Up", "Order Completed"]
    assert [e["payload"]["userId"] for e in found] == ["user-1"]
    assert found[0]["label"].startswith("track Order Completed · user-1 · ")


# What a Marketer may do


def test_a_marketer_reads_a_function_and_its_versions_but_cannot_change_it(marketer_client):
    function = make_function()
    function.code += "\n"
    function.save()

    page = marketer_client.get(change_url(function)).content.decode()
    assert 'name="code"' not in page
    assert re.search(r'<textarea id="id_code" data-code-editor="javascript" data-readonly="1"', page)
    assert "apiKey" in page
    versions = reverse("admin:integrations_function_version", args=[function.pk, 1])
    assert "Roll back" not in marketer_client.get(versions).content.decode()
    roll_back = reverse("admin:integrations_function_roll_back", args=[function.pk, 1])
    assert marketer_client.post(roll_back).status_code == 403
    assert marketer_client.post(change_url(function), form_data(code="// gone")).status_code == 403
    function.refresh_from_db()
    assert function.version == 2


def test_a_marketer_runs_tests_with_fetch_recorded_and_may_not_send(marketer_client):
    with responses.RequestsMock() as mock:
        recorded = run(marketer_client)
        refused = run(marketer_client, fetch="send")
        assert len(mock.calls) == 0

    assert recorded.json()["outcome"] == "returned"
    assert refused.status_code == 403
    page = marketer_client.get(change_url(make_function())).content.decode()
    assert re.search(r'value="send" form="run-test-form" disabled', page)


def test_someone_who_may_not_see_events_gets_no_event_picker(client, django_user_model):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("fn", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_function"))
    client.force_login(user)

    assert client.get(EVENTS).status_code == 403
    assert 'data-events-url=""' in client.get(change_url(make_function())).content.decode()


def test_source_function_sources_are_counted_as_users(admin_client):
    make_function("stripe", kind="source", code="function onRequest(r) {}", settings=[])
    Source.objects.create(
        name="Stripe", slug="stripe", kind="function", write_key="wk_fn_stripe_1", config={"function": "stripe"}
    )

    row = next(
        r for r in re.findall(r"<tr>.*?</tr>", admin_client.get(FUNCTIONS).content.decode(), re.S) if "Stripe" in r
    )
    assert "1 source" in row


def test_a_function_a_destination_runs_by_its_slug_is_neither_renamed_nor_deleted(admin_client):
    function = make_function()
    Destination.objects.create(name="Orders", slug="orders", vendor="function", config={"function": "order-hook"})

    renamed = admin_client.post(change_url(function), form_data(slug="order-hook-2"))
    delete = admin_client.get(reverse("admin:integrations_function_delete", args=[function.pk]))
    admin_client.post(reverse("admin:integrations_function_delete", args=[function.pk]), {"post": "yes"})

    assert renamed.context["adminform"].form.errors["slug"] == [
        "Cannot be changed: Orders run the function by its slug. Make a new function to use another slug."
    ]
    assert "Destination Orders runs Order Hook by its slug" in delete.content.decode()
    assert Function.objects.filter(slug="order-hook").exists()

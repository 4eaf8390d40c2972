"""/api/v1/functions: CRUD by slug, the kind filter and pages, Function.clean() as 400s (a syntax error with its line
and column), kept versions (list, read, roll back), Run test (fetch recorded and never sent unless asked, secrets
redacted), a function in use neither deleted nor renamed, and each caller's rights."""

from __future__ import annotations

import pytest
import responses
from django.contrib.auth.models import Group, Permission

from integrations.models import ApiToken, Destination, Function, FunctionVersion, Source
from tests.deliveries.api.conftest import client_with

pytestmark = pytest.mark.django_db

CRM_KEY = "crmApiKeyFunctionTest_5f2b8c1d"
CODE = """async function onTrack(event, settings) {
  console.log("sending " + event.event + " with " + settings.apiKey);
  const response = await fetch("https://crm.example.com/api/events", {
    method: "POST",
    headers: { Authorization: "Bearer " + settings.apiKey },
    body: JSON.stringify({ user: event.userId, name: event.event }),
  });
  return { status: response.status };
}
"""
DECLARATION = [
    {"name": "apiKey", "label": "API key", "type": "string", "required": True, "sensitive": True},
    {"name": "region", "type": "string"},
]
BODY = {"name": "CRM sync", "slug": "crm-sync", "code": CODE, "settings": DECLARATION}
EVENT = {"type": "track", "userId": "user-42", "event": "Order Completed"}
READ = ("list", "retrieve", "versions", "version", "test")


@pytest.fixture
def crm(admin_user) -> Function:
    function = Function(name="CRM sync", slug="crm-sync", code=CODE, settings=DECLARATION)
    function.save(user=admin_user, note="first")
    return function


def marketer_may(codename: str) -> bool:
    return Group.objects.get(name="Marketer").permissions.filter(codename=codename).exists()


def test_each_caller_gets_what_its_rights_allow(caller, crm) -> None:
    """A Marketer's rights are the Marketer group's, whatever they are: reading needs view_function, the rest
    add/change/delete_function."""
    who, client = caller
    url = "/api/v1/functions/crm-sync"
    calls = {
        "list": lambda: client.get("/api/v1/functions"),
        "retrieve": lambda: client.get(url),
        "versions": lambda: client.get(f"{url}/versions"),
        "version": lambda: client.get(f"{url}/versions/1"),
        "test": lambda: client.post(f"{url}/test", {"event": EVENT}, format="json"),
        "create": lambda: client.post("/api/v1/functions", {**BODY, "slug": "new"}, format="json"),
        "update": lambda: client.patch(url, {"description": "Changed"}, format="json"),
        "rollback": lambda: client.post(f"{url}/rollback", {"version": 1}, format="json"),
        "destroy": lambda: client.delete(url),
    }
    with responses.RequestsMock() as mock:  # Run test records each fetch: nothing is sent, whoever calls
        got = {action: call().status_code for action, call in calls.items()}
        assert len(mock.calls) == 0
    ok = {"list": 200, "retrieve": 200, "versions": 200, "version": 200, "test": 200}
    ok |= {"create": 201, "update": 200, "rollback": 200, "destroy": 204}
    needs = {action: "view_function" for action in READ}
    needs |= {"create": "add_function", "update": "change_function", "rollback": "change_function"}
    needs["destroy"] = "delete_function"
    if who == "admin":
        expected = ok
    elif who == "marketer":
        expected = {action: ok[action] if marketer_may(needs[action]) else 403 for action in calls}
    else:
        expected = dict.fromkeys(calls, 401)
    assert got == expected
    assert Function.objects.filter(slug="new").exists() == (expected["create"] == 201)


def test_a_user_who_may_only_view_functions_reads_and_tests_them_but_changes_nothing(django_user_model, crm) -> None:
    """The Marketer group given view_function (not change): reading and a recorded Run test, nothing more."""
    group = Group.objects.get(name="Marketer")
    group.permissions.add(Permission.objects.get(codename="view_function"))
    user = django_user_model.objects.create_user("mo", is_staff=True)
    user.groups.add(group)
    client = client_with(ApiToken.issue(user, "mo's script")[1])
    url = "/api/v1/functions/crm-sync"

    assert client.get(url).json()["code"] == CODE
    assert client.post(f"{url}/test", {"event": EVENT}, format="json").status_code == 200
    response = client.post(f"{url}/test", {"event": EVENT, "send": True}, format="json")
    assert response.status_code == 403
    assert "integrations.change_function" in response.json()["detail"]
    assert client.patch(url, {"code": CODE + "\n"}, format="json").status_code == 403
    assert client.post(f"{url}/rollback", {"version": 1}, format="json").status_code == 403
    assert client.delete(url).status_code == 403
    crm.refresh_from_db()
    assert (crm.code, crm.version) == (CODE, 1)


def test_an_administrator_creates_a_function_whose_first_version_is_kept(api, admin_user) -> None:
    response = api.post("/api/v1/functions", {**BODY, "note": "from the CRM's docs"}, format="json")

    assert response.status_code == 201, response.json()
    answer = response.json()
    assert {k: answer[k] for k in ("slug", "kind", "code", "settings", "version")} == {
        "slug": "crm-sync",
        "kind": "destination",
        "code": CODE,
        "settings": DECLARATION,
        "version": 1,
    }
    assert "note" not in answer
    version = FunctionVersion.objects.get()
    assert (version.number, version.code, version.created_by, version.note) == (
        1,
        CODE,
        admin_user,
        "from the CRM's docs",
    )


def test_a_new_version_is_kept_only_when_the_code_or_the_settings_change(api, crm) -> None:
    url = "/api/v1/functions/crm-sync"
    assert api.patch(url, {"description": "To the CRM", "name": "CRM"}, format="json").json()["version"] == 1
    assert api.patch(url, {"code": CODE.replace("sending", "posting")}, format="json").json()["version"] == 2
    settings = [*DECLARATION, {"name": "dryRun", "type": "boolean"}]
    assert api.patch(url, {"settings": settings, "note": "a dry run"}, format="json").json()["version"] == 3
    assert list(crm.versions.values_list("number", "note")) == [(3, "a dry run"), (2, ""), (1, "first")]


def test_a_syntax_error_is_a_400_with_its_line_and_column_and_nothing_is_saved(api) -> None:
    code = "async function onTrack(event, settings) {\n  const x = ;\n}\n"
    response = api.post("/api/v1/functions", {**BODY, "code": code}, format="json")
    assert response.status_code == 400
    assert response.json() == {"code": ["code: line 2, column 13: SyntaxError: Unexpected token ';'"]}
    assert not Function.objects.exists()


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"code": "function helper() {}"}, "code", "no handler: define at least one of onTrack"),
        ({"kind": "source"}, "code", "no handler: define at least one of onRequest"),
        ({"code": "import x from 'y';\nfunction onTrack() {}"}, "code", "import and export are not available"),
        ({"settings": {"apiKey": "string"}}, "settings", "settings: must be a list"),
        ({"settings": [{"name": "api key"}]}, "settings", "settings[0].name: must be a JavaScript identifier"),
        ({"settings": [{"name": "n", "type": "number", "sensitive": True}]}, "settings", "only a string setting"),
        ({"settings": [{"name": "a"}, {"name": "a"}]}, "settings", "settings[1].name: a is declared twice"),
        ({"settings": [{"name": "a", "secret": True}]}, "settings", "settings[0].secret: unknown key"),
        ({"kind": "lambda"}, "kind", '"lambda" is not a function kind: use one of destination, source, insert.'),
        ({"version": 7}, "version", "Read-only: leave it out."),
        ({"slug": "not a slug"}, "slug", None),
        ({"code": 42}, "code", "Must be a string."),
        ({"runtime": "node"}, "runtime", "Unknown field: use code, description, kind, name, note, settings, slug."),
    ],
)
def test_a_bad_function_is_a_400_under_its_field(api, change, field, message) -> None:
    response = api.post("/api/v1/functions", {**BODY, **change}, format="json")
    assert response.status_code == 400
    errors = response.json()
    assert list(errors) == [field], errors
    if message:
        assert message in " ".join(errors[field]), errors
    assert not Function.objects.exists()


def test_every_bad_item_of_a_declaration_is_listed(api) -> None:
    settings = [{"name": "1st"}, {"name": "ok", "type": "date"}, {"name": "flag", "required": "yes"}]
    errors = api.post("/api/v1/functions", {**BODY, "settings": settings}, format="json").json()
    assert len(errors["settings"]) == 3


def test_a_taken_slug_is_refused(api, crm) -> None:
    response = api.post("/api/v1/functions", BODY, format="json")
    assert response.status_code == 400
    assert response.json() == {"slug": ["Function with this Slug already exists."]}


def test_the_list_filters_by_kind_and_comes_in_pages_newest_first(api, crm) -> None:
    insert = "async function onTrack(event) { return event; }"
    for n in range(3):
        Function(name=f"Insert {n}", slug=f"insert-{n}", kind="insert", code=insert).save()

    first = api.get("/api/v1/functions?kind=insert&limit=2").json()
    assert [f["slug"] for f in first["results"]] == ["insert-2", "insert-1"]
    second = api.get(first["next"]).json()
    assert ([f["slug"] for f in second["results"]], second["next"]) == (["insert-0"], None)
    assert [f["slug"] for f in api.get("/api/v1/functions?kind=destination").json()["results"]] == ["crm-sync"]
    assert api.get("/api/v1/functions?kind=source").json()["results"] == []
    response = api.get("/api/v1/functions?kind=lambda")
    assert response.status_code == 400
    assert response.json() == {"kind": ["Use one of destination, source, insert."]}


def test_versions_are_listed_newest_first_and_read_one_by_one(api, crm, admin_user) -> None:
    crm.code = CODE.replace("sending", "posting")
    crm.save(note="say posting")

    listed = api.get("/api/v1/functions/crm-sync/versions").json()
    assert [(v["number"], v["created_by"], v["note"]) for v in listed["results"]] == [
        (2, None, "say posting"),
        (1, admin_user.username, "first"),
    ]
    assert "code" not in listed["results"][0]
    one = api.get(listed["results"][1]["url"]).json()
    assert (one["number"], one["code"], one["settings"]) == (1, CODE, DECLARATION)
    missing = api.get("/api/v1/functions/crm-sync/versions/9")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "There is no version 9: this function has versions 1 to 2."}


def test_a_rollback_makes_an_old_version_current_as_a_new_one(api, crm, admin_user) -> None:
    crm.code = CODE.replace("sending", "posting")
    crm.save()

    response = api.post("/api/v1/functions/crm-sync/rollback", {"version": 1}, format="json")
    assert response.status_code == 200, response.json()
    assert (response.json()["version"], response.json()["code"]) == (3, CODE)
    latest = crm.versions.first()
    assert (latest.number, latest.note, latest.created_by) == (3, "rolled back to version 1", admin_user)

    response = api.post("/api/v1/functions/crm-sync/rollback", {"version": 8}, format="json")
    assert response.status_code == 400
    assert response.json() == {"version": ["There is no version 8: this function has versions 1 to 3."]}
    assert api.post("/api/v1/functions/crm-sync/rollback", {}, format="json").status_code == 400


def test_a_rollback_to_code_the_functions_kind_cannot_run_is_refused(api, crm) -> None:
    source_code = "async function onRequest(request, settings) { Segment.track({userId: 'u', event: 'e'}); }"
    changed = api.patch("/api/v1/functions/crm-sync", {"kind": "source", "code": source_code}, format="json")
    assert changed.status_code == 200, changed.json()

    response = api.post("/api/v1/functions/crm-sync/rollback", {"version": 1}, format="json")
    assert response.status_code == 400
    assert "no handler: define at least one of onRequest" in response.json()["code"][0]
    crm.refresh_from_db()
    assert (crm.code, crm.version) == (source_code, 2)


def test_run_test_records_each_fetch_sends_nothing_and_redacts_the_secrets(api, crm) -> None:
    body = {"event": EVENT, "settings": {"region": "eu"}, "secrets": {"apiKey": CRM_KEY}}
    with responses.RequestsMock() as mock:
        response = api.post("/api/v1/functions/crm-sync/test", body, format="json")
        assert len(mock.calls) == 0

    assert response.status_code == 200, response.json()
    run = response.json()
    assert (run["handler"], run["outcome"], run["ok"], run["sent"]) == ("onTrack", "returned", True, False)
    assert run["value"] == {"status": 200}
    assert run["logs"] == [{"level": "log", "message": "sending Order Completed with [REDACTED]"}]
    [exchange] = run["exchanges"]
    assert exchange["request"]["url"] == "https://crm.example.com/api/events"
    assert exchange["request"]["headers"] == {"authorization": "[REDACTED]"}
    assert exchange["note"].startswith("not sent")
    assert CRM_KEY not in response.content.decode()


def test_run_test_sends_when_asked(api, crm) -> None:
    with responses.RequestsMock() as mock:
        mock.post("https://crm.example.com/api/events", status=202, json={"id": 1})
        response = api.post(
            "/api/v1/functions/crm-sync/test",
            {"event": EVENT, "secrets": {"apiKey": CRM_KEY}, "send": True},
            format="json",
        )
        assert mock.calls[0].request.headers["Authorization"] == f"Bearer {CRM_KEY}"
    run = response.json()
    assert (run["sent"], run["value"]) == (True, {"status": 202})
    assert CRM_KEY not in response.content.decode()


def test_run_test_tries_unsaved_code_and_says_what_an_error_would_do(api, crm) -> None:
    code = "async function onTrack(event) { throw new RetryError('the CRM is down'); }"
    run = api.post("/api/v1/functions/crm-sync/test", {"event": EVENT, "code": code}, format="json").json()
    assert (run["ok"], run["outcome"], run["error"]["name"]) == (False, "would be retried", "RetryError")
    broken = api.post("/api/v1/functions/crm-sync/test", {"event": EVENT, "code": "function {"}, format="json")
    assert broken.json()["error"]["code"] == "syntax_error"
    crm.refresh_from_db()
    assert crm.code == CODE


def test_a_source_function_is_tested_with_a_webhook_body(api) -> None:
    code = "async function onRequest(request) { const b = request.json(); Segment.identify({userId: b.id}); }"
    Function(name="Billing", slug="billing", kind="source", code=code).save()
    body = {"body": '{"id": "cus_42"}', "headers": {"content-type": "application/json"}}
    run = api.post("/api/v1/functions/billing/test", body, format="json").json()
    assert (run["handler"], run["ok"]) == ("onRequest", True)
    assert run["emitted"][0]["userId"] == "cus_42"


@pytest.mark.parametrize(
    ("slug", "body", "field"),
    [
        ("crm-sync", {}, "event"),
        ("crm-sync", {"body": "{}"}, "body"),
        ("crm-sync", {"event": EVENT, "headers": {"a": "b"}}, "headers"),
        ("crm-sync", {"event": "track"}, "event"),
        ("crm-sync", {"event": EVENT, "secrets": "key"}, "secrets"),
        ("billing", {"event": EVENT}, "event"),
    ],
)
def test_run_test_wants_an_event_or_a_webhook_as_the_kind_takes(api, crm, slug, body, field) -> None:
    Function(name="Billing", slug="billing", kind="source", code="function onRequest() {}").save()
    response = api.post(f"/api/v1/functions/{slug}/test", body, format="json")
    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_a_function_in_use_is_neither_deleted_nor_renamed(api, crm, destination) -> None:
    Destination.objects.create(
        name="CRM", slug="crm", vendor="function", config={"function": "crm-sync"}, credentials={"apiKey": CRM_KEY}
    )
    response = api.delete("/api/v1/functions/crm-sync")
    assert response.status_code == 409
    assert response.json()["detail"].startswith("The function is in use: destination crm.")
    response = api.patch("/api/v1/functions/crm-sync", {"slug": "crm-sync-2"}, format="json")
    assert response.status_code == 400
    assert "destination crm run the function by its slug" in response.json()["slug"][0]
    response = api.patch("/api/v1/functions/crm-sync", {"kind": "insert"}, format="json")
    assert response.json() == {
        "kind": ["kind: the function is in use as a destination function; make a new function instead"]
    }

    insert = Function(name="Drop", slug="drop", kind="insert", code="function onTrack(e) { return e; }")
    insert.save()
    Destination.objects.filter(pk=destination.pk).update(insert_function=insert)
    response = api.delete("/api/v1/functions/drop")
    assert response.status_code == 409
    assert "destination welcome-hook (as its insert function)" in response.json()["detail"]
    assert api.patch("/api/v1/functions/drop", {"slug": "drop-2"}, format="json").status_code == 200  # by key

    Destination.objects.all().delete()
    assert api.delete("/api/v1/functions/crm-sync").status_code == 204
    assert not FunctionVersion.objects.filter(function__slug="crm-sync").exists()


def test_a_source_running_the_function_keeps_it_too(api, crm) -> None:
    Source.objects.create(name="In", slug="in", kind="http", config={"function": "crm-sync"})
    Source.objects.filter(slug="in").update(kind="function")  # the source kind's own checks are not this test's
    response = api.delete("/api/v1/functions/crm-sync")
    assert response.status_code == 409
    assert "source in" in response.json()["detail"]

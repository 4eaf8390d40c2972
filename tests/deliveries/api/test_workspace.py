"""/api/v1/workspace: export (the command's JSON, no secret at all) and import (the command's upsert by slug, its
report, every problem of a bad file with nothing written), an administrator's to import."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth.models import Permission

from integrations.models import ApiToken, Destination, Function, FunctionVersion, Source
from integrations.workspace import export_workspace
from tests.deliveries.api.conftest import client_with

pytestmark = pytest.mark.django_db

SIGNING_SECRET = "whsec_workspaceApiSecret_3c2b1a"
CLIENT_SECRET = "workspaceApiClientSecret_8e7d6c"
FILE = {
    "sources": [
        {"slug": "website", "name": "Website", "kind": "http", "write_key": "wk_workspace_website_1"},
        {"slug": "cio", "name": "Customer.io", "kind": "customerio", "settings": {"signing_secret": SIGNING_SECRET}},
    ],
    "destinations": [
        {
            "slug": "welcome-journey",
            "name": "Welcome journey",
            "vendor": "sfmc_journey",
            "sources": ["website"],
            "config": {"subdomain": "mc-abc123", "event_definition_key": "APIEvent-welcome"},
            "credentials": {"client_id": "workspace-client", "client_secret": CLIENT_SECRET},
            "filter": {"types": ["identify"], "events": [], "condition": None},
            "mapping": {"ContactKey": "userId", "Data": {"email": "traits.email"}},
        }
    ],
}
SECRETS = (SIGNING_SECRET, CLIENT_SECRET, "wk_workspace_website_1")


def test_each_caller_gets_what_its_rights_allow(caller) -> None:
    who, client = caller
    exported = client.get("/api/v1/workspace").status_code
    imported = client.post("/api/v1/workspace", FILE, format="json").status_code
    expected = {"admin": (200, 200), "marketer": (200, 403), "anonymous": (401, 401), "revoked": (401, 401)}
    assert (exported, imported) == expected[who]
    assert Source.objects.exists() == (who == "admin")


def test_an_import_creates_then_changes_nothing_the_second_time(api, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    response = api.post("/api/v1/workspace", FILE, format="json")
    assert response.status_code == 200, response.json()
    assert response.json() == {
        "functions": {"created": [], "updated": [], "unchanged": []},
        "sources": {"created": ["website", "cio"], "updated": [], "unchanged": []},
        "destinations": {"created": ["welcome-journey"], "updated": [], "unchanged": []},
        "lines": ["created source website", "created source cio", "created destination welcome-journey"],
    }
    for secret in SECRETS:
        assert secret not in response.content.decode()
        assert secret not in caplog.text
    assert Source.objects.get(slug="cio").settings == {"signing_secret": SIGNING_SECRET}
    assert Destination.objects.get().credentials["client_secret"] == CLIENT_SECRET

    again = api.post("/api/v1/workspace", FILE, format="json").json()
    assert again["sources"] == {"created": [], "updated": [], "unchanged": ["website", "cio"]}
    assert again["destinations"] == {"created": [], "updated": [], "unchanged": ["welcome-journey"]}


def test_an_import_reports_the_fields_it_changed(api) -> None:
    api.post("/api/v1/workspace", FILE, format="json")
    changed = {**FILE, "destinations": [{"slug": "welcome-journey", "mapping": {"ContactKey": "anonymousId"}}]}
    answer = api.post("/api/v1/workspace", changed, format="json").json()
    assert answer["destinations"]["updated"] == [{"slug": "welcome-journey", "fields": ["mapping"]}]
    assert "updated destination welcome-journey (mapping)" in answer["lines"]


def test_a_bad_file_lists_every_problem_and_writes_nothing(api) -> None:
    bad = {
        "sources": [{"slug": "website", "kind": "carrier-pigeon"}, *FILE["sources"][1:]],
        "destinations": [
            {**FILE["destinations"][0], "config": {"subdomain": "mc-abc123"}},
            {"slug": "hook", "vendor": "webhook", "config": {"url": "https://example.com"}, "mapping": {"a": "b ||"}},
        ],
        "webhooks": [],
    }
    response = api.post("/api/v1/workspace", bad, format="json")
    assert response.status_code == 400
    answer = response.json()
    assert answer["detail"].startswith("Nothing was imported")
    problems = "\n".join(answer["problems"])
    for expected in (
        "unknown top-level keys: webhooks",
        "sources[0] (website).kind",
        "destinations[0] (welcome-journey).config.event_definition_key: required",
        "destinations[1] (hook).mapping.a:",
    ):
        assert expected in problems
    assert len(answer["problems"]) == 4
    assert not Source.objects.exists()
    assert not Destination.objects.exists()
    assert SIGNING_SECRET not in response.content.decode()


@pytest.mark.parametrize("body", [[], "sources", 12])
def test_a_body_that_is_not_a_workspace_object_is_a_400(api, body) -> None:
    response = api.post("/api/v1/workspace", body, format="json")
    assert response.status_code == 400
    assert response.json()["problems"]


def test_bad_json_is_a_400(api) -> None:
    response = api.post("/api/v1/workspace", b'{"sources": [', content_type="application/json")
    assert response.status_code == 400
    assert response.json()["problems"][0].startswith("JSON parse error")
    assert not Source.objects.exists()


def test_the_export_is_the_commands_without_write_keys(api, marketer_api) -> None:
    api.post("/api/v1/workspace", FILE, format="json")
    expected = export_workspace()
    assert expected["sources"][1]["write_key"] == "wk_workspace_website_1"  # the command's export has them
    for client in (api, marketer_api):
        response = client.get("/api/v1/workspace")
        assert response.status_code == 200
        exported = response.json()
        assert exported["destinations"] == expected["destinations"]
        assert exported["sources"] == [{k: v for k, v in s.items() if k != "write_key"} for s in expected["sources"]]
        for secret in SECRETS:
            assert secret not in response.content.decode()


def test_an_exported_workspace_imports_back_unchanged_keeping_its_secrets(api) -> None:
    api.post("/api/v1/workspace", FILE, format="json")
    exported = api.get("/api/v1/workspace").json()

    answer = api.post("/api/v1/workspace", exported, format="json").json()
    assert answer["sources"]["unchanged"] == ["cio", "website"]
    assert answer["destinations"]["unchanged"] == ["welcome-journey"]
    assert Source.objects.get(slug="website").write_key == "wk_workspace_website_1"
    assert Source.objects.get(slug="cio").settings == {"signing_secret": SIGNING_SECRET}
    assert Destination.objects.get().credentials["client_secret"] == CLIENT_SECRET


def test_importing_needs_the_credentials_permission_too(django_user_model) -> None:
    """Adding and changing sources and destinations is not enough: a workspace file carries secrets."""
    user = django_user_model.objects.create_user("sam", is_staff=True)
    codenames = [f"{verb}_{model}" for verb in ("view", "add", "change") for model in ("source", "destination")]
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = client_with(ApiToken.issue(user, "sam's script")[1])

    assert client.get("/api/v1/workspace").status_code == 200
    response = client.post("/api/v1/workspace", FILE, format="json")
    assert response.status_code == 403
    assert "needs an administrator" in response.json()["detail"]
    assert not Source.objects.exists()


ENRICH = {
    "slug": "enrich",
    "name": "Enrich",
    "kind": "insert",
    "code": "async function onIdentify(event, settings) {\n  return event;\n}\n",
    "settings": [{"name": "lookupToken", "type": "string", "sensitive": True}],
}
WITH_FUNCTIONS = {
    **FILE,
    "functions": [ENRICH],
    "destinations": [
        {**FILE["destinations"][0], "insert_function": "enrich", "insert_secrets": {"lookupToken": CLIENT_SECRET}}
    ],
}


def test_functions_are_exported_with_their_code_to_whoever_may_view_them(api, marketer_api, marketer) -> None:
    assert api.post("/api/v1/workspace", WITH_FUNCTIONS, format="json").status_code == 200
    exported = api.get("/api/v1/workspace").json()
    assert exported["functions"] == [{**ENRICH, "description": ""}]
    assert exported["destinations"][0]["insert_function"] == "enrich"
    answer = marketer_api.get("/api/v1/workspace")
    assert ("functions" in answer.json()) == marketer.has_perm("integrations.view_function")
    for response in (answer, api.get("/api/v1/workspace")):
        assert CLIENT_SECRET not in response.content.decode()
        assert "insert_secrets" not in response.content.decode()


def test_an_import_through_the_api_saves_function_versions_as_its_caller(api, admin_user) -> None:
    response = api.post("/api/v1/workspace", WITH_FUNCTIONS, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["functions"] == {"created": ["enrich"], "updated": [], "unchanged": []}
    assert response.json()["lines"][0] == "created function enrich"
    version = Function.objects.get(slug="enrich").versions.get()
    assert (version.created_by, version.note) == (admin_user, "imported from a workspace file")
    again = api.post("/api/v1/workspace", WITH_FUNCTIONS, format="json").json()
    assert again["functions"]["unchanged"] == ["enrich"]
    assert FunctionVersion.objects.count() == 1


def test_importing_functions_needs_the_rights_to_add_and_change_them(django_user_model) -> None:
    user = django_user_model.objects.create_user("sam", is_staff=True)
    codenames = [f"{verb}_{model}" for verb in ("view", "add", "change") for model in ("source", "destination")]
    user.user_permissions.add(*Permission.objects.filter(codename__in=[*codenames, "manage_credentials"]))
    client = client_with(ApiToken.issue(user, "sam's script")[1])

    response = client.post("/api/v1/workspace", WITH_FUNCTIONS, format="json")
    assert response.status_code == 403
    assert "add and change functions" in response.json()["detail"]
    assert not Function.objects.exists()
    assert not Source.objects.exists()
    assert client.post("/api/v1/workspace", FILE, format="json").status_code == 200  # no functions: as before

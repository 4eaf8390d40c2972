"""Workspace as code for functions: upserted by slug before the sources and destinations that name them, a version
kept only when code or settings change (the same file twice creates none), Function.clean()'s problems listed with
the rest and nothing written; destinations carry their insert function, its settings and its secrets; the export
holds function code and no setting value that is a secret."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from integrations.models import Destination, Function, FunctionVersion, Source
from integrations.workspace import WorkspaceError, export_workspace, import_workspace

pytestmark = pytest.mark.django_db

CRM_KEY = "crmWorkspaceKey_2f7a9c1e5b"
LOOKUP_TOKEN = "lookupWorkspaceToken_8d6b4f"
BILLING_TOKEN = "billingWorkspaceToken_3e5c7a"
SIGNING_SECRET = "whsec_workspaceFunctions_1b2c3d"
SECRETS = (CRM_KEY, LOOKUP_TOKEN, BILLING_TOKEN, SIGNING_SECRET)

CRM_CODE = (
    "async function onTrack(event, settings) {\n  await fetch('https://crm.example.com/' + settings.region);\n}\n"
)
ENRICH_CODE = "async function onIdentify(event, settings) {\n  return event;\n}\n"
BILLING_CODE = "async function onRequest(request, settings) {\n  Segment.track({userId: 'u', event: 'Paid'});\n}\n"
CRM = {
    "slug": "crm-sync",
    "name": "CRM sync",
    "kind": "destination",
    "description": "Track events to the CRM",
    "code": CRM_CODE,
    "settings": [
        {"name": "apiKey", "label": "API key", "type": "string", "required": True, "sensitive": True},
        {"name": "region", "type": "string", "required": True},
    ],
}
ENRICH = {
    "slug": "enrich",
    "name": "Enrich",
    "kind": "insert",
    "code": ENRICH_CODE,
    "settings": [{"name": "domains", "type": "array"}, {"name": "lookupToken", "type": "string", "sensitive": True}],
}
BILLING = {
    "slug": "billing-webhooks",
    "name": "Billing webhooks",
    "kind": "source",
    "code": BILLING_CODE,
    "settings": [{"name": "apiToken", "type": "string", "sensitive": True, "required": True}],
}
WORKSPACE = {
    "functions": [CRM, ENRICH, BILLING],
    "sources": [
        {"slug": "website", "name": "Website", "kind": "http", "write_key": "wk_ws_fn_website"},
        {
            "slug": "billing",
            "name": "Billing",
            "kind": "function",
            "write_key": "wk_ws_fn_billing",
            "config": {"function": "billing-webhooks", "signature_header": "X-Signature"},
            "settings": {"apiToken": BILLING_TOKEN, "signing_secret": SIGNING_SECRET},
        },
    ],
    "destinations": [
        {
            "slug": "crm",
            "name": "CRM",
            "vendor": "function",
            "sources": ["website", "billing"],
            "config": {"function": "crm-sync", "settings": {"region": "eu"}},
            "credentials": {"apiKey": CRM_KEY},
        },
        {
            "slug": "hook",
            "name": "Hook",
            "vendor": "webhook",
            "sources": ["website"],
            "config": {"url": "https://hooks.example.com/in"},
            "insert_function": "enrich",
            "insert_settings": {"domains": ["example.com"]},
            "insert_secrets": {"lookupToken": LOOKUP_TOKEN},
        },
    ],
}


def copy_of(data: Any) -> Any:
    return json.loads(json.dumps(data))


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "workspace.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def run_import(path: Path) -> list[str]:
    out = StringIO()
    call_command("import_workspace", str(path), stdout=out)
    return out.getvalue().splitlines()


def run_export() -> str:
    out = StringIO()
    call_command("export_workspace", stdout=out)
    return out.getvalue()


def problems_of(data: Any) -> list[str]:
    with pytest.raises(WorkspaceError) as raised:
        import_workspace(data)
    return raised.value.problems


def nothing_stored() -> bool:
    return not (Function.objects.exists() or Source.objects.exists() or Destination.objects.exists())


def test_functions_are_imported_before_the_sources_and_destinations_that_run_them(tmp_path: Path) -> None:
    assert run_import(write(tmp_path, WORKSPACE)) == [
        "created function crm-sync",
        "created function enrich",
        "created function billing-webhooks",
        "created source website",
        "created source billing",
        "created destination crm",
        "created destination hook",
    ]
    crm = Function.objects.get(slug="crm-sync")
    assert (crm.kind, crm.description, crm.code, crm.settings, crm.version) == (
        "destination",
        "Track events to the CRM",
        CRM_CODE,
        CRM["settings"],
        1,
    )
    version = crm.versions.get()
    assert (version.created_by, version.note) == (None, "imported from a workspace file")
    assert Source.objects.get(slug="billing").settings == {"apiToken": BILLING_TOKEN, "signing_secret": SIGNING_SECRET}
    assert Destination.objects.get(slug="crm").credentials == {"apiKey": CRM_KEY}
    hook = Destination.objects.get(slug="hook")
    assert (hook.insert_function.slug, hook.insert_settings, hook.insert_secrets) == (
        "enrich",
        {"domains": ["example.com"]},
        {"lookupToken": LOOKUP_TOKEN},
    )


def test_the_same_file_twice_creates_no_version_and_changes_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, WORKSPACE)
    run_import(path)
    stamps = {f.slug: f.updated_at for f in Function.objects.all()}

    assert run_import(path) == [
        "unchanged function crm-sync",
        "unchanged function enrich",
        "unchanged function billing-webhooks",
        "unchanged source website",
        "unchanged source billing",
        "unchanged destination crm",
        "unchanged destination hook",
    ]
    assert FunctionVersion.objects.count() == 3
    assert {f.slug: f.updated_at for f in Function.objects.all()} == stamps


def test_a_version_is_kept_when_the_code_or_the_settings_change_and_only_then(tmp_path: Path) -> None:
    run_import(write(tmp_path, WORKSPACE))
    changed = copy_of(WORKSPACE)
    changed["functions"][0]["code"] = CRM_CODE.replace("crm.example.com", "api.crm.example.com")
    changed["functions"][1]["description"] = "Adds the plan"
    lines = run_import(write(tmp_path, changed))
    assert lines[:3] == [
        "updated function crm-sync (code)",
        "updated function enrich (description)",
        "unchanged function billing-webhooks",
    ]
    assert list(Function.objects.get(slug="crm-sync").versions.values_list("number", flat=True)) == [2, 1]
    assert Function.objects.get(slug="enrich").version == 1


def test_the_export_holds_function_code_and_no_secret_and_reimports_unchanged(tmp_path: Path) -> None:
    run_import(write(tmp_path, WORKSPACE))
    exported = run_export()
    for secret in SECRETS:
        assert secret not in exported
    for key in ("credentials", "insert_secrets", "signing_secret"):
        assert key not in exported
    data = json.loads(exported)
    assert data["functions"] == [{"description": "", **f} for f in sorted(WORKSPACE["functions"], key=slug)]
    hook = next(d for d in data["destinations"] if d["slug"] == "hook")
    assert (hook["insert_function"], hook["insert_settings"]) == ("enrich", {"domains": ["example.com"]})
    crm = next(d for d in data["destinations"] if d["slug"] == "crm")
    assert "insert_function" not in crm  # a destination without one keeps the format it had

    lines = run_import(write(tmp_path, data))
    assert all(line.startswith("unchanged ") for line in lines), lines
    assert FunctionVersion.objects.count() == 3
    assert Destination.objects.get(slug="hook").insert_secrets == {"lookupToken": LOOKUP_TOKEN}
    assert Destination.objects.get(slug="crm").credentials == {"apiKey": CRM_KEY}


def slug(item: dict[str, Any]) -> str:
    return item["slug"]


def test_an_export_without_functions_still_says_so() -> None:
    assert export_workspace() == {"functions": [], "sources": [], "destinations": []}


def test_every_problem_of_the_functions_is_listed_with_the_rest_and_nothing_is_written() -> None:
    bad = copy_of(WORKSPACE)
    bad["functions"] = [
        {**CRM, "code": "async function onTrack(event, settings) {\n  const x = ;\n}\n"},
        {**ENRICH, "settings": [{"name": "lookup token", "sensitive": "yes"}], "runtime": "node"},
        {"slug": "new-one", "kind": 7},
        {**BILLING, "slug": "enrich"},
    ]
    problems = problems_of(bad)
    for expected in (
        "functions[0] (crm-sync).code: line 2, column 13: SyntaxError: Unexpected token ';'",
        "functions[1] (enrich): unknown keys runtime",
        "functions[1] (enrich).settings[0].name: must be a JavaScript identifier, e.g. apiKey",
        "functions[1] (enrich).settings[0].sensitive: must be true or false",
        "functions[2] (new-one).kind: must be a string",
        "functions[2] (new-one).code: This field cannot be blank.",
        "functions: slug used more than once: enrich",
        # The destinations name functions the file could not import: said too.
        "destinations[0] (crm).config.function: there is no destination function 'crm-sync'",
    ):
        assert expected in problems, problems
    assert nothing_stored()


def test_a_destinations_and_a_sources_settings_are_checked_against_the_files_functions() -> None:
    bad = copy_of(WORKSPACE)
    bad["destinations"][0]["credentials"] = {}
    bad["destinations"][1]["insert_settings"] = {"domains": "example.com"}
    bad["sources"][1]["settings"] = {"signing_secret": SIGNING_SECRET}
    problems = problems_of(bad)
    assert "destinations[0] (crm).credentials.apiKey: required" in problems
    assert "destinations[1] (hook).insert_settings.domains: must be a list" in problems
    assert any(p.startswith("sources[1] (billing).settings") and "apiToken: required" in p for p in problems)
    assert nothing_stored()  # the functions, written first for these checks, were undone with the rest


@pytest.mark.parametrize(
    ("insert", "message"),
    [
        ("nowhere", "destinations[1] (hook).insert_function: no function with slug 'nowhere'"),
        ("crm-sync", "destinations[1] (hook).insert_function: crm-sync is a destination function, not an insert"),
        (7, "destinations[1] (hook).insert_function: must be a slug or null"),
    ],
)
def test_an_insert_function_must_be_an_insert_functions_slug(insert: Any, message: str) -> None:
    bad = copy_of(WORKSPACE)
    bad["destinations"][1]["insert_function"] = insert
    problems = problems_of(bad)
    assert any(p.startswith(message) for p in problems), problems
    assert nothing_stored()


def test_no_insert_function_takes_its_settings_and_secrets_along(tmp_path: Path) -> None:
    run_import(write(tmp_path, WORKSPACE))
    without = copy_of(WORKSPACE)
    without["destinations"][1] = {"slug": "hook", "insert_function": None}
    lines = run_import(write(tmp_path, without))
    assert "updated destination hook (insert_function, insert_settings, insert_secrets)" in lines
    hook = Destination.objects.get(slug="hook")
    assert (hook.insert_function, hook.insert_settings, hook.insert_secrets) == (None, {}, {})
    for secret in SECRETS:
        assert secret not in "\n".join(lines)


def test_a_function_in_use_cannot_change_its_kind_through_a_file(tmp_path: Path) -> None:
    run_import(write(tmp_path, WORKSPACE))
    changed = copy_of(WORKSPACE)
    changed["functions"][0]["kind"] = "insert"
    problems = problems_of(changed)
    assert "functions[0] (crm-sync).kind: the function is in use as a destination function; make a new function " in (
        " ".join(problems)
    )
    assert Function.objects.get(slug="crm-sync").kind == "destination"


def test_the_command_prints_every_problem_and_no_secret(tmp_path: Path) -> None:
    bad = copy_of(WORKSPACE)
    bad["functions"][0]["code"] = "function onTrack( {"
    out = StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("import_workspace", str(write(tmp_path, bad)), stdout=out)
    message = str(raised.value)
    assert message.startswith("Nothing was imported:")
    assert "functions[0] (crm-sync).code: line 3, column 1: SyntaxError: Unexpected end of input" in message
    for secret in SECRETS:
        assert secret not in message + out.getvalue()
    assert nothing_stored()

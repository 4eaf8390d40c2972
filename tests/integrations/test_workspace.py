"""Workspace as code: import_workspace is idempotent and all-or-nothing; export_workspace re-imports, no secrets."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from integrations.models import Source

pytestmark = pytest.mark.django_db

SECRET = "s3cr3t"
WORKSPACE = {
    "sources": [
        {"slug": "website", "name": "Website", "kind": "http", "write_key": "wk_demo_website"},
        {
            "slug": "cio",
            "name": "Customer.io",
            "kind": "customerio",
            "write_key": "wk_demo_cio",
            "settings": {"signing_secret": SECRET},
        },
        {"slug": "app", "name": "Mobile app", "write_key": "wk_demo_app", "enabled": False},
    ]
}


def write(tmp_path: Path, data: Any, name: str = "workspace.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def run_import(path: Path | str) -> list[str]:
    out = StringIO()
    call_command("import_workspace", str(path), stdout=out)
    return out.getvalue().splitlines()


def run_export() -> str:
    out = StringIO()
    call_command("export_workspace", stdout=out)
    return out.getvalue()


def snapshot() -> list[dict[str, Any]]:
    """Every source row as stored, settings decrypted, including the timestamps."""
    return [{f.name: getattr(s, f.name) for f in Source._meta.concrete_fields} for s in Source.objects.order_by("id")]


def raw_settings() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT slug, settings FROM integrations_source")
        return dict(cursor.fetchall())


def test_import_creates_sources(tmp_path: Path) -> None:
    assert run_import(write(tmp_path, WORKSPACE)) == [
        "created source website",
        "created source cio",
        "created source app",
    ]
    website, cio, app = (Source.objects.get(slug=s) for s in ("website", "cio", "app"))
    assert (website.name, website.kind, website.write_key, website.enabled) == (
        "Website",
        "http",
        "wk_demo_website",
        True,
    )
    assert (cio.kind, cio.settings) == ("customerio", {"signing_secret": SECRET})
    assert (app.kind, app.enabled, website.settings) == ("http", False, {})


def test_importing_the_same_file_twice_changes_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, WORKSPACE)
    run_import(path)
    before = snapshot()
    assert run_import(path) == ["unchanged source website", "unchanged source cio", "unchanged source app"]
    assert snapshot() == before  # same rows, same ids, same updated_at, same settings


def test_a_changed_name_updates_only_that_source(tmp_path: Path) -> None:
    run_import(write(tmp_path, WORKSPACE))
    before = {row["slug"]: row for row in snapshot()}
    changed = json.loads(json.dumps(WORKSPACE))
    changed["sources"][0]["name"] = "Marketing site"
    assert run_import(write(tmp_path, changed, "changed.json")) == [
        "updated source website",
        "unchanged source cio",
        "unchanged source app",
    ]
    after = {row["slug"]: row for row in snapshot()}
    assert after["website"]["name"] == "Marketing site"
    assert after["website"]["updated_at"] > before["website"]["updated_at"]
    assert {k: v for k, v in after["website"].items() if k not in ("name", "updated_at")} == {
        k: v for k, v in before["website"].items() if k not in ("name", "updated_at")
    }
    assert after["cio"] == before["cio"]
    assert after["app"] == before["app"]


def test_settings_are_stored_encrypted(tmp_path: Path) -> None:
    run_import(write(tmp_path, WORKSPACE))
    stored = raw_settings()
    assert SECRET not in stored["cio"]
    assert "signing_secret" not in stored["cio"]
    assert Source.objects.get(slug="cio").settings == {"signing_secret": SECRET}


def test_an_invalid_file_lists_every_problem_and_changes_nothing(tmp_path: Path) -> None:
    Source.objects.create(name="Existing", slug="existing", write_key="wk_taken")
    run_import(write(tmp_path, WORKSPACE))
    before = snapshot()
    bad = {
        "sources": [
            {"slug": "website", "name": "Renamed", "write_key": "wk_demo_website"},  # valid, but not applied
            {"slug": "new-one", "name": "New", "kind": "carrier-pigeon"},
            {"slug": "has spaces", "name": "Spaces"},
            {"slug": "twice", "name": "Twice 1"},
            {"slug": "twice", "name": "Twice 2"},
            {"slug": "thief", "name": "Thief", "write_key": "wk_taken"},
        ]
    }
    with pytest.raises(CommandError) as raised:
        run_import(write(tmp_path, bad, "bad.json"))
    message = str(raised.value)
    assert message.startswith("Nothing was imported:")
    problems = message.splitlines()[1:]
    assert len(problems) == 4, message
    assert any("sources[1] (new-one).kind" in p and "carrier-pigeon" in p for p in problems), message
    assert any("sources[2] (has spaces).slug" in p for p in problems), message
    assert any("slug used more than once: twice" in p for p in problems), message
    assert any("(thief)" in p and "write_key is already used by source existing" in p for p in problems), message
    assert snapshot() == before


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"sources": [{"slug": "x",}]}', "is not valid JSON"),
        ("", "is not valid JSON"),
        (b"\xff\xfe{\x00", "is not valid JSON"),  # not UTF-8 either
        ('["a list"]', "must hold a JSON object"),
        ('{"sources": {"slug": "x"}}', "sources: must be a list"),
        ('{"sources": ["website"], "extra": 1}', "sources[0]: must be an object"),
        (
            '{"sources": [{"slug": "x", "write_key": "a"}, {"slug": "y", "write_key": "a"}]}',
            "write_key used more than once: a",
        ),
    ],
)
def test_a_malformed_file_is_a_command_error(tmp_path: Path, content: str | bytes, expected: str) -> None:
    run_import(write(tmp_path, WORKSPACE))
    before = snapshot()
    path = tmp_path / "bad.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(CommandError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        run_import(path)
    assert snapshot() == before


def test_every_problem_of_one_source_is_listed(tmp_path: Path) -> None:
    path = write(tmp_path, {"sources": [{"slug": "x", "colour": "red", "settings": "s", "enabled": "yes"}]})
    with pytest.raises(CommandError) as raised:
        run_import(path)
    message = str(raised.value)
    for expected in ("unknown keys colour", "(x).settings: must be an object", "(x).enabled"):
        assert expected in message
    assert not Source.objects.exists()


def test_a_missing_file_is_a_command_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=r"Cannot read .*nope\.json"):
        run_import(tmp_path / "nope.json")
    assert not Source.objects.exists()


def test_export_reimports_unchanged_and_leaves_secrets_out(tmp_path: Path) -> None:
    Source.objects.create(
        name="Webhooks",
        slug="hooks",
        kind="generic",
        write_key="wk_hooks",
        config={"signature_header": "X-Hub-Signature-256"},  # a valid row: a re-import checks it as it will be
        settings={"signing_secret": SECRET},
    )
    run_import(write(tmp_path, WORKSPACE))
    before = snapshot()

    exported = run_export()
    assert SECRET not in exported
    assert "signing_secret" not in exported
    assert "settings" not in exported
    data = json.loads(exported)
    assert [s["slug"] for s in data["sources"]] == ["app", "cio", "hooks", "website"]
    assert data["sources"][0] == {
        "slug": "app",
        "name": "Mobile app",
        "kind": "http",
        "write_key": "wk_demo_app",
        "enabled": False,
    }

    assert run_import(write(tmp_path, exported, "exported.json")) == [
        "unchanged source app",
        "unchanged source cio",
        "unchanged source hooks",
        "unchanged source website",
    ]
    assert snapshot() == before  # re-importing the export keeps the secrets it left out
    assert Source.objects.get(slug="hooks").settings == {"signing_secret": SECRET}


def test_the_demo_workspace_imports_twice(tmp_path: Path) -> None:
    demo = Path(__file__).resolve().parents[2] / "cdphub" / "demo_workspace.json"
    if not demo.exists():
        pytest.skip("no demo workspace file")
    first = run_import(demo)
    assert first
    assert all(line.startswith(("created function", "created source", "created destination")) for line in first)
    before = snapshot()
    second = run_import(demo)
    assert all(line.startswith(("unchanged function", "unchanged source", "unchanged destination")) for line in second)
    assert snapshot() == before


def test_values_django_would_coerce_are_idempotent_too(tmp_path: Path) -> None:
    """A number where a string belongs is stored as text; the second import must still see no change."""
    path = write(tmp_path, {"sources": [{"slug": "numbers", "name": 2024, "write_key": 12345}]})
    assert run_import(path) == ["created source numbers"]
    source = Source.objects.get(slug="numbers")
    assert (source.name, source.write_key) == ("2024", "12345")
    before = snapshot()
    assert run_import(path) == ["unchanged source numbers"]
    assert snapshot() == before


def test_import_reads_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", StringIO(json.dumps(WORKSPACE)))
    assert run_import("-") == ["created source website", "created source cio", "created source app"]
    monkeypatch.setattr("sys.stdin", StringIO("not json"))
    with pytest.raises(CommandError, match="- is not valid JSON"):
        run_import("-")


def test_a_webhook_source_config_is_imported_exported_and_checked_by_its_function(tmp_path: Path) -> None:
    good = {
        "sources": [
            {
                "slug": "cio",
                "name": "Customer.io",
                "kind": "customerio",
                "write_key": "wk_cio_ws",
                "config": {"naming": "customerio"},
                "settings": {"signing_secret": SECRET},
            }
        ]
    }
    run_import(write(tmp_path, good))
    source = Source.objects.get(slug="cio")
    assert (source.config, source.settings) == ({"naming": "customerio"}, {"signing_secret": SECRET})
    exported = json.loads(run_export())
    assert exported["sources"][0]["config"] == {"naming": "customerio"}
    assert SECRET not in run_export()

    bad = {"sources": [{**good["sources"][0], "config": {"naming": "cio"}, "settings": {"signing_secret": 7}}]}
    with pytest.raises(CommandError) as raised:
        run_import(write(tmp_path, bad, "bad.json"))
    message = str(raised.value)
    assert "sources[0] (cio).config: config.naming: must be one of 'segment', 'customerio', not 'cio'" in message
    assert "sources[0] (cio).settings: settings.signing_secret: must be a string, not a number" in message
    assert Source.objects.get(slug="cio").config == {"naming": "customerio"}

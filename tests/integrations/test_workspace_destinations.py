"""Workspace as code for destinations: upsert by slug, same rules as the admin, credentials never exported."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.management import CommandError, call_command
from django.db import connection

from integrations.crypto import CANNOT_DECRYPT, KEYS_ENV, reset_keys
from integrations.models import Destination, Source
from integrations.vendors import VENDORS

pytestmark = pytest.mark.django_db

SIGNING_SECRET = "whsec_dGVzdC1zaWduaW5nLXNlY3JldA"
API_KEY = "ak_live_9c1e5f3a7d"
SEGMENT_KEY = "seg_wk_7b2d9e4f1a"
SECRETS = (SIGNING_SECRET, API_KEY, SEGMENT_KEY)

HOOK = {
    "slug": "hook",
    "name": "Growth webhook",
    "vendor": "webhook",
    "sources": ["website", "app"],
    "enabled": True,
    "config": {"url": "https://example.com/hook", "method": "PUT", "headers": {"X-Team": "growth"}, "batch_size": 10},
    "credentials": {"signing_secret": SIGNING_SECRET, "headers": {"X-Api-Key": API_KEY}},
    "filter": {"types": ["track", "identify"], "events": ["Signed Up"], "condition": "properties.plan == 'pro'"},
    "mapping": {"email": "traits.email || properties.email", "plan": "properties.plan"},
    "consent_categories": ["Advertising"],
    "rate_mode": "fixed",
    "rate_limit": 100,
    "rate_period": 1,
    "concurrency": 2,
    "timeout": 5,
    "retry_deadline_seconds": 3600,
}
SEGMENT = {
    "slug": "to-segment",
    "name": "Segment",
    "vendor": "segment",
    "sources": ["website"],
    "credentials": {"write_key": SEGMENT_KEY},
}
WORKSPACE = {
    "sources": [
        {"slug": "website", "name": "Website", "kind": "http", "write_key": "wk_ws_website"},
        {"slug": "app", "name": "App", "kind": "http", "write_key": "wk_ws_app"},
    ],
    "destinations": [HOOK, SEGMENT],
}


VENDOR_KEYS = ", ".join(sorted(VENDORS))  # every registered vendor, as the importer lists them


def copy_of(data: Any) -> Any:
    return json.loads(json.dumps(data))


def write(tmp_path: Path, data: Any, name: str = "workspace.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def run_import(path: Path) -> list[str]:
    out = StringIO()
    call_command("import_workspace", str(path), stdout=out)
    return out.getvalue().splitlines()


def import_problems(path: Path) -> list[str]:
    out = StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("import_workspace", str(path), stdout=out)
    assert out.getvalue() == ""
    message = str(raised.value)
    assert message.startswith("Nothing was imported:")
    return [line.strip() for line in message.splitlines()[1:]]


def run_export() -> str:
    out = StringIO()
    call_command("export_workspace", stdout=out)
    return out.getvalue()


def raw_credentials() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT slug, credentials FROM integrations_destination")
        return dict(cursor.fetchall())


def snapshot() -> dict[str, dict[str, Any]]:
    """Every destination as stored (credentials decrypted, timestamps included), its sources, and the raw tokens."""
    tokens = raw_credentials()
    return {
        d.slug: {
            **{f.name: getattr(d, f.name) for f in Destination._meta.concrete_fields},
            "sources": {s.slug for s in d.sources.all()},
            "token": tokens[d.slug],
        }
        for d in Destination.objects.order_by("id")
    }


def test_import_creates_destinations_with_every_setting(tmp_path: Path) -> None:
    assert run_import(write(tmp_path, WORKSPACE)) == [
        "created source website",
        "created source app",
        "created destination hook",
        "created destination to-segment",
    ]
    hook = Destination.objects.get(slug="hook")
    assert (hook.name, hook.vendor, hook.enabled, hook.paused) == ("Growth webhook", "webhook", True, False)
    assert {s.slug for s in hook.sources.all()} == {"website", "app"}
    assert hook.config == HOOK["config"]
    assert hook.credentials == HOOK["credentials"]
    assert hook.filter == HOOK["filter"]
    assert hook.mapping == HOOK["mapping"]
    assert hook.consent_categories == ["Advertising"]
    assert (hook.rate_limit, hook.rate_period, hook.concurrency, hook.timeout) == (100, 1.0, 2, 5.0)
    assert hook.retry_deadline == timedelta(hours=1)
    assert hook.limits() == (100, 1.0, 2)

    segment = Destination.objects.get(slug="to-segment")
    assert segment.credentials == {"write_key": SEGMENT_KEY}
    assert (segment.config, segment.filter, segment.mapping, segment.consent_categories) == ({}, {}, {}, [])
    assert (segment.timeout, segment.retry_deadline, segment.rate_limit) == (10.0, timedelta(hours=4), None)
    assert [s.slug for s in segment.sources.all()] == ["website"]
    segment.build_vendor()  # what the file made is what the worker can use


def test_credentials_are_stored_encrypted(tmp_path: Path) -> None:
    run_import(write(tmp_path, WORKSPACE))
    for token in raw_credentials().values():
        for plain in (*SECRETS, "signing_secret", "write_key"):
            assert plain not in token


def test_importing_the_same_file_twice_changes_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, WORKSPACE)
    run_import(path)
    before = snapshot()
    assert run_import(path) == [
        "unchanged source website",
        "unchanged source app",
        "unchanged destination hook",
        "unchanged destination to-segment",
    ]
    assert snapshot() == before  # same rows, updated_at, decrypted credentials, sources, even the same tokens


def test_credentials_left_out_of_the_file_are_kept(tmp_path: Path) -> None:
    run_import(write(tmp_path, WORKSPACE))
    before = snapshot()
    without = copy_of(WORKSPACE)
    for spec in without["destinations"]:
        del spec["credentials"]
    assert run_import(write(tmp_path, without, "without.json"))[-2:] == [
        "unchanged destination hook",
        "unchanged destination to-segment",
    ]
    assert snapshot() == before
    assert Destination.objects.get(slug="hook").credentials == HOOK["credentials"]


def test_new_credentials_in_the_file_replace_the_stored_ones(tmp_path: Path) -> None:
    run_import(write(tmp_path, WORKSPACE))
    before = snapshot()
    changed = copy_of(WORKSPACE)
    changed["destinations"][1]["credentials"] = {"write_key": "seg_wk_rotated_0001"}
    lines = run_import(write(tmp_path, changed, "changed.json"))
    assert lines[-2:] == ["updated destination to-segment (credentials)", "unchanged destination hook"]
    assert "seg_wk_rotated_0001" not in "\n".join(lines)
    after = snapshot()
    assert after["hook"] == before["hook"]
    assert after["to-segment"]["credentials"] == {"write_key": "seg_wk_rotated_0001"}
    assert after["to-segment"]["updated_at"] > before["to-segment"]["updated_at"]


def test_a_change_updates_only_that_destination_and_names_the_fields(tmp_path: Path) -> None:
    run_import(write(tmp_path, WORKSPACE))
    before = snapshot()
    changed = copy_of(WORKSPACE)
    hook = changed["destinations"][0]
    hook["config"]["url"] = "https://example.com/v2/hook"
    hook["sources"] = ["app"]
    hook["retry_deadline_seconds"] = 7200
    assert run_import(write(tmp_path, changed, "changed.json"))[-2:] == [
        "updated destination hook (config, retry_deadline_seconds, sources)",
        "unchanged destination to-segment",
    ]
    after = snapshot()
    assert after["hook"]["config"]["url"] == "https://example.com/v2/hook"
    assert after["hook"]["sources"] == {"app"}
    assert after["hook"]["retry_deadline"] == timedelta(hours=2)
    assert after["hook"]["token"] == before["hook"]["token"]  # credentials untouched, not even re-encrypted
    unchanged = ("config", "retry_deadline", "sources", "updated_at")
    assert {k: v for k, v in after["hook"].items() if k not in unchanged} == {
        k: v for k, v in before["hook"].items() if k not in unchanged
    }
    assert after["to-segment"] == before["to-segment"]


def test_keys_left_out_keep_their_stored_values(tmp_path: Path) -> None:
    run_import(write(tmp_path, WORKSPACE))
    before = snapshot()
    assert run_import(write(tmp_path, {"destinations": [{"slug": "hook", "enabled": False}]}, "small.json")) == [
        "updated destination hook (enabled)"
    ]
    after = snapshot()
    assert after["hook"]["enabled"] is False
    assert after["hook"]["sources"] == before["hook"]["sources"]
    assert after["hook"]["credentials"] == before["hook"]["credentials"]
    assert after["hook"]["filter"] == before["hook"]["filter"]


def test_an_invalid_file_lists_every_problem_with_its_place_and_changes_nothing(tmp_path: Path) -> None:
    run_import(write(tmp_path, WORKSPACE))
    before = snapshot()
    bad = copy_of(WORKSPACE)
    bad["destinations"][0]["name"] = "Renamed, but not applied"
    bad["destinations"] += [
        {"slug": "welcome-journey", "vendor": "webhook", "config": {"method": "GET"}, "sources": ["website", "nope"]},
        {
            "slug": "filtered",
            "vendor": "segment",
            "credentials": {"write_key": SEGMENT_KEY},
            "filter": {"types": ["track", "purchase"], "events": "Signed Up", "condition": "properties.[", "x": 1},
            "consent_categories": "Advertising",
            "mapping": {"email": "traits.(email"},
        },
        {"slug": "no-vendor"},
        {"slug": "what", "vendor": "carrier-pigeon"},
        {
            "slug": "typed",
            "vendor": "segment",
            "credentials": {"write_key": 12345},
            "enabled": "yes",
            "rate_limit": "fast",
            "rate_mode": "turbo",
            "timeout": True,
            "retry_deadline_seconds": None,
            "colour": "red",
        },
        {
            "slug": "limits",
            "vendor": "segment",
            "credentials": {"write_key": "k"},
            "timeout": 0,
            "retry_deadline_seconds": 0,
        },
        {"slug": "twice", "vendor": "segment", "credentials": {"write_key": "k"}},
        {"slug": "twice", "vendor": "segment", "credentials": {"write_key": "k"}},
        "not an object",
    ]
    problems = import_problems(write(tmp_path, bad, "bad.json"))
    expected = [
        "destinations[2] (welcome-journey).sources: no source with slug 'nope'",
        "destinations[2] (welcome-journey).config.url: required",
        "destinations[2] (welcome-journey).config.method: must be one of 'POST', 'PUT'",
        "destinations[3] (filtered).filter.types: 'purchase' is not an event type",
        "destinations[3] (filtered).filter.events: must be a list of event names",
        "destinations[3] (filtered).filter.condition: 'properties.[' is not a valid JMESPath expression",
        "destinations[3] (filtered).filter.x: unknown key",
        "destinations[3] (filtered).consent_categories: must be a list of category names",
        "destinations[3] (filtered).mapping.email: 'traits.(email' is not a valid JMESPath expression",
        f"destinations[4] (no-vendor).vendor: required (one of {VENDOR_KEYS})",
        f"destinations[5] (what).vendor: 'carrier-pigeon' is not a vendor (use {VENDOR_KEYS})",
        "destinations[6] (typed): unknown keys colour",
        "destinations[6] (typed).enabled: must be true or false",
        "destinations[6] (typed).rate_mode: must be 'adaptive' or 'fixed'",
        "destinations[6] (typed).rate_limit: must be a whole number or null",
        "destinations[6] (typed).timeout: must be a number of seconds",
        "destinations[6] (typed).retry_deadline_seconds: must be a number of seconds",
        "destinations[7] (limits).timeout: must be more than 0 seconds",
        "destinations[7] (limits).retry_deadline_seconds: must be more than 0 seconds",
        "destinations[10]: must be an object",
        "destinations: slug used more than once: twice",
    ]
    for line in expected:
        assert any(p.startswith(line) for p in problems), f"{line!r} not in {problems}"
    assert len(problems) == len(expected) + 1, problems  # and (typed).credentials.write_key: must be a string
    typed = {"slug": "typed", "vendor": "segment", "credentials": {"write_key": 12345}}
    (problem,) = import_problems(write(tmp_path, {"destinations": [typed]}, "b3"))
    assert problem.startswith("destinations[0] (typed).credentials.write_key: must be a string")
    assert snapshot() == before
    assert not Destination.objects.filter(slug__in=["welcome-journey", "filtered", "twice"]).exists()


def test_a_destination_may_use_a_source_defined_in_the_same_file_only_if_it_is_valid(tmp_path: Path) -> None:
    data = {"sources": [{"slug": "fresh", "name": "Fresh"}], "destinations": [{**SEGMENT, "sources": ["fresh"]}]}
    assert run_import(write(tmp_path, data)) == ["created source fresh", "created destination to-segment"]
    assert [s.slug for s in Destination.objects.get(slug="to-segment").sources.all()] == ["fresh"]


def test_problems_and_printed_lines_never_show_a_secret(tmp_path: Path) -> None:
    lines = run_import(write(tmp_path, WORKSPACE))
    bad = copy_of(WORKSPACE)
    bad["destinations"][0]["credentials"] = {"signing_secret": SIGNING_SECRET, "api_key": API_KEY}
    bad["destinations"][0]["config"]["url"] = "ftp://" + SEGMENT_KEY
    problems = import_problems(write(tmp_path, bad, "bad.json"))
    assert "destinations[0] (hook).credentials.api_key: unknown setting" in problems
    printed = "\n".join(lines + problems)
    for secret in (SIGNING_SECRET, API_KEY):
        assert secret not in printed


def test_export_leaves_credentials_out_and_reimports_unchanged(tmp_path: Path) -> None:
    run_import(write(tmp_path, WORKSPACE))
    before = snapshot()
    exported = run_export()
    for secret in (*SECRETS, "credentials", "signing_secret", "X-Api-Key"):
        assert secret not in exported
    data = json.loads(exported)
    assert [d["slug"] for d in data["destinations"]] == ["hook", "to-segment"]
    assert data["destinations"][0] == {
        **{k: v for k, v in HOOK.items() if k != "credentials"},
        "sources": ["app", "website"],
        "rate_period": 1.0,
        "timeout": 5.0,
    }
    assert data["destinations"][1] == {
        "slug": "to-segment",
        "name": "Segment",
        "vendor": "segment",
        "sources": ["website"],
        "enabled": True,
        "config": {},
        "filter": {},
        "mapping": {},
        "consent_categories": [],
        "rate_mode": "adaptive",
        "rate_limit": None,
        "rate_period": None,
        "concurrency": None,
        "timeout": 10.0,
        "retry_deadline_seconds": 14400,
    }
    assert run_import(write(tmp_path, exported, "exported.json")) == [
        "unchanged source app",
        "unchanged source website",
        "unchanged destination hook",
        "unchanged destination to-segment",
    ]
    assert snapshot() == before
    assert Destination.objects.get(slug="hook").credentials == HOOK["credentials"]


def test_the_export_imports_into_an_empty_hub_without_secrets(tmp_path: Path) -> None:
    """A destination whose vendor needs no secret comes across whole; one that does is reported, not half made."""
    run_import(write(tmp_path, WORKSPACE))
    exported = json.loads(run_export())
    Destination.objects.all().delete()
    Source.objects.all().delete()
    problems = import_problems(write(tmp_path, exported, "exported.json"))
    assert problems == ["destinations[1] (to-segment).credentials.write_key: required"]
    assert not Destination.objects.exists()


def test_fractional_seconds_and_coerced_values_reimport_unchanged(tmp_path: Path) -> None:
    spec = {**SEGMENT, "name": 2024, "retry_deadline_seconds": 90.5, "rate_limit": 20.0, "timeout": 3}
    path = write(tmp_path, {"sources": WORKSPACE["sources"], "destinations": [spec]})
    run_import(path)
    segment = Destination.objects.get(slug="to-segment")
    assert (segment.name, segment.retry_deadline, segment.rate_limit, segment.timeout) == (
        "2024",
        timedelta(seconds=90.5),
        20,
        3.0,
    )
    before = snapshot()
    assert run_import(path)[-1] == "unchanged destination to-segment"
    assert json.loads(run_export())["destinations"][0]["retry_deadline_seconds"] == 90.5
    assert snapshot() == before


def test_stored_credentials_no_key_decrypts_are_a_problem_until_the_file_gives_new_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEYS_ENV, Fernet.generate_key().decode())
    reset_keys()
    try:
        run_import(write(tmp_path, WORKSPACE))
        monkeypatch.setenv(KEYS_ENV, Fernet.generate_key().decode())  # the key is lost
        reset_keys()
        without = copy_of(WORKSPACE)
        del without["destinations"][1]["credentials"]
        problems = import_problems(write(tmp_path, without, "without.json"))
        assert f"destinations[1] (to-segment).credentials: {CANNOT_DECRYPT}" in problems[0]
        # Entering the secrets again (the file gives them) repairs the destination.
        assert run_import(write(tmp_path, WORKSPACE))[-1] == "updated destination to-segment (credentials)"
        assert Destination.objects.get(slug="to-segment").credentials == {"write_key": SEGMENT_KEY}
    finally:
        monkeypatch.undo()
        reset_keys()


def test_the_old_skipped_destinations_note_is_gone(tmp_path: Path) -> None:
    lines = run_import(write(tmp_path, WORKSPACE))
    assert not any("skipped" in line for line in lines)


# Destination.clean(): the admin's form runs the same rules -------------------------------------------


def destination(**fields: Any) -> Destination:
    values = {"name": "Hook", "slug": "hook", "vendor": "webhook", "config": {"url": "https://example.com/in"}}
    return Destination(**{**values, **fields})


def test_a_good_destination_is_clean() -> None:
    destination(
        credentials={"signing_secret": "s"},
        filter={"types": ["track"], "events": ["Order Completed"], "condition": None},
        consent_categories=["Marketing"],
        mapping={"email": "traits.email"},
    ).full_clean()
    destination(filter={}, consent_categories=[]).full_clean()


def test_clean_files_each_problem_under_its_field() -> None:
    with pytest.raises(ValidationError) as raised:
        destination(
            config={"method": "GET", "extra": 1},
            credentials={"signing_secret": 5},
            mapping={"email": "traits.(email"},
            filter={"types": "track", "condition": 3},
            consent_categories=[1],
            timeout=-1,
        ).clean()
    errors = raised.value.message_dict
    assert set(errors) == {"config", "credentials", "mapping", "filter", "consent_categories", "timeout"}
    assert "config.url: required" in errors["config"]
    assert "config.extra: unknown setting" in errors["config"]
    assert any(m.startswith("config.method: must be one of") for m in errors["config"])
    assert len(errors["credentials"]) == 1
    assert errors["credentials"][0].startswith("credentials.signing_secret: must be a string")
    assert errors["mapping"][0].startswith("mapping.email: 'traits.(email' is not a valid JMESPath expression")
    assert errors["filter"] == [
        "filter.types: must be a list of event types",
        "filter.condition: must be a JMESPath expression (a string) or null",
    ]
    assert errors["consent_categories"][0].startswith("consent_categories: must be a list of category names")
    assert errors["timeout"] == ["timeout: must be more than 0 seconds"]
    assert NON_FIELD_ERRORS not in errors


def test_clean_leaves_an_unknown_vendor_to_the_field_check() -> None:
    with pytest.raises(ValidationError) as raised:
        destination(vendor="carrier-pigeon").full_clean()
    assert set(raised.value.message_dict) == {"vendor"}

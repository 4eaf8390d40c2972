"""The vendor test kit: each vendor's contract profile, found in tests/fixtures/vendors/<key>/profile.json, so the
contract suite and the no-secrets crawl cover a new vendor without a central table to edit.

A profile says how to build the vendor and what its wire looks like:
- `config`, `credentials`: settings the vendor accepts (the crawl builds its destination from `config` too);
- `token` (optional): the call it makes first, `{"method", "url", "answer"}`, for vendors with OAuth tokens;
- `send`: `{"method", "url"}` of the call the cases answer, and `success`, the 2xx body when `{"success": true}`
  would not do (a vendor that reads a result per record);
- `expired` (with `token`): how the vendor's API says the token expired, `{"status", "json"}`;
- `secret_headers`: headers whose sent values are secrets; `also_secret`: other values never to be recorded.
Recorded bodies for a vendor's own tests sit beside it in the same folder.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "vendors"


@cache
def _load(key: str) -> dict[str, Any] | None:
    path = FIXTURES / key / "profile.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def profile(key: str) -> dict[str, Any]:
    """The vendor's contract profile; a vendor without one fails the test that asks, saying where to put it."""
    found = _load(key)
    if found is None:
        pytest.fail(f"The vendor {key!r} has no contract profile: add tests/fixtures/vendors/{key}/profile.json.")
    return found


def fixture(key: str, name: str) -> Any:
    """A recorded body kept beside the vendor's profile (tests/fixtures/vendors/<key>/<name>)."""
    text = (FIXTURES / key / name).read_text(encoding="utf-8")
    return json.loads(text) if name.endswith(".json") else text


def wire_vendors() -> list[str]:
    """Vendors whose HTTP calls and outcomes are fixed by their module, not by code a team wrote: a destination
    function's profile says `"wire": false` (its calls are its JavaScript's: tests/integrations/functions)."""
    from integrations.vendors import VENDORS

    return [key for key in sorted(VENDORS) if profile(key).get("wire", True)]


def make_profile_function(key: str) -> Any:
    """Create the Function a vendor's profile needs (a destination function's code), if it names one."""
    spec = profile(key).get("function")
    if spec is None:
        return None
    from integrations.models import Function

    fields = {k: v for k, v in spec.items() if k != "code_file"}
    fields["code"] = (FIXTURES / key / spec["code_file"]).read_text(encoding="utf-8")
    function = Function(**fields)
    function.full_clean()
    function.save()
    return function


def keys_with_profiles() -> list[str]:
    return sorted(p.name for p in FIXTURES.iterdir() if (p / "profile.json").exists())


def body_of(call: Any) -> dict[str, Any]:
    """The JSON body a mocked call sent."""
    return json.loads(call.request.body)

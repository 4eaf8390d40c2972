"""Marketo's settings: the instance (Munchkin ID or base URL), how leads are found, and the custom activities
that track events become (vendor-contracts.md §2.5)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from integrations.mapping import MappingError, compile_expression

MUNCHKIN_ID = re.compile(r"[0-9]{3}-[A-Za-z]{3}-[0-9]{3}")
API_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
ACTIVITY_KEYS = ("activity_type_id", "primary_attribute", "attributes")
MAX_ATTRIBUTES = 20  # per custom activity type (§2.5)


@dataclass
class MarketoConfig:
    munchkin_id: str = ""
    base_url: str = ""  # instead of munchkin_id: the sandbox, tests, a proxy
    lookup_field: str = "email"
    upsert_leads: bool = False
    activities: dict[str, dict] = field(default_factory=dict)  # event name → activity_type_id, attributes

    @property
    def base(self) -> str:
        return self.base_url.rstrip("/") if self.base_url else f"https://{self.munchkin_id}.mktorest.com"

    def check(self) -> list[str]:
        problems = []
        if bool(self.munchkin_id) == bool(self.base_url):
            problems.append("munchkin_id: give the Munchkin ID (like 284-RPR-133) or base_url, one of the two")
        elif self.munchkin_id and not MUNCHKIN_ID.fullmatch(self.munchkin_id):
            problems.append("munchkin_id: must look like 284-RPR-133 (Admin → Munchkin → Munchkin Account ID)")
        parts = urlsplit(self.base_url)
        if self.base_url and (parts.scheme not in ("http", "https") or not parts.hostname or parts.query):
            problems.append("base_url: must be an http(s) URL like https://284-RPR-133.mktorest.com")
        elif parts.path.rstrip("/").endswith(("/rest", "/identity")):
            problems.append("base_url: leave out /rest or /identity: https://284-RPR-133.mktorest.com")
        if not API_NAME.fullmatch(self.lookup_field):
            problems.append("lookup_field: must be a lead field's API name, such as email")
        elif self.lookup_field == "id" and self.upsert_leads:
            problems.append("lookup_field: Marketo cannot upsert leads by id: use email or another unique field")
        for name, spec in self.activities.items():
            problems += [f"activities.{name}.{p}" for p in _activity_problems(spec)]
        return problems


def _activity_problems(spec: dict[str, Any]) -> list[str]:
    """Problems of one activities entry, each starting with its key."""
    problems = [f"{key}: unknown setting (use {', '.join(ACTIVITY_KEYS)})" for key in spec if key not in ACTIVITY_KEYS]
    type_id = spec.get("activity_type_id")
    if not isinstance(type_id, int) or isinstance(type_id, bool) or type_id < 100000:
        problems.append("activity_type_id: must be a whole number ≥ 100000 (Admin → Marketo Custom Activities)")
    primary = spec.get("primary_attribute")
    if not isinstance(primary, str) or not primary:
        problems.append("primary_attribute: required, a JMESPath expression over the event such as properties.plan")
    else:
        problems += _expression("primary_attribute", primary)
    attributes = spec.get("attributes", {})
    if not isinstance(attributes, dict) or not all(isinstance(v, str) for v in attributes.values()):
        return [*problems, 'attributes: must be an object of API name → JMESPath, like {"amount": "properties.total"}']
    if len(attributes) > MAX_ATTRIBUTES:
        problems.append(f"attributes: Marketo allows at most {MAX_ATTRIBUTES} attributes per custom activity")
    return problems + [p for name, value in attributes.items() for p in _expression(f"attributes.{name}", value)]


def _expression(where: str, expression: str) -> list[str]:
    try:
        compile_expression(expression)
    except MappingError as exc:
        return [f"{where}: {exc}"]
    return []


@dataclass
class MarketoCredentials:
    client_id: str
    client_secret: str

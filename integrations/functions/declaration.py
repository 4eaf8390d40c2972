"""A function's settings declaration, as Segment's (Label, Name, Type, Description, Required, Encrypted): which
values its code reads from `settings`, and the check of a destination's or source's values against it.

Plain values live in the destination's (or source's) JSON config; sensitive ones are stored encrypted and are
write-only everywhere: forms, API answers, workspace exports, logs and recorded exchanges.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FunctionCode:
    """What runs: a saved function's code and settings declaration, as vendors and source kinds get it (they
    read no rows: the hub's state looks it up for them)."""

    slug: str
    kind: str
    code: str
    settings: list[dict[str, Any]] = field(default_factory=list)


TYPES = ("string", "text", "boolean", "number", "array", "text_map")
NAME = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]{0,99}$")
KEYS = ("name", "label", "type", "description", "required", "sensitive")


def declaration_problems(declaration: Any) -> list[str]:
    """One message per bad item of a settings declaration (empty when it is good)."""
    if declaration in (None, ""):
        return []
    if not isinstance(declaration, list):
        return ['settings: must be a list like [{"name": "apiKey", "type": "string", "sensitive": true}]']
    problems: list[str] = []
    seen: set[str] = set()
    for index, item in enumerate(declaration):
        where = f"settings[{index}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: must be an object with a name")
            continue
        problems += [f"{where}.{key}: unknown key (use {', '.join(KEYS)})" for key in item if key not in KEYS]
        name = item.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            problems.append(f"{where}.name: must be a JavaScript identifier, e.g. apiKey")
        elif name in seen:
            problems.append(f"{where}.name: {name} is declared twice")
        else:
            seen.add(name)
        kind = item.get("type", "string")
        if kind not in TYPES:
            problems.append(f"{where}.type: must be one of {', '.join(TYPES)}, not {kind!r}")
        for flag in ("required", "sensitive"):
            if flag in item and not isinstance(item[flag], bool):
                problems.append(f"{where}.{flag}: must be true or false")
        for text in ("label", "description"):
            if text in item and not isinstance(item[text], str):
                problems.append(f"{where}.{text}: must be a string")
        if item.get("sensitive") and kind not in ("string", "text"):
            problems.append(f"{where}.sensitive: only a string setting can be sensitive")
    return problems


def _matches(kind: str, value: Any) -> bool:
    if kind in ("string", "text"):
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list)
    if kind == "text_map":
        return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    return True


DESCRIBED = {
    "string": "a string",
    "text": "a string",
    "boolean": "true or false",
    "number": "a number",
    "array": "a list",
    "text_map": "an object of strings",
}


def values_problems(declaration: Any, plain: Any, secret: Any, plain_where: str, secret_where: str) -> list[str]:
    """Check a destination's or source's setting values against the function's declaration: plain ones in
    `plain`, sensitive ones in `secret`, required ones present, each of its declared type."""
    if not isinstance(declaration, list):
        declaration = []
    plain = {} if plain is None else plain
    secret = {} if secret is None else secret
    problems: list[str] = []
    if not isinstance(plain, dict):
        return [f"{plain_where}: must be an object"]
    if not isinstance(secret, dict):
        return [f"{secret_where}: must be an object"]
    declared = {d.get("name"): d for d in declaration if isinstance(d, dict)}
    for name in plain:
        item = declared.get(name)
        if item is None:
            problems.append(f"{plain_where}.{name}: the function declares no such setting")
        elif item.get("sensitive"):
            problems.append(f"{plain_where}.{name}: a sensitive setting: give it with the secrets, not here")
    for name in secret:
        item = declared.get(name)
        if item is None:
            problems.append(f"{secret_where}.{name}: the function declares no such setting")
        elif not item.get("sensitive"):
            problems.append(f"{secret_where}.{name}: not a sensitive setting: give it with the plain settings")
    for name, item in declared.items():
        where, values = (secret_where, secret) if item.get("sensitive") else (plain_where, plain)
        value = values.get(name)
        if value is None or value == "":
            if item.get("required"):
                problems.append(f"{where}.{name}: required")
            continue
        kind = item.get("type", "string")
        if not _matches(kind, value):
            problems.append(f"{where}.{name}: must be {DESCRIBED.get(kind, kind)}")
    return problems


def settings_for(declaration: Any, plain: Any, secret: Any) -> dict[str, Any]:
    """The `settings` object the code gets: plain and sensitive values together, as Segment passes them."""
    merged: dict[str, Any] = {}
    if isinstance(plain, dict):
        merged.update(plain)
    if isinstance(secret, dict):
        merged.update(secret)
    return merged


def secret_values(secret: Any) -> list[str]:
    """The sensitive values to redact from logs and exchanges."""
    if not isinstance(secret, dict):
        return []
    return [v for v in secret.values() if isinstance(v, str) and len(v) >= 4]

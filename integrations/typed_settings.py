"""Typed settings: JSON objects (a vendor's config and credentials, a source function's settings) read into
dataclasses, with one message per bad field in JSON words ("config.url: required")."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal

from integrations.crypto import CANNOT_DECRYPT, Undecryptable


def parse_settings(cls: type, data: Any, where: str) -> tuple[Any, list[str]]:
    """Build dataclass `cls` from a JSON object; return it (or None) and one message per bad field."""
    if data is None:
        data = {}
    if isinstance(data, Undecryptable):  # stored with a key that is no longer configured
        return None, [f"{where}: {CANNOT_DECRYPT}"]
    if not isinstance(data, dict):
        return None, [f"{where}: must be an object"]
    problems: list[str] = []
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    problems += [f"{where}.{key}: unknown setting" for key in data if key not in fields]
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in data or data[name] is None:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                problems.append(f"{where}.{name}: required")
            continue
        value = data[name]
        if not _matches(value, hints[name]):
            problems.append(f"{where}.{name}: must be {_describe(hints[name])}{_not(value, hints[name])}")
            continue
        values[name] = value
    if problems:
        return None, problems
    instance = cls(**values)
    check = getattr(instance, "check", None)
    if check:
        problems += [f"{where}.{p}" for p in check()]
    return (None if problems else instance), problems


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if origin is Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is dict:
        _, value_type = typing.get_args(hint) or (str, Any)
        return isinstance(value, dict) and all(isinstance(k, str) and _matches(v, value_type) for k, v in value.items())
    if origin is list:
        (item_type,) = typing.get_args(hint) or (Any,)
        return isinstance(value, list) and all(_matches(v, item_type) for v in value)
    if hint is Any:
        return True
    return isinstance(value, hint)


KINDS = {str: "string", bool: "boolean", int: "number", float: "number", dict: "object", list: "list"}


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint) if a is not type(None))
    if origin in (dict, list) and typing.get_args(hint) and typing.get_args(hint)[-1] in KINDS:
        return ("an object of " if origin is dict else "a list of ") + KINDS[typing.get_args(hint)[-1]] + "s"
    return {str: "a string", int: "a whole number", float: "a number", bool: "true or false"}.get(
        hint, "an object" if origin is dict else "a list" if origin is list else str(hint)
    )


def _not(value: Any, hint: Any) -> str:
    """Say what the value is instead, in JSON words: ", not 'GET'", ", not a string"."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return f", not {value!r}"
    is_union = origin in (typing.Union, types.UnionType)
    origins = {typing.get_origin(a) for a in typing.get_args(hint)} if is_union else {origin}
    if (dict in origins and isinstance(value, dict)) or (list in origins and isinstance(value, list)):
        return ""  # the right container holding a wrong item: the description already says what items must be
    kind = KINDS.get(type(value), type(value).__name__)
    return f", not {'an' if kind[0] in 'aeiou' else 'a'} {kind}"

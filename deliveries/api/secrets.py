"""Secrets through the management API (a destination's credentials and its insert function's secrets, a source's
signing secret and write key): accepted on create and update, merged into what is stored the way the admin's form
merges them, answered as "set" per key and never with their value, to administrators only.

Which keys may be stored is a vendor's (source kind's) secrets dataclass, or the sensitive settings a function
declares: either way a list of names, `declared`."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import exceptions, serializers
from rest_framework.request import Request

from integrations.admin.base import MANAGE_CREDENTIALS, sees_secrets
from integrations.crypto import CANNOT_DECRYPT, Undecryptable
from integrations.forms import credential_keys
from integrations.functions.declaration import FunctionCode
from integrations.models import Function

SET = "set"
HOW = 'a key left out keeps its stored value, null removes it (e.g. {"signing_secret": null})'

__all__ = [
    "HOW",
    "SET",
    "STATE_SCHEMA",
    "SecretsField",
    "declared_by",
    "declared_by_function",
    "merged",
    "refuse_fields",
    "sees_secrets",
    "stored_state",
]


@extend_schema_field({"type": "object", "additionalProperties": {}})
class SecretsField(serializers.JSONField):
    """An object of secret values, write-only: answers carry the `<name>_set` field beside it instead."""

    # str.format()ted by DRF: the example's braces doubled
    default_error_messages = {
        "not_object": "Must be an object of secret values; " + HOW.replace("{", "{{").replace("}", "}}")
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("write_only", True)
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            self.fail("not_object")  # the message never repeats the value: it may be a secret
        return super().to_internal_value(data)


STATE_SCHEMA = {
    "type": "object",
    "nullable": True,
    "additionalProperties": {"type": "string", "enum": [SET, CANNOT_DECRYPT]},
    "description": f'"{SET}" for each secret stored (never its value); null when you may not know which are '
    f"stored (without the `{MANAGE_CREDENTIALS}` permission).",
    "example": {"client_id": SET, "client_secret": SET},
}


def declared_by(secrets_class: type | None) -> list[str] | None:
    """The secret keys a vendor's (source kind's) secrets dataclass takes; None: no class, any key is the model's
    check to judge."""
    return [key.name for key in credential_keys(secrets_class)] if secrets_class is not None else None


def declared_by_function(function: Function | FunctionCode | None) -> list[str]:
    """The sensitive settings a function declares: a function destination's credentials, an insert function's
    secrets, a JavaScript source's settings beside its signing secret (no function: none)."""
    items = function.settings if function is not None and isinstance(function.settings, list) else []
    return [
        item["name"]
        for item in items
        if isinstance(item, dict) and item.get("sensitive") and isinstance(item.get("name"), str)
    ]


def stored_state(stored: Any, declared: Collection[str] | None) -> dict[str, str]:
    """{key: "set"} for each stored non-empty value; each declared key "cannot decrypt: …" when no configured
    key decrypts what is stored."""
    if isinstance(stored, Undecryptable):
        return {name: CANNOT_DECRYPT for name in declared or ()}
    if not isinstance(stored, dict):
        return {}
    return {key: SET for key, value in stored.items() if value not in (None, "", {}, [])}


def merged(declared: Collection[str] | None, given: dict[str, Any] | None, stored: Any) -> Any:
    """The secrets to save: `given` over `stored`, as the admin's form does. A key left out keeps its stored value,
    null removes it, a pasted string loses its surrounding whitespace; stored keys not `declared` (by the vendor,
    the source kind or the function) are dropped, given ones are kept for the model's check to name."""
    locked = isinstance(stored, Undecryptable)
    if locked and not given:
        return stored  # the model's check says the stored secrets cannot be decrypted
    kept = dict(stored) if isinstance(stored, dict) else {}
    if declared is not None:
        kept = {key: value for key, value in kept.items() if key in declared}
    for key, value in (given or {}).items():
        if value is None:
            kept.pop(key, None)
        else:
            kept[key] = value.strip() if isinstance(value, str) else value
    return kept


def refuse_fields(request: Request, allowed: Iterable[str] | None, forbidden: Iterable[str], why: str) -> None:
    """403 when the body names a field this caller may not write; nothing is changed. `allowed` None: any field
    but the `forbidden` ones."""
    body = request.data if isinstance(request.data, dict) else {}
    refused = sorted(key for key in body if key in set(forbidden) or (allowed is not None and key not in set(allowed)))
    if refused:
        raise exceptions.PermissionDenied(f"{why} Nothing was changed. Not yours to change: {', '.join(refused)}.")

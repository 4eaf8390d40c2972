"""Secrets in forms (a destination's credentials, a source's signing secret): one input per key of the chosen
vendor's (or source kind's) secrets dataclass, rendered as set or not set, never with its value; blank keeps
what is stored."""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from integrations import vendors, webhooks
from integrations.crypto import CANNOT_DECRYPT, MASK, Undecryptable
from integrations.forms.fields import load_json

Kinds = dict[str, tuple[str, type]]


def vendor_kinds() -> Kinds:
    return {key: (vendor.label, vendor.credentials_class) for key, vendor in vendors.VENDORS.items()}


def function_kinds() -> Kinds:
    return {kind: (function.label, function.secrets_class) for kind, function in webhooks.FUNCTIONS.items()}


@dataclass(frozen=True)
class CredentialKey:
    name: str
    text: bool  # a string: a password input; anything else is JSON in a textarea
    required: bool


def credential_keys(secrets_class: type) -> list[CredentialKey]:
    """The secret keys a vendor (or source kind) takes, from its secrets dataclass."""
    hints = typing.get_type_hints(secrets_class)
    return [
        CredentialKey(
            f.name,
            hints[f.name] is str,
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
        )
        for f in dataclasses.fields(secrets_class)
    ]


def mask(value: Any) -> str:
    """Say whether a secret is set without showing it; the names inside a set of secret headers are shown."""
    if value in (None, "", {}, []):
        return "not set"
    if isinstance(value, dict):
        return ", ".join(f"{name}: {MASK}" for name in value)
    return MASK


def credential_masks(kind: str, stored: Any, kinds: Kinds | None = None) -> list[tuple[str, str]]:
    """(key, mask) for each secret key of the vendor (or source kind), as stored; a destination function's
    secrets are its sensitive settings, by name (declared by the function, not the vendor)."""
    if kind == "function" and kinds is None:
        if isinstance(stored, Undecryptable):
            return [("credentials", CANNOT_DECRYPT)]
        return [(name, mask(value)) for name, value in (stored if isinstance(stored, dict) else {}).items()]
    found = (kinds if kinds is not None else vendor_kinds()).get(kind)
    if found is None:
        return []
    if isinstance(stored, Undecryptable):
        return [(key.name, CANNOT_DECRYPT) for key in credential_keys(found[1])]
    stored = stored if isinstance(stored, dict) else {}
    return [(key.name, mask(stored.get(key.name))) for key in credential_keys(found[1])]


class CredentialsWidget(forms.Widget):
    """One input per secret key of each vendor (or source kind); it renders whether a key is set, never its
    value. The page's script shows the chosen vendor's inputs only."""

    stored: Any = None  # the saved secrets (for the masks), set by the form
    none_text: dict[str, str] = {}  # vendor -> what its group says instead of "No credentials needed.", set by the form

    def __init__(self, kinds: typing.Callable[[], Kinds] = vendor_kinds, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs)
        self.kinds = kinds

    def id_for_label(self, id_: str) -> str:
        return ""  # every input has a label of its own

    def render(self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None) -> SafeString:
        # Unbound, `value` holds the stored secrets: it is never rendered. Bound, it is what was typed.
        groups = [self._group(name, key, label, cls) for key, (label, cls) in self.kinds().items()]
        typed = _is_submitted(value) and any(v.strip() for g in value.values() for v in g["values"].values())
        notice = format_html(
            '<div class="credential-notice">{}</div>',
            "Type the credentials again: what you typed is not sent back to the page.",
        )
        return format_html(
            '<div class="credentials">{}{}</div>',
            notice if typed else "",
            format_html_join("", "{}", ((g,) for g in groups)),
        )

    def _group(self, name: str, vendor_key: str, label: str, secrets_class: type) -> SafeString:
        rows = [self._row(f"{name}__{vendor_key}", key) for key in credential_keys(secrets_class)]
        body = (
            format_html_join("", "{}", ((r,) for r in rows))
            if rows
            else format_html(
                '<div class="credential-none">{}</div>', self.none_text.get(vendor_key, "No credentials needed.")
            )
        )
        return format_html(
            '<div class="credential-group" data-vendor="{}"><div class="credential-vendor">{}</div>{}</div>',
            vendor_key,
            label,
            body,
        )

    def _row(self, prefix: str, key: CredentialKey) -> SafeString:
        locked = isinstance(self.stored, Undecryptable)
        stored = self.stored if isinstance(self.stored, dict) else {}
        state = CANNOT_DECRYPT if locked else mask(stored.get(key.name))
        is_set = not locked and state != "not set"
        input_name = f"{prefix}__{key.name}"
        if is_set:
            placeholder = "Blank keeps the stored value"
        elif key.required:
            placeholder = "Required"
        else:
            placeholder = "Optional"
        if key.text:
            field = format_html(
                '<input type="password" name="{}" id="id_{}" class="vTextField" autocomplete="new-password" '
                'spellcheck="false" placeholder="{}">',
                input_name,
                input_name,
                placeholder,
            )
        else:
            field = format_html(
                '<textarea name="{}" id="id_{}" class="vLargeTextField json" rows="2" spellcheck="false" '
                'placeholder="{}"></textarea>',
                input_name,
                input_name,
                placeholder + ' (JSON, e.g. {"X-Api-Key": "…"})',
            )
        remove = ""
        if is_set and not key.required:
            remove = format_html(
                '<label class="credential-remove"><input type="checkbox" name="{}__remove"> Remove</label>', input_name
            )
        # The label names the key, so the state beside the input is the mask alone.
        return format_html(
            '<div class="credential"><label for="id_{}">{}:</label>{}'
            '<span class="credential-state{}" data-key="{}">{}{}</span></div>',
            input_name,
            key.name,
            field,
            " is-set" if is_set else " cannot-decrypt" if locked else "",
            key.name,
            state,
            remove,
        )

    def value_from_datadict(self, data: Any, files: Any, name: str) -> dict[str, dict[str, Any]]:
        """{vendor: {"values": {key: text}, "remove": {key, …}}} as typed; blank means keep."""
        submitted: dict[str, dict[str, Any]] = {}
        for vendor_key, (_, secrets_class) in self.kinds().items():
            values, remove = {}, set()
            for key in credential_keys(secrets_class):
                input_name = f"{name}__{vendor_key}__{key.name}"
                values[key.name] = data.get(input_name, "")
                if data.get(f"{input_name}__remove"):
                    remove.add(key.name)
            submitted[vendor_key] = {"values": values, "remove": remove}
        return submitted

    def value_omitted_from_data(self, data: Any, files: Any, name: str) -> bool:
        return False  # the form always decides the credentials, even when the result is empty


def _is_submitted(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(g, dict) and "values" in g for g in value.values())


class CredentialsField(forms.Field):
    widget = CredentialsWidget

    def has_changed(self, initial: Any, data: Any) -> bool:
        return any(
            any(v.strip() for v in group["values"].values()) or group["remove"] for group in (data or {}).values()
        )


def merge_secrets(kinds: Kinds, kind: str | None, field: str, submitted: Any, stored: Any) -> Any:
    """The secrets to save: what was typed for the chosen vendor (or source kind) merged into what is stored;
    blank keeps a value, "Remove" drops an optional one, JSON keys are parsed."""
    found = kinds.get(kind or "")
    if found is None:
        return stored  # the vendor (kind) field reports the problem, or the kind has no secrets
    typed = (submitted or {}).get(kind, {"values": {}, "remove": set()})
    locked = isinstance(stored, Undecryptable)
    kept = stored if isinstance(stored, dict) else {}
    secrets: dict[str, Any] = {}
    errors = []
    for key in credential_keys(found[1]):
        raw = typed["values"].get(key.name, "").strip()  # pasted secrets often carry a newline
        if key.name in typed["remove"]:
            continue
        if not raw:
            if key.name in kept:
                secrets[key.name] = kept[key.name]
            continue
        if key.text:
            secrets[key.name] = raw
            continue
        try:
            secrets[key.name] = load_json(raw)
        except json.JSONDecodeError as exc:
            errors.append(f"{field}.{key.name}: this is not valid JSON: {exc.msg} (column {exc.colno}).")
    if errors:
        raise ValidationError(errors)
    if locked and not secrets:
        return stored  # nothing typed: the model reports that the stored value cannot be decrypted
    return secrets

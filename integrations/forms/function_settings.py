"""A function's settings as a destination gives them: one input per setting the function declares, plain values
kept as JSON (config.settings, insert_settings), sensitive ones write-only like credentials (blank keeps what is
stored; they are never rendered), grouped by function so the page shows the chosen function's inputs only."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from integrations.crypto import CANNOT_DECRYPT, Undecryptable
from integrations.forms.fields import load_json
from integrations.forms.secrets import mask

INTEGER = re.compile(r"^[+-]?\d+$")
PLACEHOLDERS = {
    "array": "One item per line, or a JSON list",
    "text_map": "One key: value per line, or a JSON object",
    "number": "A number",
}


def parse_value(kind: str, raw: str) -> Any:
    """A plain setting's value from what was typed (None: not given); ValueError says what to type instead."""
    if kind == "boolean":
        return raw.strip().lower() in ("on", "true", "1", "yes")
    text = raw.strip()
    if not text:
        return None
    if kind == "number":
        try:
            return int(text) if INTEGER.match(text) else float(text)
        except ValueError:
            raise ValueError("must be a number, e.g. 30 or 2.5") from None
    if kind == "array":
        if text.startswith("["):
            value = _json(text, list, "a JSON list")
            return value
        return [line.strip() for line in text.splitlines() if line.strip()]
    if kind == "text_map":
        if text.startswith("{"):
            value = _json(text, dict, "a JSON object")
            return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}
        pairs = {}
        for line in text.splitlines():
            if line.strip():
                key, sep, value = line.partition(":")
                if not sep or not key.strip():
                    raise ValueError(f"write one key: value per line ({line.strip()!r} has no key)")
                pairs[key.strip()] = value.strip()
        return pairs
    return raw if kind == "text" else text


def _json(text: str, kind: type, described: str) -> Any:
    try:
        value = load_json(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"this is not valid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(value, kind):
        raise ValueError(f"must be {described}")
    return value


def show_value(kind: str, value: Any) -> str:
    """A stored plain value as its input shows it (the inverse of parse_value)."""
    if value is None:
        return ""
    if kind == "array" and isinstance(value, list) and all(isinstance(v, str) and "\n" not in v for v in value):
        return "\n".join(value)
    if kind == "text_map" and isinstance(value, dict):
        return "\n".join(f"{k}: {v}" for k, v in value.items())
    return value if isinstance(value, str) else json.dumps(value)


@dataclass
class Typed:
    """What was typed for one function: plain values, secret values (blank keeps), secrets to remove."""

    plain: dict[str, str] = field(default_factory=dict)
    secret: dict[str, str] = field(default_factory=dict)
    remove: set[str] = field(default_factory=set)
    kinds: dict[str, str] = field(default_factory=dict)  # each plain setting's declared type


def merge_values(
    declared: Iterable[dict[str, Any]], typed: Typed, stored_secret: Any, where: tuple[str, str]
) -> tuple[dict[str, Any], Any]:
    """The plain values and the secrets to save: plain ones as typed, secrets typed over what is stored (blank
    keeps, "Remove" drops an optional one). `stored_secret` holds this function's stored secrets only."""
    plain: dict[str, Any] = {}
    secret: dict[str, Any] = {}
    errors: list[str] = []
    locked = isinstance(stored_secret, Undecryptable)
    kept = stored_secret if isinstance(stored_secret, dict) else {}
    for item in declared:
        name = item.get("name")
        if not isinstance(name, str):
            continue
        if item.get("sensitive"):
            raw = typed.secret.get(name, "").strip()  # pasted secrets often carry a newline
            if name in typed.remove:
                continue
            if raw:
                secret[name] = raw
            elif name in kept:
                secret[name] = kept[name]
            continue
        try:
            value = parse_value(str(item.get("type") or "string"), typed.plain.get(name, ""))
        except ValueError as exc:
            errors.append(f"{where[0]}.{name}: {exc}")
            continue
        if value is not None:
            plain[name] = value
    if errors:
        raise ValidationError(errors)
    if locked and not secret:
        return plain, stored_secret  # nothing typed: the model reports that the stored value cannot be decrypted
    return plain, secret


class FunctionSettingsWidget(forms.Widget):
    """The declared settings of every function of a kind, grouped by the value the function's <select> takes; the
    page's script shows the group of the chosen function. Sensitive inputs say whether a value is stored, never
    the value, and are left out for someone who may not set secrets."""

    def __init__(self, functions: Callable[[], Iterable[Any]], key: Callable[[Any], str], follows: str) -> None:
        super().__init__()
        self.functions, self.key, self.follows = functions, key, follows
        self.stored_key = ""  # the group of the stored function: the only one shown with stored values
        self.stored_plain: Any = {}
        self.stored_secret: Any = {}
        self.secrets_shown = True

    def id_for_label(self, id_: str) -> str:
        return ""  # every input has a label of its own

    def render(self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None) -> SafeString:
        submitted = value if isinstance(value, dict) and all(isinstance(v, Typed) for v in value.values()) else None
        groups = [self._group(name, function, submitted) for function in self.functions()]
        typed = submitted is not None and any(t.secret.get(k, "").strip() for t in submitted.values() for k in t.secret)
        notice = format_html(
            '<div class="credential-notice">{}</div>',
            "Type the secret values again: they are not sent back to the page.",
        )
        return format_html(
            '<div class="function-settings" data-follows="{}">{}{}</div>',
            self.follows,
            notice if typed else "",
            format_html_join("", "{}", ((g,) for g in groups)),
        )

    def _group(self, name: str, function: Any, submitted: dict[str, Typed] | None) -> SafeString:
        key = self.key(function)
        typed = submitted.get(key) if submitted is not None else None
        stored = key == self.stored_key
        rows = [self._row(f"{name}__{key}", item, typed, stored) for item in function.declared()]
        body = (
            format_html_join("", "{}", ((r,) for r in rows))
            if rows
            else format_html('<div class="credential-none">{}</div>', "This function declares no settings.")
        )
        return format_html(
            '<div class="credential-group function-settings-group" data-function="{}"{}>{}</div>',
            key,
            "" if stored else " hidden",  # the script shows the chosen function's group; without it, the stored one
            body,
        )

    def _row(self, prefix: str, item: dict[str, Any], typed: Typed | None, stored: bool) -> SafeString:
        setting, kind = str(item.get("name")), str(item.get("type") or "string")
        label = format_html(
            '<label for="id_{}__{}"{}>{}:</label>',
            prefix,
            setting,
            ' class="required"' if item.get("required") else "",
            item.get("label") or setting,
        )
        help_text = format_html(
            '<div class="function-setting-help"><code>{}</code>{}{}</div>',
            setting,
            " · sensitive, stored encrypted" if item.get("sensitive") else "",
            format_html(" · {}", item["description"]) if item.get("description") else "",
        )
        if item.get("sensitive"):
            field = self._secret(prefix, setting, item, stored)
        else:
            shown = typed.plain.get(setting, "") if typed is not None else ""
            if typed is None and stored and isinstance(self.stored_plain, dict):
                shown = show_value(kind, self.stored_plain.get(setting))
            field = self._plain(f"{prefix}__{setting}", kind, shown, typed is not None or stored)
        return format_html('<div class="credential function-setting">{}{}{}</div>', label, field, help_text)

    def _plain(self, input_name: str, kind: str, shown: str, known: bool) -> SafeString:
        if kind == "boolean":
            checked = known and parse_value("boolean", str(shown))
            return format_html(
                '<span><input type="checkbox" name="{}" id="id_{}"{}></span>',
                input_name,
                input_name,
                " checked" * checked,
            )
        if kind in ("text", "array", "text_map"):
            return format_html(
                '<textarea name="{}" id="id_{}" class="vLargeTextField" rows="3" spellcheck="false" placeholder="{}">'
                "\n{}</textarea>",
                input_name,
                input_name,
                PLACEHOLDERS.get(kind, ""),
                shown,
            )
        return format_html(
            '<input type="text" name="{}" id="id_{}" class="vTextField" value="{}" placeholder="{}"{}>',
            input_name,
            input_name,
            shown,
            PLACEHOLDERS.get(kind, ""),
            ' inputmode="decimal"' if kind == "number" else "",
        )

    def _secret(self, prefix: str, setting: str, item: dict[str, Any], stored: bool) -> SafeString:
        locked = stored and isinstance(self.stored_secret, Undecryptable)
        values = self.stored_secret if stored and isinstance(self.stored_secret, dict) else {}
        state = CANNOT_DECRYPT if locked else mask(values.get(setting))
        is_set = not locked and state != "not set"
        if not self.secrets_shown:
            text = "stored — only an administrator can see or change it" if is_set else "not set"
            return format_html('<span class="credential-hidden">{}</span>', text)
        input_name = f"{prefix}__secret__{setting}"
        placeholder = "Blank keeps the stored value" if is_set else "Required" if item.get("required") else "Optional"
        remove = ""
        if is_set and not item.get("required"):
            remove = format_html(
                '<label class="credential-remove"><input type="checkbox" name="{}__remove"> Remove</label>', input_name
            )
        return format_html(
            '<span><input type="password" name="{}" id="id_{}__{}" class="vTextField" autocomplete="new-password" '
            'spellcheck="false" placeholder="{}"> <span class="credential-state{}">{}</span>{}</span>',
            input_name,
            prefix,
            setting,
            placeholder,
            " is-set" if is_set else " cannot-decrypt" if locked else "",
            state,
            remove,
        )

    def value_from_datadict(self, data: Any, files: Any, name: str) -> dict[str, Typed]:
        """{function key: Typed} for every function, as typed; a blank secret means keep."""
        submitted: dict[str, Typed] = {}
        for function in self.functions():
            key = self.key(function)
            prefix = f"{name}__{key}"
            typed = Typed()
            for item in function.declared():
                setting = str(item.get("name"))
                if item.get("sensitive"):
                    typed.secret[setting] = data.get(f"{prefix}__secret__{setting}", "")
                    if data.get(f"{prefix}__secret__{setting}__remove"):
                        typed.remove.add(setting)
                else:
                    typed.plain[setting] = data.get(f"{prefix}__{setting}", "")
                    typed.kinds[setting] = str(item.get("type") or "string")
            submitted[key] = typed
        return submitted

    def value_omitted_from_data(self, data: Any, files: Any, name: str) -> bool:
        return False  # the form always decides the values, even when the result is empty


class FunctionSettingsField(forms.Field):
    """The typed values by function; the form merges the chosen function's into what is stored."""

    def __init__(self, widget: FunctionSettingsWidget, **kwargs: Any) -> None:
        super().__init__(widget=widget, required=False, **kwargs)

    def has_changed(self, initial: Any, data: Any) -> bool:
        widget: FunctionSettingsWidget = self.widget  # type: ignore[assignment]
        typed = (data or {}).get(widget.stored_key) if widget.stored_key else None
        if typed is None:  # no function stored: changed once something is typed for one
            return any(any(v.strip() for v in (*t.plain.values(), *t.secret.values())) for t in (data or {}).values())
        if any(v.strip() for v in typed.secret.values()) or typed.remove:
            return True
        stored = widget.stored_plain if isinstance(widget.stored_plain, dict) else {}
        for name, raw in typed.plain.items():
            try:
                if parse_value(typed.kinds.get(name, "string"), raw) != stored.get(name):
                    return True
            except ValueError:
                return True
        return False

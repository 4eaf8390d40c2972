"""The destination and source forms: JSON settings people can read, and secrets (a destination's credentials, a
source's signing secret) that are written but never shown again."""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from typing import Any

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.forms.fields import InvalidJSONInput, JSONString
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from integrations.crypto import CANNOT_DECRYPT, MASK, Undecryptable
from integrations.models import Destination, Source
from integrations.vendors import VENDORS, Vendor
from integrations.webhooks import FUNCTIONS

# What a secrets widget offers, per vendor (or source kind): its label and the dataclass of its secrets.
Kinds = dict[str, tuple[str, type]]


def vendor_kinds() -> Kinds:
    return {key: (vendor.label, vendor.credentials_class) for key, vendor in VENDORS.items()}


def function_kinds() -> Kinds:
    return {kind: (function.label, function.secrets_class) for kind, function in FUNCTIONS.items()}


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
    """(key, mask) for each secret key of the vendor (or source kind), as stored."""
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
            else format_html('<div class="credential-none">{}</div>', "No credentials needed.")
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


class PrettyJSONField(forms.JSONField):
    """JSON in a textarea, indented; blank is an empty object; a syntax error says where it is."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["widget"] = forms.Textarea(attrs={"rows": 5, "class": "vLargeTextField json", "spellcheck": "false"})
        super().__init__(*args, **kwargs)

    def to_python(self, value: Any) -> Any:
        if self.disabled:
            return value
        if value in self.empty_values:
            return {}
        if isinstance(value, list | dict | int | float | JSONString):
            return value
        try:
            converted = json.loads(value, cls=self.decoder)
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"This is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).", code="invalid"
            ) from None
        if converted is None:
            return {}  # the columns are not nullable: null means "nothing", like blank
        return JSONString(converted) if isinstance(converted, str) else converted

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, InvalidJSONInput):
            return value
        if value in (None, {}):
            return ""
        return json.dumps(value, ensure_ascii=False, indent=2, cls=self.encoder)


class CategoriesField(forms.CharField):
    """A list of names typed as "Advertising, Analytics"."""

    def prepare_value(self, value: Any) -> Any:
        return ", ".join(str(v) for v in value) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[str]:
        return [part.strip() for part in super().to_python(value).split(",") if part.strip()]


def _default(f: dataclasses.Field) -> str:
    value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return json.dumps(value)


def vendor_help(describe: typing.Callable[[Any], str], registry: dict[str, Any] | None = None) -> SafeString:
    """One line of help per vendor (or source kind); the page's script shows only the chosen one's."""
    return format_html_join(
        "",
        '<span class="vendor-help" data-vendor="{}"><b>{}</b>: {}</span>',
        ((key, item.label, describe(item)) for key, item in (VENDORS if registry is None else registry).items()),
    )


def describe_config(vendor: Any) -> str:
    """The config keys of a vendor or source function, with their defaults."""
    parts = [
        f"{f.name} (required)"
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        # A field default is a plain JSON value here: strings, numbers, {} and [].
        else f"{f.name} (default {_default(f)})"
        for f in dataclasses.fields(vendor.config_class)
    ]
    return ", ".join(parts) if parts else "no settings"


def describe_mapping(vendor: type[Vendor]) -> str:
    if not vendor.default_mapping:
        return "blank sends the event as it is"
    return "blank uses " + json.dumps(vendor.default_mapping)


def vendor_presets(vendors: dict[str, type[Vendor]] | None = None) -> SafeString:
    """A button per preset of each vendor (e.g. "Welcome journey on identify"); the page's script fills the
    filter and mapping with the preset's, to edit before saving."""
    buttons = [
        (
            key,
            json.dumps(preset.get("filter") or {}, indent=2),
            json.dumps(preset.get("mapping") or {}, indent=2),
            preset["label"],
        )
        for key, vendor in (VENDORS if vendors is None else vendors).items()
        for preset in getattr(vendor, "presets", {}).values()
    ]
    if not buttons:
        return SafeString("")
    return format_html(
        '<span class="presets">Start from a preset (fills the filter and the mapping): {}</span>',
        format_html_join(
            " ",
            '<button type="button" class="button preset" data-vendor="{}" data-filter="{}" data-mapping="{}">{}'
            "</button>",
            buttons,
        ),
    )


class DestinationForm(forms.ModelForm):
    credentials = CredentialsField(
        required=False,
        help_text="Stored encrypted and never shown again. Leave a field blank to keep what is stored.",
    )
    consent_categories = CategoriesField(
        required=False,
        help_text="Comma-separated, e.g. Advertising, Analytics. An event is sent only if the user granted all of "
        "them in context.consent.categoryPreferences (events without consent preferences are sent).",
    )

    class Meta:
        model = Destination
        fields = [
            "name",
            "slug",
            "vendor",
            "sources",
            "enabled",
            "paused",
            "config",
            "credentials",
            "mapping",
            "filter",
            "consent_categories",
            "rate_limit",
            "rate_period",
            "concurrency",
            "timeout",
            "retry_deadline",
        ]
        field_classes = {"config": PrettyJSONField, "filter": PrettyJSONField, "mapping": PrettyJSONField}
        help_texts = {
            "filter": 'Which events pass, e.g. {"types": ["track", "identify"], "events": ["Order Completed"], '
            '"condition": "properties.total > `100`"}. Every part is optional: blank lets all events through.',
            "retry_deadline": "Stop retrying an event this long after it was received: hours:minutes:seconds "
            "(4:00:00), or days hours:minutes:seconds (2 00:00:00).",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "credentials" in self.fields:
            self.fields["credentials"].widget.stored = self.instance.credentials if self.instance.pk else {}
        if "config" in self.fields:
            self.fields["config"].help_text = vendor_help(describe_config)
        if "mapping" in self.fields:
            # Without the vendor field (a marketer's page) there is no vendor to switch to: its help alone.
            vendors = (
                None if "vendor" in self.fields else {k: v for k, v in VENDORS.items() if k == self.instance.vendor}
            )
            self.fields["mapping"].help_text = format_html(
                "JMESPath expressions over the event, e.g. {}. {}{}",
                '{"email": "traits.email || properties.email"}',
                vendor_help(describe_mapping, vendors),
                vendor_presets(vendors),
            )

    def clean_credentials(self) -> Any:
        """Merge what was typed into what is stored: blank keeps a value, "Remove" drops an optional one."""
        stored = self.instance.credentials if self.instance.pk else {}
        return merge_secrets(
            vendor_kinds(), self.cleaned_data.get("vendor"), "credentials", self.cleaned_data.get("credentials"), stored
        )

    def _update_errors(self, errors: ValidationError) -> None:
        """Drop the model's complaints about a field the form already refused: they are about the old value."""
        if hasattr(errors, "error_dict"):
            kept: dict[str, list[ValidationError]] = {}
            for field, found in errors.error_dict.items():
                if field in self._errors:
                    continue
                if field != NON_FIELD_ERRORS and field not in self.fields:
                    # A field this person may not change (a marketer's page: credentials, config). A change saves
                    # only the form's fields, so the problem stays as it was, the administrator's to fix; a new
                    # destination would be saved with it, so there it is shown above the form.
                    if self.instance.pk:
                        continue
                    field = NON_FIELD_ERRORS
                kept.setdefault(field, []).extend(found)
            if not kept:
                return
            errors = ValidationError(kept)
        super()._update_errors(errors)


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
            secrets[key.name] = json.loads(raw)
        except json.JSONDecodeError as exc:
            errors.append(f"{field}.{key.name}: this is not valid JSON: {exc.msg} (column {exc.colno}).")
    if errors:
        raise ValidationError(errors)
    if locked and not secrets:
        return stored  # nothing typed: the model reports that the stored value cannot be decrypted
    return secrets


class SourceForm(forms.ModelForm):
    """A source: for webhook kinds, how its function reads the tool's webhooks and its signing secret."""

    settings = CredentialsField(
        required=False,
        widget=CredentialsWidget(function_kinds),
        help_text="Stored encrypted and never shown again. Leave a field blank to keep what is stored. Without a "
        "signing secret, requests are not verified: anyone with the webhook URL can post events.",
    )

    class Meta:
        model = Source
        fields = ["name", "slug", "kind", "write_key", "enabled", "config", "settings"]
        field_classes = {"config": PrettyJSONField}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "settings" in self.fields:
            self.fields["settings"].label = "Signing secret"
            self.fields["settings"].widget.stored = self.instance.settings if self.instance.pk else {}
        if "config" in self.fields:
            self.fields["config"].help_text = format_html(
                "For webhook sources only. {}", vendor_help(describe_config, FUNCTIONS)
            )

    def clean_settings(self) -> Any:
        stored = self.instance.settings if self.instance.pk else {}
        return merge_secrets(
            function_kinds(), self.cleaned_data.get("kind"), "settings", self.cleaned_data.get("settings"), stored
        )

    def _update_errors(self, errors: ValidationError) -> None:
        """A problem with the signing secret, for someone whose form has no secret input: shown above the form
        (Django refuses an error for a field the form does not have)."""
        if hasattr(errors, "error_dict") and "settings" in errors.error_dict and "settings" not in self.fields:
            moved = dict(errors.error_dict)
            moved.setdefault(NON_FIELD_ERRORS, []).extend(
                ValidationError(f"{message} (only an administrator can change the signing secret)")
                for message in ValidationError(moved.pop("settings")).messages
            )
            errors = ValidationError(moved)
        super()._update_errors(errors)

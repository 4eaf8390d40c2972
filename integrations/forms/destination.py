"""The destination form: each vendor's settings explained from its own declaration (config keys and defaults,
default mapping, presets), credentials as write-only inputs, and a function's settings one input each
(destination_functions.py)."""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from integrations import vendors
from integrations.forms.destination_functions import FunctionInputs
from integrations.forms.fields import CategoriesField, PrettyJSONField
from integrations.forms.secrets import CredentialsField, merge_secrets, vendor_kinds
from integrations.models import Destination
from integrations.vendors.contract import Vendor


def _default(f: dataclasses.Field) -> str:
    value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return json.dumps(value)


def vendor_help(describe: typing.Callable[[Any], str], registry: dict[str, Any] | None = None) -> SafeString:
    """One line of help per vendor (or source kind); the page's script shows only the chosen one's."""
    return format_html_join(
        "",
        '<span class="vendor-help" data-vendor="{}"><b>{}</b>: {}</span>',
        (
            (key, item.label, describe(item))
            for key, item in (vendors.VENDORS if registry is None else registry).items()
        ),
    )


def describe_config(vendor: Any) -> str:
    """The config keys of a vendor or source function, with their defaults."""
    if getattr(vendor, "key", "") == "function":
        return "batch_size (default 20: the most events one onBatch call takes); choose the function below"
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


def vendor_presets(registry: dict[str, type[Vendor]] | None = None) -> SafeString:
    """A button per preset of each vendor (e.g. "Welcome journey on identify"); the page's script fills the
    filter and mapping with the preset's, to edit before saving."""
    buttons = [
        (
            key,
            json.dumps(preset.get("filter") or {}, indent=2),
            json.dumps(preset.get("mapping") or {}, indent=2),
            preset["label"],
        )
        for key, vendor in (vendors.VENDORS if registry is None else registry).items()
        for preset in vendor.presets.values()
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


class DestinationForm(FunctionInputs, forms.ModelForm):
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
            "insert_function",
            "filter",
            "consent_categories",
            "rate_mode",
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
        self.set_up_functions()
        if "rate_mode" in self.fields:  # a form posted without it (an older page, a script) keeps what is stored
            self.fields["rate_mode"].required = False
            self.fields["rate_mode"].choices = Destination.RateMode.choices
        if "config" in self.fields:
            self.fields["config"].help_text = vendor_help(describe_config)
        if "mapping" in self.fields:
            # Without the vendor field (a marketer's page) there is no vendor to switch to: its help alone.
            found = vendors.VENDORS.get(self.instance.vendor)
            shown = None if "vendor" in self.fields else {self.instance.vendor: found} if found else {}
            self.fields["mapping"].help_text = format_html(
                "JMESPath expressions over the event, e.g. {}. {}{}",
                '{"email": "traits.email || properties.email"}',
                vendor_help(describe_mapping, shown),
                vendor_presets(shown),
            )

    def clean_rate_mode(self) -> str:
        return self.cleaned_data.get("rate_mode") or self.instance.rate_mode or Destination.RateMode.ADAPTIVE

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
            for field, found in self.moved_errors(errors.error_dict).items():
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

"""The destination form's function inputs: for a destination function (vendor "function"), which function and
one input per setting it declares (plain ones into config.settings, sensitive ones into credentials); on every
destination, an optional insert function with its settings (insert_settings, insert_secrets). Secrets are
write-only, as the vendors' credentials are."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from integrations.forms.function_settings import FunctionSettingsField, FunctionSettingsWidget, Typed, merge_values
from integrations.models import Function

# Set by the function's own inputs on the form, not typed into the config JSON.
FUNCTION_KEYS = ("function", "settings")
# The model's messages about what an input stands for, shown beside that input.
MOVED_ERRORS = {"insert_settings": "insert_values", "insert_secrets": "insert_values"}
FIELDS = ("function", "function_settings", "insert_values")  # declared here: none is a model field


class FunctionInputs(forms.Form):
    """Mixed into DestinationForm; "credentials" in the form says whether this person may set secrets."""

    function = forms.ModelChoiceField(
        queryset=Function.objects.filter(kind=Function.Kind.DESTINATION),
        to_field_name="slug",
        required=False,
        help_text="The destination function (JavaScript) that sends this destination's events.",
    )
    function_settings = FunctionSettingsField(
        FunctionSettingsWidget(
            lambda: Function.objects.filter(kind=Function.Kind.DESTINATION).only("slug", "settings"),
            key=lambda f: f.slug,
            follows="id_function",
        ),
        label="Function settings",
        help_text="What the function reads from its settings argument. Sensitive ones are stored encrypted and never "
        "shown again: leave one blank to keep what is stored.",
    )
    insert_values = FunctionSettingsField(
        FunctionSettingsWidget(
            lambda: Function.objects.filter(kind=Function.Kind.INSERT).only("pk", "settings"),
            key=lambda f: str(f.pk),
            follows="id_insert_function",
        ),
        label="Insert function settings",
        help_text="Sensitive ones are stored encrypted and never shown again: leave one blank to keep what is stored.",
    )

    def set_up_functions(self) -> None:
        """The inputs start from what is stored; the config JSON leaves out what they show."""
        self.insert_values_cleaned: tuple[dict[str, Any], Any] | None = None
        stored = self.instance
        config = stored.config if isinstance(stored.config, dict) else {}
        is_function = stored.pk is not None and stored.vendor == "function"
        if is_function and "config" in self.fields:
            self.initial["config"] = {k: v for k, v in config.items() if k not in FUNCTION_KEYS}
            self.initial["function"] = config.get("function")
        secrets_shown = "credentials" in self.fields
        if "credentials" in self.fields:
            self.fields["credentials"].widget.none_text = {
                "function": "A function's sensitive settings are given with its settings, above."
            }
        if "function_settings" in self.fields:
            widget = self.fields["function_settings"].widget
            widget.stored_key = str(config.get("function") or "") if is_function else ""
            widget.stored_plain = config.get("settings") or {}
            widget.stored_secret = stored.credentials if is_function else {}
            widget.secrets_shown = secrets_shown
        if "insert_values" in self.fields:
            widget = self.fields["insert_values"].widget
            widget.stored_key = str(stored.insert_function_id or "")
            widget.stored_plain = stored.insert_settings
            widget.stored_secret = stored.insert_secrets if stored.pk else {}
            widget.secrets_shown = secrets_shown

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("vendor") == "function" and "function_settings" in self.fields:
            self._clean_function(cleaned)
        if "insert_values" in self.fields:
            function = cleaned.get("insert_function")
            if function is None:
                self.insert_values_cleaned = ({}, {})
            else:
                same = str(function.pk) == self.fields["insert_values"].widget.stored_key
                where = ("insert_settings", "insert_secrets")
                self.insert_values_cleaned = self._merged("insert_values", function, where, same)
        return cleaned

    def _clean_function(self, cleaned: dict[str, Any]) -> None:
        """The chosen function and its settings into config, its sensitive settings into credentials."""
        config = cleaned.get("config")
        function = cleaned.get("function")
        if not isinstance(config, dict) or function is None:
            return  # the model says what is wrong (perhaps {"function": …} was typed into the JSON: it checks that)
        same = function.slug == self.fields["function_settings"].widget.stored_key
        found = self._merged("function_settings", function, ("config.settings", "credentials"), same)
        if found is None:
            return
        plain, secrets = found
        typed = config.get("settings")
        config = {**config, "function": function.slug}
        config["settings"] = {**(typed if isinstance(typed, dict) else {}), **plain}
        cleaned["config"] = config
        if "credentials" in self.fields:
            cleaned["credentials"] = secrets

    def _merged(
        self, field: str, function: Function, where: tuple[str, str], same: bool
    ) -> tuple[dict[str, Any], Any] | None:
        widget = self.fields[field].widget
        typed = (self.cleaned_data.get(field) or {}).get(widget.key(function), Typed())
        try:
            return merge_values(function.declared(), typed, widget.stored_secret if same else {}, where)
        except ValidationError as exc:
            self.add_error(field, exc)
            return None

    def _post_clean(self) -> None:
        if self.insert_values_cleaned is not None:
            # Not fields of the form (insert_values stands for both): set before the model checks them.
            self.instance.insert_settings = self.insert_values_cleaned[0]
            if "credentials" in self.fields:
                self.instance.insert_secrets = self.insert_values_cleaned[1]
        super()._post_clean()

    def moved_errors(self, errors: dict[str, list[ValidationError]]) -> dict[str, list[ValidationError]]:
        """The model's messages about settings a function input gives, filed under that input."""
        moved: dict[str, list[ValidationError]] = {}
        for field, found in errors.items():
            for error in found:
                moved.setdefault(self._input_of(field, error), []).append(error)
        return moved

    def _input_of(self, field: str, error: ValidationError) -> str:
        if field in MOVED_ERRORS and MOVED_ERRORS[field] in self.fields:
            return MOVED_ERRORS[field]
        if self.cleaned_data.get("vendor") == "function" and "function_settings" in self.fields:
            text = " ".join(error.messages)
            if field == "credentials" or text.startswith("config.settings"):
                return "function_settings"
            if text.startswith("config.function"):
                return "function"
        return field

"""The source form: for webhook kinds, how the source function reads the tool's webhooks and its signing secret;
for a JavaScript source (kind "function"), which function and one input per setting it declares."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.utils.html import format_html

from integrations import webhooks
from integrations.forms.destination import describe_config, vendor_help
from integrations.forms.fields import PrettyJSONField
from integrations.forms.function_settings import FunctionSettingsField, FunctionSettingsWidget, Typed, merge_values
from integrations.forms.secrets import CredentialsField, CredentialsWidget, function_kinds, merge_secrets
from integrations.models import Function, Source

JAVASCRIPT = "function"  # the kind of a source run by a source function (integrations/webhooks/function.py)
SIGNING = "signing_secret"  # kept beside a JavaScript source's sensitive settings in Source.settings


class SourceForm(forms.ModelForm):
    """A source: for webhook kinds, how its function reads the tool's webhooks and its signing secret."""

    settings = CredentialsField(
        required=False,
        widget=CredentialsWidget(function_kinds),
        help_text="Stored encrypted and never shown again. Leave a field blank to keep what is stored. Without a "
        "signing secret, requests are not verified: anyone with the webhook URL can post events.",
    )
    function = forms.ModelChoiceField(
        queryset=Function.objects.filter(kind=Function.Kind.SOURCE),
        to_field_name="slug",
        required=False,
        help_text="For a JavaScript source: the source function (onRequest) that turns each webhook into events.",
    )
    function_settings = FunctionSettingsField(
        FunctionSettingsWidget(
            lambda: Function.objects.filter(kind=Function.Kind.SOURCE).only("slug", "settings"),
            key=lambda f: f.slug,
            follows="id_function",
        ),
        label="Function settings",
        help_text="Sensitive ones are stored encrypted and never shown again: leave one blank to keep what is stored.",
    )

    class Meta:
        model = Source
        fields = ["name", "slug", "kind", "write_key", "enabled", "config", "settings"]
        field_classes = {"config": PrettyJSONField}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        stored = self.instance
        if "settings" in self.fields:
            self.fields["settings"].label = "Signing secret"
            self.fields["settings"].widget.stored = stored.settings if stored.pk else {}
        if "config" in self.fields:
            self.fields["config"].help_text = format_html(
                "For webhook sources only. {}", vendor_help(describe_config, webhooks.FUNCTIONS)
            )
        config = stored.config if isinstance(stored.config, dict) else {}
        javascript = stored.pk is not None and stored.kind == JAVASCRIPT
        if javascript and "config" in self.fields:
            # The function and its plain settings are the inputs' to show, not the JSON's.
            self.initial["config"] = {k: v for k, v in config.items() if k not in ("function", "settings")}
            self.initial["function"] = config.get("function")
        if "function_settings" in self.fields:
            widget = self.fields["function_settings"].widget
            widget.stored_key = str(config.get("function") or "") if javascript else ""
            widget.stored_plain = config.get("settings") or {}
            secrets = stored.settings if javascript else {}
            widget.stored_secret = (
                {k: v for k, v in secrets.items() if k != SIGNING} if isinstance(secrets, dict) else secrets
            )
            widget.secrets_shown = "settings" in self.fields

    def clean_settings(self) -> Any:
        stored = self.instance.settings if self.instance.pk else {}
        return merge_secrets(
            function_kinds(), self.cleaned_data.get("kind"), "settings", self.cleaned_data.get("settings"), stored
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        function, config = cleaned.get("function"), cleaned.get("config")
        if cleaned.get("kind") != JAVASCRIPT or function is None or not isinstance(config, dict):
            return cleaned  # the model says what is missing (perhaps {"function": …} typed into the JSON)
        widget = self.fields["function_settings"].widget
        typed = (cleaned.get("function_settings") or {}).get(function.slug, Typed())
        stored = widget.stored_secret if function.slug == widget.stored_key else {}
        try:
            plain, secrets = merge_values(function.declared(), typed, stored, ("config.settings", "settings"))
        except ValidationError as exc:
            self.add_error("function_settings", exc)
            return cleaned
        given = config.get("settings")
        cleaned["config"] = {
            **config,
            "function": function.slug,
            "settings": {**(given if isinstance(given, dict) else {}), **plain},
        }
        if "settings" in self.fields and isinstance(secrets, dict):
            signing = cleaned.get("settings")
            kept = {SIGNING: signing[SIGNING]} if isinstance(signing, dict) and signing.get(SIGNING) else {}
            cleaned["settings"] = {**secrets, **kept}
        return cleaned

    def _update_errors(self, errors: ValidationError) -> None:
        """A problem with the signing secret, for someone whose form has no secret input: shown above the form
        (Django refuses an error for a field the form does not have). A JavaScript source's settings: beside
        the function's inputs."""
        if hasattr(errors, "error_dict") and "function_settings" in self.fields:
            moved: dict[str, list[ValidationError]] = {}
            for field, found in errors.error_dict.items():
                for error in found:
                    text = " ".join(error.messages)
                    about_values = text.startswith("config.settings") or (
                        field == "settings" and not text.startswith(f"settings.{SIGNING}")
                    )
                    javascript = self.cleaned_data.get("kind") == JAVASCRIPT
                    moved.setdefault("function_settings" if javascript and about_values else field, []).append(error)
            errors = ValidationError(moved)
        if hasattr(errors, "error_dict") and "settings" in errors.error_dict and "settings" not in self.fields:
            moved = dict(errors.error_dict)
            moved.setdefault(NON_FIELD_ERRORS, []).extend(
                ValidationError(f"{message} (only an administrator can change the signing secret)")
                for message in ValidationError(moved.pop("settings")).messages
            )
            errors = ValidationError(moved)
        super()._update_errors(errors)

"""The source form: for webhook kinds, how the source function reads the tool's webhooks and its signing secret."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.utils.html import format_html

from integrations import webhooks
from integrations.forms.destination import describe_config, vendor_help
from integrations.forms.fields import PrettyJSONField
from integrations.forms.secrets import CredentialsField, CredentialsWidget, function_kinds, merge_secrets
from integrations.models import Source


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
                "For webhook sources only. {}", vendor_help(describe_config, webhooks.FUNCTIONS)
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

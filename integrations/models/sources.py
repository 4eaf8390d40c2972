"""Sources: where events come from, an SDK with a write key or a tool's webhook read by its source function."""

from __future__ import annotations

import secrets

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models

from integrations import webhooks
from integrations.crypto import CANNOT_DECRYPT, EncryptedJSONField, Undecryptable
from integrations.functions.declaration import FunctionCode

HTTP = "http"  # the Tracking API's kind; every other kind is a source function's


def new_write_key() -> str:
    return "wk_" + secrets.token_urlsafe(24)


def source_kinds() -> list[tuple[str, str]]:
    """The Tracking API, then every source function's kind (integrations/webhooks)."""
    return [(HTTP, "HTTP Tracking API (Segment / RudderStack SDKs)")] + [
        (kind, function.label) for kind, function in webhooks.FUNCTIONS.items()
    ]


class Source(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=source_kinds, default=HTTP)
    write_key = models.CharField(max_length=100, unique=True, default=new_write_key)
    enabled = models.BooleanField(default=True)
    settings = EncryptedJSONField(help_text="Secret settings (e.g. a signing secret), stored encrypted.")
    config = models.JSONField(
        default=dict, blank=True, help_text="How the source function reads this tool's webhooks (not secret)"
    )
    last_request_at = models.DateTimeField(null=True, blank=True)
    last_request_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_request_result = models.TextField(blank=True, help_text="What the last webhook request came to")
    last_request_body = models.TextField(blank=True, help_text="The start of the last webhook body, to try again")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_webhook(self) -> bool:
        """A tool posts webhooks here, read by the source function of the source's kind."""
        return self.kind in webhooks.FUNCTIONS

    def function_code(self) -> FunctionCode | None:
        """A JavaScript source's function (kind "function": config.function names a source function)."""
        from integrations.models.functions import Function

        slug = (self.config or {}).get("function") if isinstance(self.config, dict) else None
        found = Function.objects.filter(slug=slug, kind="source").first() if isinstance(slug, str) else None
        return found.as_code() if found is not None else None

    def clean(self) -> None:
        """Check a webhook source's settings the way its source function reads them."""
        function = webhooks.FUNCTIONS.get(self.kind)
        if function is None:
            return
        locked = isinstance(self.settings, Undecryptable)
        problems = function.validate(self.config, {} if locked else self.settings)
        if self.kind == "function" and not locked and not problems:
            problems += function.settings_problems(self.function_code(), self.config, self.settings)
        if locked:
            problems.append(f"settings: {CANNOT_DECRYPT} (enter the signing secret again)")
        errors: dict[str, list[str]] = {}
        for problem in problems:
            name = problem.split(".", 1)[0].split(":", 1)[0]
            errors.setdefault(name if name in ("config", "settings") else NON_FIELD_ERRORS, []).append(problem)
        if errors:
            raise ValidationError(errors)

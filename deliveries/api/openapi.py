"""What drf-spectacular cannot read from the views alone: the Bearer API token as a security scheme, and choice
sets documented under names of their own (EventStatus, DeliveryStatus, ReplayStatus …: several resources have a
`status`, each with its own choices, which spectacular would otherwise name by a hash and warn about)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerFieldExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from rest_framework import serializers


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "deliveries.api.auth.BearerTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        scheme = build_bearer_security_scheme_object(header_name="Authorization", token_prefix="Bearer")
        return {**scheme, "description": "An API token (admin → API tokens): `Authorization: Bearer cdp_…`."}


class NamedChoiceField(serializers.ChoiceField):
    """A choice field whose choice set is one named component of the schema; a bad value's message lists the
    choices there are."""

    def __init__(self, choices: Any, *, enum: str, what: str = "one of the choices", **kwargs: Any) -> None:
        self.enum_name = enum
        kwargs.setdefault("required", False)
        values = ", ".join(str(value) for value, _ in choices)
        kwargs.setdefault("error_messages", {"invalid_choice": f'"{{input}}" is not {what}: use one of {values}.'})
        super().__init__(choices=choices, **kwargs)


class NamedChoiceFieldSchema(OpenApiSerializerFieldExtension):
    target_class = NamedChoiceField
    match_subclasses = True

    def get_name(self) -> str:
        return self.target.enum_name

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.target.choices)}

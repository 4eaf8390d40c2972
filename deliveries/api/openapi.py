"""How the OpenAPI document describes the API token: a Bearer scheme, so Swagger UI's Authorize button takes one."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "deliveries.api.auth.BearerTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token (create one in the admin under API tokens): `Authorization: Bearer <token>`",
        }

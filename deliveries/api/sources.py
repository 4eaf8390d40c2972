"""/api/v1/sources: where events come from, by slug. The write key and a webhook source's signing secret are
write-only, and only an administrator may set them; the rest is checked by Source.clean(), as in the admin."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from deliveries.api.pagination import Cursor
from deliveries.api.secrets import (
    HOW,
    STATE_SCHEMA,
    SecretsField,
    declared_by,
    declared_by_function,
    merged,
    refuse_fields,
    sees_secrets,
    stored_state,
)
from deliveries.api.serializers import ENABLED, StrictModelSerializer, strict_boolean
from integrations import webhooks
from integrations.crypto import Undecryptable
from integrations.models import Source

SECRET_FIELDS = ("write_key", "settings")
WRITE_KEY_HELP = (
    "Write-only. Left out on create, one is generated; either way the create answer carries it, once (later, an "
    "administrator reads it on the source's admin page or with `manage.py export_workspace`). Give the write key "
    "of the Segment source you move here and your apps need no change. It cannot be changed later."
)


def secrets_class(kind: str) -> type | None:
    function = webhooks.FUNCTIONS.get(kind)
    return function.secrets_class if function is not None else None


def secret_names(source: Source) -> list[str] | None:
    """The secrets a source keeps: its kind's (a signing secret), and a JavaScript source's function's sensitive
    settings too (None while that function is missing: the model's check says so)."""
    names = declared_by(secrets_class(source.kind))
    if source.kind != "function":
        return names
    code = source.function_code()
    return None if code is None else [*(names or []), *declared_by_function(code)]


class SourceSerializer(StrictModelSerializer):
    """Where events come from: an SDK sending with the write key, or a tool's webhooks read by a source function."""

    write_key = serializers.CharField(write_only=True, required=False, max_length=100, help_text=WRITE_KEY_HELP)
    settings = SecretsField(
        help_text="A webhook source's secrets, e.g. its signing secret (a JavaScript source's: also the sensitive "
        f"settings its function declares): write-only, answered in `settings_set`. On update, {HOW}."
    )
    settings_set = serializers.SerializerMethodField()

    class Meta:
        model = Source
        fields = [
            "id",
            "name",
            "slug",
            "kind",
            "write_key",
            "enabled",
            "config",
            "settings",
            "settings_set",
            "last_request_at",
            "last_request_status",
            "last_request_result",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["last_request_at", "last_request_status", "last_request_result"]
        extra_kwargs = {"slug": {"validators": []}}  # unique: checked with the rest by the model's full_clean()

    @extend_schema_field({**STATE_SCHEMA, "example": {"signing_secret": "set"}})
    def get_settings_set(self, source: Source) -> dict[str, str] | None:
        if not sees_secrets(self.context["request"]):
            return None
        locked = isinstance(source.settings, Undecryptable)  # only then are the names needed (a query, for a function)
        return stored_state(source.settings, secret_names(source) if locked else None)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        row = self.instance if self.instance is not None else Source()
        given = attrs.pop("settings", None)
        if row.pk and attrs.get("write_key", row.write_key) != row.write_key:
            raise serializers.ValidationError(
                {"write_key": ["Cannot be changed: the source's SDKs and webhook URL use it. Create a new source."]}
            )
        for name, value in attrs.items():
            setattr(row, name, value)
        if secrets_class(row.kind) is None and any(value is not None for value in (given or {}).values()):
            raise serializers.ValidationError(
                {"settings": [f"A source of kind {row.kind!r} takes no settings: only webhook sources have a secret."]}
            )
        row.settings = merged(secret_names(row), given, row.settings if row.pk else {})
        self.clean_row(row)
        self.row = row
        return attrs

    def create(self, validated_data: dict[str, Any]) -> Source:
        self.row.save()  # the row checked by validate(), merged secrets included
        return self.row

    def update(self, instance: Source, validated_data: dict[str, Any]) -> Source:
        return self.create(validated_data)


class CreatedSourceSerializer(SourceSerializer):
    """The create answer: the source, and its write key this once (never again in a GET)."""

    write_key = serializers.CharField(read_only=True, help_text="The source's write key: shown in this answer only")


CREATE_EXAMPLES = [
    OpenApiExample(
        "An SDK source",
        request_only=True,
        value={
            "name": "Website",
            "slug": "website",
            "kind": "http",
            "write_key": "wk_3f9c1e7b2a5d4c6e8f0a1b2c3d4e5f6a",
        },
    ),
    OpenApiExample(
        "A Stripe webhook source",
        request_only=True,
        value={
            "name": "Stripe",
            "slug": "stripe",
            "kind": "stripe",
            "settings": {"signing_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
        },
    ),
    OpenApiExample(
        "A JavaScript source (a source function's code)",
        request_only=True,
        value={
            "name": "Billing",
            "slug": "billing",
            "kind": "function",
            "config": {"function": "billing-webhooks", "settings": {"plan": "pro"}, "signature_header": "X-Signature"},
            "settings": {"signing_secret": "whsec_8c1dF2b5", "apiToken": "bill_live_7a6b5c4d"},
        },
    ),
]
ANSWER = OpenApiExample(
    "A webhook source",
    response_only=True,
    value={
        "id": 3,
        "name": "Stripe",
        "slug": "stripe",
        "kind": "stripe",
        "enabled": True,
        "config": {},
        "settings_set": {"signing_secret": "set"},
        "last_request_at": "2025-05-01T09:30:00Z",
        "last_request_status": 200,
        "last_request_result": "2 events accepted",
        "created_at": "2025-04-01T08:00:00Z",
        "updated_at": "2025-04-01T08:00:00Z",
    },
)
CREATED = OpenApiExample(
    "A new SDK source, with its write key this once",
    response_only=True,
    status_codes=["201"],
    value={
        "id": 4,
        "name": "Website",
        "slug": "website",
        "kind": "http",
        "write_key": "wk_3f9c1e7b2a5d4c6e8f0a1b2c3d4e5f6a",
        "enabled": True,
        "config": {},
        "settings_set": {},
        "last_request_at": None,
        "last_request_status": None,
        "last_request_result": "",
        "created_at": "2025-04-01T08:00:00Z",
        "updated_at": "2025-04-01T08:00:00Z",
    },
)
CHANGE_EXAMPLES = [
    OpenApiExample("Disable", request_only=True, value={"enabled": False}),
    OpenApiExample(
        "A new signing secret",
        request_only=True,
        value={"settings": {"signing_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}},
    ),
    OpenApiExample("Stop verifying signatures", request_only=True, value={"settings": {"signing_secret": None}}),
]
SECRETS_NOTE = (
    " `write_key` and `settings` need the `integrations.manage_credentials` permission (an administrator); a "
    "body that names them without it is refused with 403 and nothing changes."
)


@extend_schema_view(
    list=extend_schema(
        summary="List sources",
        description="Newest first, a page at a time (`?limit=`, `next`/`previous` links). Secrets are never "
        "returned: `settings_set` says which are stored, to administrators.",
        parameters=[
            OpenApiParameter("kind", str, description="Only sources of this kind, e.g. `http`, `stripe`"),
            ENABLED,
        ],
        examples=[ANSWER],
    ),
    retrieve=extend_schema(summary="Read a source", examples=[ANSWER]),
    create=extend_schema(
        summary="Create a source",
        description="Checked as the admin checks it (a webhook source's settings the way its source function "
        "reads them); every problem is a 400 under its field. The answer carries the write key, generated or "
        "given: the only answer that ever does." + SECRETS_NOTE,
        examples=[*CREATE_EXAMPLES, CREATED],
        responses={201: CreatedSourceSerializer},
    ),
    update=extend_schema(
        summary="Replace a source",
        description="`name` and `slug` must be given; any other field left out keeps its value (`settings` "
        "key by key). `write_key` cannot change." + SECRETS_NOTE,
        examples=[*CREATE_EXAMPLES, ANSWER],
    ),
    partial_update=extend_schema(
        summary="Change a source",
        description="Only the fields given change. In `settings`, a key left out keeps its stored value and null "
        "removes it." + SECRETS_NOTE,
        examples=[*CHANGE_EXAMPLES, ANSWER],
    ),
    destroy=extend_schema(summary="Delete a source", description="Its events and their deliveries go with it."),
)
class SourceViewSet(viewsets.ModelViewSet):
    queryset = Source.objects.all()
    serializer_class = SourceSerializer
    lookup_field = "slug"
    pagination_class = Cursor

    def get_queryset(self) -> QuerySet[Source]:
        sources = super().get_queryset()
        if self.action != "list":
            return sources
        if kind := self.request.query_params.get("kind"):
            sources = sources.filter(kind=kind)
        enabled = strict_boolean(self.request, "enabled")
        return sources if enabled is None else sources.filter(enabled=enabled)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        self.refuse_secrets(request)
        response = super().create(request, *args, **kwargs)
        if sees_secrets(request):  # the SDKs need the key: this answer, once, to whoever may see secrets
            response.data = CreatedSourceSerializer(self.created, context=self.get_serializer_context()).data
        return response

    def perform_create(self, serializer: SourceSerializer) -> None:
        self.created = serializer.save()

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        self.refuse_secrets(request)
        return super().update(request, *args, **kwargs)

    def refuse_secrets(self, request: Request) -> None:
        if not sees_secrets(request):
            refuse_fields(
                request, None, SECRET_FIELDS, "Only an administrator can set a write key or a signing secret."
            )

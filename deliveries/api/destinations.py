"""/api/v1/destinations: where events go, by slug. Credentials (and an insert function's secrets) are write-only and
only an administrator may set them; a Marketer may change the mapping and the filter alone, as on the admin's page.
Destination.clean() is the one place settings are checked (the vendor's rules, JMESPath, filter, limits, a
function's declared settings)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from deliveries.api.destination_examples import ANSWER, CHANGE_EXAMPLES, CREATE_EXAMPLES, RIGHTS
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
from deliveries.api.serializers import ENABLED, SecondsField, StrictModelSerializer, strict_boolean
from deliveries.api.tester import DestinationTestActions
from integrations import vendors
from integrations.admin.destinations import MARKETER_FIELDS
from integrations.crypto import Undecryptable
from integrations.models import Destination, Function, Source
from integrations.signals import destinations_resumed

STATES = ["enabled", "disabled", "paused", "misconfigured"]
SECRET_FIELDS = ["credentials", "insert_secrets"]


def credential_names(vendor: str, config: Any) -> list[str] | None:
    """The credentials a destination takes: its vendor's, or for a destination function the sensitive settings
    its function declares (None while there is no such function: the model's check says so)."""
    if vendor == "function":
        slug = config.get("function") if isinstance(config, dict) else None
        function = Function.objects.filter(slug=slug, kind="destination").first() if isinstance(slug, str) else None
        return declared_by_function(function) if function is not None else None
    found = vendors.VENDORS.get(vendor)
    return declared_by(found.credentials_class) if found is not None else None


class DestinationSerializer(StrictModelSerializer):
    """Where events go: a vendor, its config and write-only credentials, the sources that feed it and which events
    pass (filter), what is sent (mapping), and its limits."""

    sources = serializers.SlugRelatedField(
        many=True,
        slug_field="slug",
        queryset=Source.objects.all(),
        required=False,
        help_text="Slugs of the sources whose events are sent here",
        error_messages={"does_not_exist": "No source with slug {value}."},
    )
    credentials = SecretsField(
        help_text='The vendor\'s secrets, e.g. {"client_id": …, "client_secret": …}: write-only, answered in '
        f"`credentials_set`. On update, {HOW}."
    )
    credentials_set = serializers.SerializerMethodField()
    insert_function = serializers.SlugRelatedField(
        slug_field="slug",
        queryset=Function.objects.all(),
        required=False,
        allow_null=True,
        help_text="The slug of an insert function run on each event before it is sent (null: none)",
        error_messages={"does_not_exist": "No function with slug {value}."},
    )
    insert_secrets = SecretsField(
        help_text="The insert function's sensitive settings: write-only, answered in `insert_secrets_set`. On "
        f"update, {HOW}."
    )
    insert_secrets_set = serializers.SerializerMethodField()
    retry_deadline_seconds = SecondsField(
        source="retry_deadline",
        required=False,
        help_text="Stop retrying an event this long after it was received (default 4 hours, at most 30 days)",
    )
    state = serializers.SerializerMethodField()
    renamed = {"retry_deadline": "retry_deadline_seconds"}

    class Meta:
        model = Destination
        fields = [
            "id",
            "name",
            "slug",
            "vendor",
            "sources",
            "enabled",
            "paused",
            "state",
            "config",
            "credentials",
            "credentials_set",
            "insert_function",
            "insert_settings",
            "insert_secrets",
            "insert_secrets_set",
            "mapping",
            "filter",
            "consent_categories",
            "rate_mode",
            "rate_limit",
            "rate_period",
            "concurrency",
            "timeout",
            "retry_deadline_seconds",
            "last_error",
            "last_error_code",
            "last_error_hint",
            "last_error_at",
            "last_delivered_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "last_error",
            "last_error_code",
            "last_error_hint",
            "last_error_at",
            "last_delivered_at",
        ]
        extra_kwargs = {"slug": {"validators": []}}  # unique: checked with the rest by the model's full_clean()

    @extend_schema_field(STATE_SCHEMA)
    def get_credentials_set(self, destination: Destination) -> dict[str, str] | None:
        if not sees_secrets(self.context["request"]):
            return None
        stored = destination.credentials
        locked = isinstance(stored, Undecryptable)  # only then are the names needed (a query, for a function)
        return stored_state(stored, credential_names(destination.vendor, destination.config) if locked else None)

    @extend_schema_field({**STATE_SCHEMA, "example": {"apiKey": "set"}})
    def get_insert_secrets_set(self, destination: Destination) -> dict[str, str] | None:
        if not sees_secrets(self.context["request"]):
            return None
        return stored_state(destination.insert_secrets, declared_by_function(destination.insert_function))

    @extend_schema_field({"type": "string", "enum": STATES})
    def get_state(self, destination: Destination) -> str:
        if not destination.enabled:
            return "disabled"
        if destination.paused:
            return "paused"
        return "misconfigured" if destination.misconfigured else "enabled"

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        row = self.instance if self.instance is not None else Destination()
        self.was_running = bool(row.pk and row.enabled and not row.paused)
        given = attrs.pop("credentials", None)
        given_insert = attrs.pop("insert_secrets", None)
        self.sources = attrs.pop("sources", None)
        for name, value in attrs.items():
            setattr(row, name, value)
        if row.insert_function is None and "insert_settings" not in attrs:
            row.insert_settings = {}  # no insert function, none of its settings: a null alone removes it
        if self.limited:
            self.clean_row(row, only=MARKETER_FIELDS)
        else:
            row.credentials = merged(credential_names(row.vendor, row.config), given, row.credentials if row.pk else {})
            stored = row.insert_secrets if row.pk else {}
            row.insert_secrets = merged(declared_by_function(row.insert_function), given_insert, stored)
            self.clean_row(row)
        self.row = row
        return attrs

    @property
    def limited(self) -> bool:
        """A Marketer's change: the mapping and the filter, nothing else (the view refuses any other field)."""
        return self.instance is not None and not sees_secrets(self.context["request"])

    def create(self, validated_data: dict[str, Any]) -> Destination:
        with transaction.atomic():  # no destination without its sources
            self.row.save()
            if self.sources:
                self.row.sources.set(self.sources)
        return self.row

    def update(self, instance: Destination, validated_data: dict[str, Any]) -> Destination:
        row = self.row
        if self.limited:
            # The Marketer's fields only: credentials and settings stay as stored, even if an administrator changed
            # them since this row was read.
            row.save(update_fields=[*MARKETER_FIELDS, "updated_at"])
            return row
        with transaction.atomic():
            row.save()
            if self.sources is not None:
                row.sources.set(self.sources)
        if row.enabled and not row.paused and not self.was_running:
            destinations_resumed.send(sender=Destination, destination_ids=[row.pk])  # waiting deliveries go now
        return row


@extend_schema_view(
    list=extend_schema(
        summary="List destinations",
        description="Newest first, a page at a time (`?limit=`, `next`/`previous` links). Secrets are never "
        "returned: `credentials_set` and `insert_secrets_set` say which are stored, to administrators.",
        parameters=[
            OpenApiParameter("vendor", str, description="Only destinations of this vendor, e.g. `sfmc_journey`"),
            OpenApiParameter("source", str, description="Only destinations fed by the source with this slug"),
            ENABLED,
        ],
        examples=[ANSWER],
    ),
    retrieve=extend_schema(summary="Read a destination", examples=[ANSWER]),
    create=extend_schema(
        summary="Create a destination",
        description="Checked as the admin checks it, the way the delivery worker reads it: the vendor's config and "
        "credentials (a function's declared settings), the insert function's settings, the JMESPath of the mapping and "
        "the filter's condition, the limits. Every problem is a 400 "
        'under its field, e.g. `{"config": ["config.url: required"]}`; nothing is saved.' + RIGHTS,
        examples=[*CREATE_EXAMPLES, ANSWER],
    ),
    update=extend_schema(
        summary="Replace a destination",
        description="`name`, `slug` and `vendor` must be given; any other field left out keeps its value "
        "(`credentials` and `insert_secrets` keep theirs key by key)." + RIGHTS,
        examples=[*CREATE_EXAMPLES, ANSWER],
    ),
    partial_update=extend_schema(
        summary="Change a destination",
        description="Only the fields given change. In `credentials` and `insert_secrets`, a key left out keeps its "
        "stored value and null removes it." + RIGHTS,
        examples=[*CHANGE_EXAMPLES, ANSWER],
    ),
    destroy=extend_schema(summary="Delete a destination", description="Its deliveries go with it."),
)
class DestinationViewSet(DestinationTestActions, viewsets.ModelViewSet):
    """Bases stay open: the Event Tester's `test` action is a mixin added in front (deliveries/api/tester.py)."""

    queryset = Destination.objects.select_related("insert_function").prefetch_related("sources")
    serializer_class = DestinationSerializer
    lookup_field = "slug"
    pagination_class = Cursor

    def get_queryset(self) -> QuerySet[Destination]:
        destinations = super().get_queryset()
        if self.action != "list":
            return destinations
        params = self.request.query_params
        if vendor := params.get("vendor"):
            destinations = destinations.filter(vendor=vendor)
        if source := params.get("source"):
            destinations = destinations.filter(sources__slug=source)
        enabled = strict_boolean(self.request, "enabled")
        return destinations if enabled is None else destinations.filter(enabled=enabled)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if not sees_secrets(request):
            refuse_fields(request, None, SECRET_FIELDS, "Only an administrator can set credentials or secrets.")
        return super().create(request, *args, **kwargs)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if not sees_secrets(request):
            refuse_fields(
                request,
                MARKETER_FIELDS,
                [],
                "You can change a destination's mapping and filter only; ask an administrator for anything else.",
            )
        return super().update(request, *args, **kwargs)

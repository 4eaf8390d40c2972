"""/api/v1/destinations: where events go, by slug. Credentials are write-only and only an administrator may set
them; a Marketer may change the mapping and the filter alone, as on the admin's page. Destination.clean() is the
one place settings are checked (the vendor's rules, JMESPath, filter, limits)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
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
from deliveries.api.secrets import HOW, STATE_SCHEMA, SecretsField, merged, refuse_fields, sees_secrets, stored_state
from deliveries.api.serializers import ENABLED, SecondsField, StrictModelSerializer, strict_boolean
from deliveries.api.tester import DestinationTestActions
from integrations import vendors
from integrations.admin.destinations import MARKETER_FIELDS
from integrations.models import Destination, Source
from integrations.signals import destinations_resumed

STATES = ["enabled", "disabled", "paused", "misconfigured"]


def secrets_class(vendor: str) -> type | None:
    found = vendors.VENDORS.get(vendor)
    return found.credentials_class if found is not None else None


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
            "mapping",
            "filter",
            "consent_categories",
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
        return stored_state(destination.credentials, secrets_class(destination.vendor))

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
        self.sources = attrs.pop("sources", None)
        for name, value in attrs.items():
            setattr(row, name, value)
        if self.limited:
            self.clean_row(row, only=MARKETER_FIELDS)
        else:
            row.credentials = merged(secrets_class(row.vendor), given, row.credentials if row.pk else {})
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


WEBHOOK = {
    "name": "Order webhook",
    "slug": "order-webhook",
    "vendor": "webhook",
    "sources": ["website"],
    "config": {"url": "https://hooks.example.com/orders"},
    "credentials": {"signing_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
    "filter": {"types": ["track"], "events": ["Order Completed"], "condition": None},
}
SFMC = {
    "name": "Welcome journey",
    "slug": "welcome-journey",
    "vendor": "sfmc_journey",
    "sources": ["website"],
    "config": {"subdomain": "mc-abc123", "event_definition_key": "APIEvent-welcome"},
    "credentials": {"client_id": "…", "client_secret": "…"},
    "filter": {"types": ["identify"], "events": [], "condition": None},
    "mapping": {"ContactKey": "userId", "Data": {"email": "traits.email"}},
}
CREATE_EXAMPLES = [
    OpenApiExample("A Journey Builder entry", request_only=True, value=SFMC),
    OpenApiExample("A webhook", request_only=True, value=WEBHOOK),
]
ANSWER = OpenApiExample(
    "A destination",
    response_only=True,
    value={
        "id": 7,
        **{k: v for k, v in SFMC.items() if k != "credentials"},
        "enabled": True,
        "paused": False,
        "state": "enabled",
        "credentials_set": {"client_id": "set", "client_secret": "set"},
        "consent_categories": [],
        "rate_limit": None,
        "rate_period": None,
        "concurrency": None,
        "timeout": 10.0,
        "retry_deadline_seconds": 14400,
        "last_error": "",
        "last_error_code": "",
        "last_error_hint": "",
        "last_error_at": None,
        "last_delivered_at": "2025-05-01T09:30:00Z",
        "created_at": "2025-04-01T08:00:00Z",
        "updated_at": "2025-04-01T08:00:00Z",
    },
)
CHANGE_EXAMPLES = [
    OpenApiExample(
        "A Marketer's change: the mapping",
        request_only=True,
        value={"mapping": {"ContactKey": "userId", "Data": {"email": "traits.email || properties.email"}}},
    ),
    OpenApiExample(
        "A Marketer's change: the filter",
        request_only=True,
        value={"filter": {"types": ["track"], "events": ["Order Completed"], "condition": "properties.total > `100`"}},
    ),
    OpenApiExample(
        "A new client secret (the client id is kept)", request_only=True, value={"credentials": {"client_secret": "…"}}
    ),
    OpenApiExample("Remove a secret header", request_only=True, value={"credentials": {"headers": None}}),
    OpenApiExample("Pause delivery", request_only=True, value={"paused": True}),
]
RIGHTS = (
    " An administrator (the `integrations.manage_credentials` permission) may change every field. Without it, "
    "`credentials` is refused, and a change may name `mapping` and `filter` only (a Marketer's rights, as in the "
    "admin): any other field is a 403 and nothing changes."
)


@extend_schema_view(
    list=extend_schema(
        summary="List destinations",
        description="Newest first, a page at a time (`?limit=`, `next`/`previous` links). Credentials are never "
        "returned: `credentials_set` says which are stored, to administrators.",
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
        "credentials, the JMESPath of the mapping and the filter's condition, the limits. Every problem is a 400 "
        'under its field, e.g. `{"config": ["config.url: required"]}`; nothing is saved.' + RIGHTS,
        examples=[*CREATE_EXAMPLES, ANSWER],
    ),
    update=extend_schema(
        summary="Replace a destination",
        description="`name`, `slug` and `vendor` must be given; any other field left out keeps its value "
        "(`credentials` keep theirs key by key)." + RIGHTS,
        examples=[*CREATE_EXAMPLES, ANSWER],
    ),
    partial_update=extend_schema(
        summary="Change a destination",
        description="Only the fields given change. In `credentials`, a key left out keeps its stored value and null "
        "removes it." + RIGHTS,
        examples=[*CHANGE_EXAMPLES, ANSWER],
    ),
    destroy=extend_schema(summary="Delete a destination", description="Its deliveries go with it."),
)
class DestinationViewSet(DestinationTestActions, viewsets.ModelViewSet):
    """Bases stay open: the Event Tester's `test` action is a mixin added in front (deliveries/api/tester.py)."""

    queryset = Destination.objects.prefetch_related("sources")
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
            refuse_fields(request, None, ["credentials"], "Only an administrator can set credentials.")
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

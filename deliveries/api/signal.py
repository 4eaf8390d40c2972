"""POST /v1/admin/integrations: Datafly Signal's management call, accepted for Salesforce Marketing Cloud.

Signal's body (its SFMC page, /work/shared/reference/seeds/003_*.txt) becomes the equivalent `sfmc_journey`
destination, checked by `Destination.full_clean()` as the admin checks it, and saved with its source in one
transaction. The destination then sends as Signal does: ContactKey is the email, Data the fields of Signal's table.
"""

from __future__ import annotations

import copy
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils.text import slugify
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from deliveries.api.auth import BearerTokenAuthentication
from deliveries.api.openapi import NamedChoiceField
from integrations.models import Destination, Source

# Signal's vendor names, and ours, for the vendors this call accepts.
VENDORS = {"salesforce_marketing_cloud": "sfmc_journey", "sfmc_journey": "sfmc_journey"}
CREDENTIALS = ("client_id", "client_secret")
# Where each of our settings came from in Signal's body, to file an error under the name the caller sent.
SIGNAL_NAMES = {
    "config.subdomain": ("config", "tenant_subdomain"),
    "config.account_id": ("config", "account_id"),
    "config.event_definition_key": ("config", "event_definition_key"),
    "credentials.client_id": ("config", "client_id"),
    "credentials.client_secret": ("config", "client_secret"),
    "name": ("name", None),
    "slug": ("name", None),
    "enabled": ("enabled", None),
    "consent_categories": ("consent_categories", None),
}


def anywhere(*keys: str) -> str:
    """The first of these keys found in traits, context.traits or properties: identify and track alike."""
    return " || ".join(f"{where}.{key}" for key in keys for where in ("traits", "context.traits", "properties"))


# Signal's Identity table and its Lead Submitted example: ContactKey is the email, Data what journeys reference.
SIGNAL_MAPPING: dict[str, Any] = {
    "ContactKey": anywhere("email"),
    "Data": {
        "email": anywhere("email"),
        "first_name": anywhere("first_name", "firstName"),
        "last_name": anywhere("last_name", "lastName"),
        "phone": anywhere("phone"),
        "lead_type": anywhere("lead_type"),
        "lead_value": anywhere("lead_value", "value"),
        "currency": anywhere("currency"),
        "user_id": "userId",
    },
}
# People and their actions enter a journey; page views, screens, groups and aliases do not.
SIGNAL_FILTER = {"types": ["identify", "track"], "events": [], "condition": None}
SOURCES_LISTED = 20

SEED_BODY = {
    "source_id": "src_abc123",
    "vendor": "salesforce_marketing_cloud",
    "name": "Marketing Cloud — Welcome Journey",
    "enabled": True,
    "config": {
        "tenant_subdomain": "mc-abc123xyz",
        "client_id": "abc123clientid",
        "client_secret": "shh-secret-value",
        "event_definition_key": "datafly_lead_submitted",
    },
    "consent_categories": ["marketing"],
}


class SignalConfigSerializer(serializers.Serializer):
    tenant_subdomain = serializers.CharField(
        help_text="The part of the REST Base URI before .rest.marketingcloudapis.com"
    )
    client_id = serializers.CharField(write_only=True, help_text="The Installed Package's client ID")
    client_secret = serializers.CharField(
        write_only=True, style={"input_type": "password"}, help_text="The Installed Package's client secret"
    )
    account_id = serializers.CharField(
        required=False, allow_blank=True, help_text="The business unit's MID; only for multi-business-unit tenants"
    )
    event_definition_key = serializers.CharField(help_text="Journey Builder's Event Definition Key (case-sensitive)")


class SignalIntegrationSerializer(serializers.Serializer):
    """The shape of Signal's body; what its values may be is the destination's own check."""

    source_id = serializers.CharField(help_text="The slug of the cdphub source whose events go to the journey")
    # A string, not a choice: a choice becomes a VendorEnum component, a name the destinations' vendor wants too.
    vendor = serializers.CharField(help_text=f"One of {', '.join(VENDORS)}: Salesforce Marketing Cloud, a journey")
    name = serializers.CharField()
    enabled = serializers.BooleanField(default=True)
    config = SignalConfigSerializer()
    consent_categories = serializers.ListField(
        child=serializers.CharField(), default=["marketing"], help_text='Defaults to ["marketing"], as in Signal'
    )

    def validate_vendor(self, value: str) -> str:
        if value not in VENDORS:
            raise serializers.ValidationError(f'Unknown vendor "{value}": use one of {", ".join(VENDORS)}.')
        return VENDORS[value]

    def validate_source_id(self, value: str) -> Source:
        source = Source.objects.filter(slug=value).first()
        if source is None:
            raise serializers.ValidationError(unknown_source(value))
        return source


class CredentialsSetSerializer(serializers.Serializer):
    client_id = NamedChoiceField([("set", "set")], enum="SecretSet", help_text='"set": credentials are write-only')
    client_secret = NamedChoiceField([("set", "set")], enum="SecretSet", help_text='"set": credentials are write-only')


class SignalCreatedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    slug = serializers.CharField()
    name = serializers.CharField()
    vendor = serializers.CharField()
    sources = serializers.ListField(child=serializers.CharField())
    enabled = serializers.BooleanField()
    config = serializers.DictField()
    credentials = CredentialsSetSerializer()
    consent_categories = serializers.ListField(child=serializers.CharField())
    filter = serializers.DictField()
    mapping = serializers.DictField()
    admin_url = serializers.URLField()


class CanCreateDestinations(permissions.BasePermission):
    """Adding a destination with its credentials: an administrator's token, never a Marketer's."""

    message = "Creating an integration needs the permissions to add destinations and to manage credentials."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated) and user.has_perms(
            ["integrations.add_destination", "integrations.manage_credentials"]
        )


class SignalIntegrations(APIView):
    authentication_classes = [BearerTokenAuthentication]
    permission_classes = [CanCreateDestinations]
    renderer_classes = [JSONRenderer]

    @extend_schema(
        operation_id="signal_integrations_create",
        tags=["Datafly Signal"],
        summary="Create a Salesforce Marketing Cloud journey integration (Datafly Signal's call)",
        description=(
            "Accepts Datafly Signal's `POST /v1/admin/integrations` body unchanged and creates the equivalent "
            "`sfmc_journey` destination fed by the source whose slug is `source_id`: ContactKey is the email and "
            "Data carries email, first_name, last_name, phone, lead_type, lead_value, currency and user_id; "
            "identify and track events enter the journey (narrow the filter in the admin). The settings are "
            "checked as the admin checks them; nothing is saved unless all are good. Credentials are write-only."
        ),
        request=SignalIntegrationSerializer,
        responses={
            201: SignalCreatedSerializer,
            400: OpenApiResponse(description="A field is missing or wrong, the vendor or the source is unknown"),
            401: OpenApiResponse(description="No API token, or an unknown, revoked or expired one"),
            403: OpenApiResponse(description="The token's user may not add destinations or manage credentials"),
        },
        examples=[
            OpenApiExample("Welcome Journey", value=SEED_BODY, request_only=True),
            OpenApiExample(
                "Created",
                response_only=True,
                status_codes=["201"],
                value={
                    "id": 7,
                    "slug": "marketing-cloud-welcome-journey",
                    "name": "Marketing Cloud — Welcome Journey",
                    "vendor": "sfmc_journey",
                    "sources": ["src_abc123"],
                    "enabled": True,
                    "config": {"subdomain": "mc-abc123xyz", "event_definition_key": "datafly_lead_submitted"},
                    "credentials": {"client_id": "set", "client_secret": "set"},
                    "consent_categories": ["marketing"],
                    "filter": SIGNAL_FILTER,
                    "mapping": SIGNAL_MAPPING,
                    "admin_url": "http://localhost:8000/admin/integrations/destination/7/change/",
                },
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        body = SignalIntegrationSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        destination = create_destination(body.validated_data)
        return Response(created(request, destination), status=status.HTTP_201_CREATED)


def unknown_source(slug: str) -> str:
    slugs = list(Source.objects.order_by("slug").values_list("slug", flat=True)[: SOURCES_LISTED + 1])
    if not slugs:
        return f"No source with the slug {slug!r}: this hub has no sources yet; add one in the admin first."
    more = " …" if len(slugs) > SOURCES_LISTED else ""
    return f"No source with the slug {slug!r}. Known sources: {', '.join(slugs[:SOURCES_LISTED])}{more}."


def create_destination(data: dict[str, Any]) -> Destination:
    """Save the destination and its source together, or nothing (a 400 per field when a setting is wrong)."""
    signal, source = data["config"], data["source_id"]
    config = {"subdomain": signal["tenant_subdomain"], "event_definition_key": signal["event_definition_key"]}
    if signal.get("account_id"):
        config["account_id"] = signal["account_id"]
    destination = Destination(
        name=data["name"],
        vendor=data["vendor"],
        enabled=data["enabled"],
        config=config,
        credentials={name: signal[name] for name in CREDENTIALS},
        filter=dict(SIGNAL_FILTER),
        mapping=copy.deepcopy(SIGNAL_MAPPING),
        consent_categories=list(data["consent_categories"]),
    )
    for _ in range(3):  # a slug taken between the check and the insert: take the next one
        destination.slug = free_slug(data["name"])
        try:
            destination.full_clean()
        except ValidationError as exc:
            raise serializers.ValidationError(in_signal_names(exc)) from None
        try:
            with transaction.atomic():
                destination.save()
                destination.sources.add(source)
        except IntegrityError:
            destination.pk = None
            continue
        return destination
    raise serializers.ValidationError({"name": ["Another integration with this name is being created: try again."]})


def free_slug(name: str) -> str:
    """The name's slug, or with -2, -3 … when a destination already has it."""
    base = (slugify(name) or "sfmc-journey")[:90].strip("-")
    taken = set(Destination.objects.filter(slug__startswith=base).values_list("slug", flat=True))
    n = 1
    slug = base
    while slug in taken:
        n += 1
        slug = f"{base}-{n}"
    return slug


def in_signal_names(exc: ValidationError) -> dict[str, Any]:
    """The destination's errors under the names of Signal's body ("config.subdomain: …" → config.tenant_subdomain)."""
    errors: dict[str, Any] = {}
    for field, messages in exc.message_dict.items():
        for message in messages:
            path, _, text = message.partition(": ")
            if path not in SIGNAL_NAMES:  # Django's own messages ("Ensure this value …") carry no path
                path, text = field, message
            top, inner = SIGNAL_NAMES.get(path, (api_settings.NON_FIELD_ERRORS_KEY, None))
            if inner is not None:
                errors.setdefault(top, {}).setdefault(inner, []).append(text)
            else:
                errors.setdefault(top, []).append(text)
    return errors


def created(request: Request, destination: Destination) -> dict[str, Any]:
    admin_url = reverse("admin:integrations_destination_change", args=[destination.pk])
    return {
        "id": destination.pk,
        "slug": destination.slug,
        "name": destination.name,
        "vendor": destination.vendor,
        "sources": [source.slug for source in destination.sources.all()],
        "enabled": destination.enabled,
        "config": destination.config,
        "credentials": dict.fromkeys(CREDENTIALS, "set"),
        "consent_categories": destination.consent_categories,
        "filter": destination.filter,
        "mapping": destination.mapping,
        "admin_url": request.build_absolute_uri(admin_url),
    }

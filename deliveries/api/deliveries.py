"""/api/v1/deliveries: the delivery log, newest first, filtered on its indexes; one delivery with every attempt and
its HTTP exchanges (redacted when recorded); Retry now for one, and for many by filter as Event Delivery's "Retry
these" (both the engine's retry_now, which leaves delivered, filtered and in-flight deliveries alone)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiExample,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import exceptions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from deliveries.api.openapi import NamedChoiceField
from deliveries.api.pagination import NewestFirst
from deliveries.api.permissions import needs
from deliveries.api.query import TimeRange, read_query
from deliveries.api.records import (
    DELIVERY_EXAMPLE,
    DeliveryDetailSerializer,
    DeliverySerializer,
    deliveries_with_destination,
)
from deliveries.api.redaction import WithoutWriteKeys
from deliveries.engine.sweep import retry_now
from deliveries.models import Delivery
from integrations.models import Destination

RETRY_PERMISSIONS = ("deliveries.view_delivery", "deliveries.change_delivery")  # the admin's Retry now
ISSUE_STATUSES = (Delivery.Status.FAILED, Delivery.Status.RETRYING)  # what "Retry these" sends again
BULK_WINDOW = timedelta(hours=24)  # a bulk retry's default time range, as Event Delivery opens on


class DeliveryQuery(TimeRange):
    """The delivery list's filters; the time range is on when the delivery was created."""

    status = NamedChoiceField(Delivery.Status.choices, enum="DeliveryStatus", what="a delivery status")
    destination = serializers.SlugField(required=False, help_text="A destination's slug")
    event = serializers.IntegerField(required=False, min_value=1, help_text="An event's id: its deliveries")
    error_code = serializers.CharField(required=False, max_length=100, help_text="e.g. http_500, timeout")
    replay = serializers.IntegerField(required=False, min_value=1, help_text="A replay's id: the deliveries it queued")

    def validate_destination(self, slug: str) -> int:
        return destination_id(slug)


def destination_id(slug: str) -> int:
    found = Destination.objects.filter(slug=slug).values_list("pk", flat=True).first()
    if found is None:
        raise serializers.ValidationError(f'No destination has the slug "{slug}".')
    return found


class RetryFilter(TimeRange):
    """Which deliveries to send again, as Event Delivery's "Retry these": a destination's failed and retrying ones,
    by error, over a time range (the last 24 hours unless given)."""

    destination = serializers.SlugField(help_text="A destination's slug")
    status = NamedChoiceField(
        [(s, Delivery.Status(s).label) for s in Delivery.RETRYABLE],
        enum="RetryableStatus",
        what="a status that can be retried",
        help_text="Only deliveries in this status (default: failed and retrying)",
    )
    error_code = serializers.CharField(required=False, max_length=100, help_text="Only this error, e.g. http_500")
    error_message = serializers.CharField(required=False, help_text="Only this exact message (an issue group's)")

    def validate_destination(self, slug: str) -> int:
        return destination_id(slug)


class RetryAnswerSerializer(serializers.Serializer):
    retried = serializers.IntegerField(help_text="Deliveries queued to be sent now")
    warnings = serializers.ListField(child=serializers.CharField(), help_text="e.g. a paused destination holds them")
    delivery = DeliverySerializer(required=False, help_text="The delivery retried (Retry now of one)")


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


def held(destinations: Iterable[Destination]) -> list[str]:
    """Why retried deliveries may still wait: their destination is paused or disabled (as the admin warns)."""
    names = sorted({d.name for d in destinations if d.paused or not d.enabled})
    if not names:
        return []
    return [
        f"Paused or disabled: {', '.join(names)}. Deliveries there wait until the destination is resumed and enabled."
    ]


@extend_schema_view(
    list=extend_schema(
        summary="List deliveries",
        description=(
            "Newest first, a page at a time: follow `next` (a cursor) until it is null. No total is counted. "
            "Test sends (Event Tester) are listed too, with `is_test`. Newest by id, or by `created_at` for a "
            "destination's time range."
        ),
        parameters=[DeliveryQuery],
        examples=[OpenApiExample("A failed delivery", value=DELIVERY_EXAMPLE, response_only=True)],
    ),
    retrieve=extend_schema(
        summary="One delivery with every attempt",
        description="Each attempt with its HTTP exchanges as recorded: secrets redacted, bodies truncated.",
        responses=DeliveryDetailSerializer,
    ),
)
@extend_schema(tags=["deliveries"])
class DeliveryViewSet(WithoutWriteKeys, viewsets.ReadOnlyModelViewSet):
    queryset = Delivery.objects.all()
    serializer_class = DeliverySerializer
    pagination_class = NewestFirst
    time_order = ""

    def get_queryset(self) -> QuerySet[Delivery]:
        deliveries = deliveries_with_destination()
        if self.action == "list":
            query = read_query(DeliveryQuery, self.request)
            self.time_order = time_order(query)  # for the paginator
            return filtered(deliveries, query)
        if self.action == "retrieve":
            return deliveries.prefetch_related("attempt_log")
        return deliveries

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return DeliveryDetailSerializer if self.action == "retrieve" else DeliverySerializer

    @extend_schema(
        summary="Retry now",
        description=(
            "Send a failed, retrying or pending delivery again at once, as the admin's Retry now. A delivered or "
            "filtered delivery is not sent again (replay its event instead), nor one being sent right now: 409."
        ),
        request=None,
        responses={202: RetryAnswerSerializer, 409: inline_serializer("Conflict", {"detail": serializers.CharField()})},
        examples=[
            OpenApiExample(
                "Nothing to retry",
                value={"detail": "Nothing to retry: the delivery is delivered. …"},
                response_only=True,
                status_codes=["409"],
            )
        ],
    )
    @action(detail=True, methods=["post"], permission_classes=[needs(*RETRY_PERMISSIONS)])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        delivery = self.get_object()
        if not retry_now([delivery.pk]):
            raise Conflict(
                f"Nothing to retry: the delivery is {delivery.get_status_display().lower()}. Failed, retrying and "
                "pending deliveries are sent again; a delivered or filtered event is sent again by a replay, and one "
                "in flight is being sent right now."
            )
        delivery = self.get_queryset().get(pk=delivery.pk)
        destination = Destination.objects.only("name", "paused", "enabled").get(pk=delivery.destination_id)
        answer = {"retried": 1, "warnings": held([destination]), "delivery": self.get_serializer(delivery).data}
        return Response(answer, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Retry these",
        operation_id="deliveries_retry_these",
        description=(
            "Send a destination's failed and retrying deliveries again at once, by error and time range (the last "
            "24 hours unless given), as Event Delivery's Retry these. Test sends are left out."
        ),
        request=RetryFilter,
        responses={202: RetryAnswerSerializer},
        examples=[
            OpenApiExample(
                "The timeouts of the last hour",
                value={"destination": "welcome-hook", "error_code": "timeout", "since": "2026-12-07T09:00:00Z"},
                request_only=True,
            ),
            OpenApiExample("Queued", value={"retried": 37, "warnings": []}, response_only=True),
        ],
    )
    @action(detail=False, methods=["post"], url_path="retry", permission_classes=[needs(*RETRY_PERMISSIONS)])
    def retry_many(self, request: Request) -> Response:
        body = RetryFilter(data=request.data)
        body.is_valid(raise_exception=True)
        chosen = body.validated_data
        since = chosen.get("since") or (chosen.get("until") or timezone.now()) - BULK_WINDOW
        deliveries = Delivery.objects.filter(
            destination_id=chosen["destination"],
            status__in=[chosen["status"]] if chosen.get("status") else ISSUE_STATUSES,
            created_at__gte=since,
            is_test=False,
        )  # on the (destination, status, created_at) index
        if chosen.get("until"):
            deliveries = deliveries.filter(created_at__lt=chosen["until"])
        for field in ("error_code", "error_message"):
            if field in chosen:
                deliveries = deliveries.filter(**{field: chosen[field]})
        count = retry_now(deliveries.values_list("id", flat=True))
        destination = Destination.objects.only("name", "paused", "enabled").get(pk=chosen["destination"])
        answer = {"retried": count, "warnings": held([destination]) if count else []}
        return Response(answer, status=status.HTTP_202_ACCEPTED)


# Status on (status, id), a destination, an event or a replay on its foreign key's index (the key, then id), a
# destination's time range on (destination[, status], created_at); an error code narrows whichever is given.
LOOKUPS = {
    "status": "status",
    "destination": "destination_id",
    "event": "event_id",
    "replay": "replay_id",
    "error_code": "error_code",
    "since": "created_at__gte",
    "until": "created_at__lt",
}


def time_order(query: dict[str, Any]) -> str:
    """created_at for a destination's time range (its (destination[, status], created_at) indexes give that order),
    unless an event or a replay narrows it to a few rows: "" for id order."""
    timed = ("since" in query or "until" in query) and "destination" in query
    return "created_at" if timed and "event" not in query and "replay" not in query else ""


def filtered(deliveries: QuerySet[Delivery], query: dict[str, Any]) -> QuerySet[Delivery]:
    return deliveries.filter(**{LOOKUPS[name]: value for name, value in query.items()})

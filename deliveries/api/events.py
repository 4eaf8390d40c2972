"""/api/v1/events: every event as received (accepted, or rejected with the reason), newest first, filtered on its
indexes; one event with its trace as the Debugger shows it: each delivery (filtered ones with the reason) and its
newest attempts with their HTTP exchanges."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from deliveries.api.openapi import NamedChoiceField
from deliveries.api.pagination import NewestFirst
from deliveries.api.query import TimeRange, read_query
from deliveries.api.records import AttemptSerializer, DeliverySerializer, deliveries_with_destination
from deliveries.api.redaction import WithoutWriteKeys
from deliveries.models import Attempt, Event
from deliveries.pages.debugger.views import ATTEMPTS_SHOWN
from integrations.models import Source

EVENT_EXAMPLE = {
    "id": 4051,
    "url": "https://cdp.example.com/api/v1/events/4051",
    "source": "website",
    "type": "track",
    "name": "Order Completed",
    "message_id": "0193a4f2-6c1e-7c3a-9d5e-2f4b8a1c0e77",
    "user_id": "user-1",
    "anonymous_id": "",
    "status": "accepted",
    "reject_reason": "",
    "received_at": "2026-12-07T10:14:31.118000Z",
    "timestamp": "2026-12-07T10:14:30.902000Z",
    "payload": {
        "type": "track",
        "event": "Order Completed",
        "userId": "user-1",
        "properties": {"order_id": "A-1001", "total": 49.5},
        "messageId": "0193a4f2-6c1e-7c3a-9d5e-2f4b8a1c0e77",
        "receivedAt": "2026-12-07T10:14:31.118Z",
    },
}


class EventSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="event-detail")
    source = serializers.SlugRelatedField(slug_field="slug", read_only=True, help_text="The source's slug")
    type = NamedChoiceField(Event.Type.choices, enum="EventType", read_only=True)
    name = serializers.CharField(source="event", read_only=True, help_text="A track event's name ('' for the others)")
    status = NamedChoiceField(Event.Status.choices, enum="EventStatus", read_only=True)

    class Meta:
        model = Event
        fields = [
            "id",
            "url",
            "source",
            "type",
            "name",
            "message_id",
            "user_id",
            "anonymous_id",
            "status",
            "reject_reason",
            "received_at",
            "timestamp",
            "payload",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "payload": {"help_text": "The normalised event as destinations get it; for a rejected one, an excerpt"}
        }


class TracedDeliverySerializer(DeliverySerializer):
    attempt_log = AttemptSerializer(
        many=True, read_only=True, source="newest_attempts", help_text=f"The newest {ATTEMPTS_SHOWN} tries"
    )
    more_attempts = serializers.BooleanField(read_only=True, help_text="Older tries are on the delivery's own page")

    class Meta(DeliverySerializer.Meta):
        fields = [*DeliverySerializer.Meta.fields, "attempt_log", "more_attempts"]
        read_only_fields = fields


class EventDetailSerializer(EventSerializer):
    deliveries = TracedDeliverySerializer(many=True, read_only=True, source="traced")

    class Meta(EventSerializer.Meta):
        fields = [*EventSerializer.Meta.fields, "deliveries"]
        read_only_fields = fields


class EventQuery(TimeRange):
    """The event list's filters; the time range is on received_at."""

    source = serializers.SlugField(required=False, help_text="A source's slug")
    type = NamedChoiceField(Event.Type.choices, enum="EventType", what="an event type")
    name = serializers.CharField(required=False, max_length=255, help_text="A track event's exact name")
    status = NamedChoiceField(
        Event.Status.choices,
        enum="EventStatus",
        what="an event status",
        help_text="Test sends (Event Tester) are listed only when asked for",
    )
    user_id = serializers.CharField(required=False, max_length=255)
    anonymous_id = serializers.CharField(required=False, max_length=255)
    message_id = serializers.CharField(required=False, max_length=255)

    def validate_source(self, slug: str) -> int:
        found = Source.objects.filter(slug=slug).values_list("pk", flat=True).first()
        if found is None:
            raise serializers.ValidationError(f'No source has the slug "{slug}".')
        return found


LOOKUPS = {
    "source": "source_id",
    "type": "type",
    "name": "event",
    "user_id": "user_id",
    "anonymous_id": "anonymous_id",
    "message_id": "message_id",
    "since": "received_at__gte",
    "until": "received_at__lt",
}


# Filters read from an index in id order (the value, then id), and few rows or most of them: the list stays by id.
BY_ID = ("type", "name", "user_id", "anonymous_id", "message_id")


def time_order(query: dict[str, Any]) -> str:
    """received_at when the filters are read from an index in time order (a time range on received_at, of a source,
    or of rejected or test events on status and received_at): "" for id order."""
    timed = "since" in query or "until" in query or query.get("status") in (Event.Status.REJECTED, Event.Status.TEST)
    return "received_at" if timed and not any(name in query for name in BY_ID) else ""


def filtered(events: QuerySet[Event], query: dict[str, Any]) -> QuerySet[Event]:
    """The list's filters: each identifier, the type, the name and the source on its own index, the time range and
    a status on received_at's."""
    events = events.filter(**{LOOKUPS[name]: value for name, value in query.items() if name in LOOKUPS})
    status = query.get("status")
    if status == Event.Status.ACCEPTED:
        # Not an equality on status, as the Debugger: an equality would sort every accepted event by id.
        return events.exclude(status__in=[Event.Status.REJECTED, Event.Status.TEST])
    if status:
        return events.filter(status=status)
    return events.exclude(status=Event.Status.TEST)


def events_with_source() -> QuerySet[Event]:
    columns = [f for f in EventSerializer.Meta.fields if f not in ("url", "source", "name")]
    return Event.objects.select_related("source").only(*columns, "event", "source__slug")


@extend_schema_view(
    list=extend_schema(
        summary="List events",
        description=(
            "Accepted and rejected events, newest first, a page at a time: follow `next` (a cursor) until it is "
            "null. No total is counted. Test sends (Event Tester) only with `status=test`. Newest by id, or by "
            "`received_at` with a time range or `status=rejected|test` (unless a type, name or id narrows it)."
        ),
        parameters=[EventQuery],
        examples=[OpenApiExample("A track event", value=EVENT_EXAMPLE, response_only=True)],
    ),
    retrieve=extend_schema(
        summary="One event with its trace",
        description=(
            "The event and every delivery it has, as the Debugger shows them: the status, the error or why it was "
            f"filtered, and the newest {ATTEMPTS_SHOWN} attempts with their HTTP exchanges (secrets redacted when "
            "recorded). The delivery's own URL has all of its attempts."
        ),
        responses=EventDetailSerializer,
    ),
)
@extend_schema(tags=["events"])
class EventViewSet(WithoutWriteKeys, viewsets.ReadOnlyModelViewSet):
    queryset = Event.objects.all()
    serializer_class = EventSerializer
    pagination_class = NewestFirst
    time_order = ""

    def get_queryset(self) -> QuerySet[Event]:
        if self.action == "list":
            query = read_query(EventQuery, self.request)
            self.time_order = time_order(query)  # for the paginator
            return filtered(events_with_source(), query)
        return events_with_source()

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return EventDetailSerializer if self.action == "retrieve" else EventSerializer

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        event = self.get_object()
        event.traced = list(deliveries_with_destination().filter(event=event).order_by("destination__name", "id"))
        for delivery in event.traced:
            newest = list(Attempt.objects.filter(delivery=delivery).order_by("-number")[: ATTEMPTS_SHOWN + 1])
            delivery.newest_attempts = newest[:ATTEMPTS_SHOWN][::-1]
            delivery.more_attempts = len(newest) > ATTEMPTS_SHOWN
        return Response(self.get_serializer(event).data)

"""How a delivery reads in an answer, with its attempts and each attempt's HTTP exchanges as recorded (redacted
then, truncated) and a function's console output: shared by /api/v1/deliveries and an event's trace in
/api/v1/events."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema_field, inline_serializer
from rest_framework import serializers

from deliveries.api.openapi import NamedChoiceField
from deliveries.models import Attempt, Delivery

EXCHANGE_EXAMPLE = {
    "request": {
        "method": "POST",
        "url": "https://hooks.example.com/in",
        "headers": {"Content-Type": "application/json", "X-Api-Key": "[REDACTED]"},
        "body": '{"type": "track", "event": "Order Completed", "userId": "user-1"}',
    },
    "response": {"status": 500, "headers": {"Content-Type": "application/json"}, "body": '{"error": "boom"}'},
    "error": "",
    "duration_ms": 84.2,
}
DELIVERY_EXAMPLE = {
    "id": 812,
    "url": "https://cdp.example.com/api/v1/deliveries/812",
    "event": 4051,
    "destination": "welcome-hook",
    "status": "retrying",
    "attempts": 1,
    "throttled": 0,
    "next_attempt_at": "2026-12-07T10:15:32Z",
    "error_code": "http_500",
    "error_message": "The server answered 500 Internal Server Error.",
    "hint": "The receiving server failed: check its logs.",
    "delivered_at": None,
    "latency_ms": None,
    "is_test": False,
    "replay": None,
    "created_at": "2026-12-07T10:14:31Z",
    "updated_at": "2026-12-07T10:14:32Z",
}


class ExchangeSerializer(serializers.Serializer):
    """One HTTP exchange as recorded: secrets redacted, bodies truncated (documentation of the stored JSON)."""

    request = inline_serializer(
        "ExchangeRequest",
        {
            "method": serializers.CharField(),
            "url": serializers.CharField(),
            "headers": serializers.DictField(child=serializers.CharField()),
            "body": serializers.CharField(),
        },
    )
    response = inline_serializer(
        "ExchangeResponse",
        {
            "status": serializers.IntegerField(),
            "headers": serializers.DictField(child=serializers.CharField()),
            "body": serializers.CharField(),
        },
        allow_null=True,
        required=False,
        help_text="Left out or null when no answer came (see error)",
    )
    error = serializers.CharField(help_text="Why no answer came: a timeout, a refused connection …")
    duration_ms = serializers.FloatField(allow_null=True)


@extend_schema_field(ExchangeSerializer(many=True))
class ExchangesField(serializers.JSONField):
    """The exchanges as recorded, key for key (a missing key stays missing: nothing is invented)."""


class LogLineSerializer(serializers.Serializer):
    """One line a function wrote with console.log (warn, error …), secrets redacted (documentation of the JSON)."""

    level = serializers.CharField(help_text="log, info, warn, error, debug or trace")
    message = serializers.CharField()


@extend_schema_field(LogLineSerializer(many=True))
class LogsField(serializers.JSONField):
    """The console lines as recorded."""


class AttemptSerializer(serializers.ModelSerializer):
    exchanges = ExchangesField(read_only=True, help_text="Every HTTP exchange of this try, in order")
    logs = LogsField(read_only=True, help_text="A function's console output in this try (empty for other vendors)")

    class Meta:
        model = Attempt
        fields = [
            "number",
            "started_at",
            "duration_ms",
            "outcome",
            "status_code",
            "error_code",
            "error_message",
            "hint",
            "exchanges",
            "logs",
        ]
        read_only_fields = fields


class DeliverySerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="delivery-detail")
    destination = serializers.SlugRelatedField(slug_field="slug", read_only=True, help_text="The destination's slug")
    status = NamedChoiceField(Delivery.Status.choices, enum="DeliveryStatus", read_only=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "url",
            "event",
            "destination",
            "status",
            "attempts",
            "throttled",
            "next_attempt_at",
            "error_code",
            "error_message",
            "hint",
            "delivered_at",
            "latency_ms",
            "is_test",
            "replay",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class DeliveryDetailSerializer(DeliverySerializer):
    attempt_log = AttemptSerializer(many=True, read_only=True, help_text="Every try, oldest first")

    class Meta(DeliverySerializer.Meta):
        fields = [*DeliverySerializer.Meta.fields, "attempt_log"]
        read_only_fields = fields


def deliveries_with_destination() -> QuerySet[Delivery]:
    """Deliveries as the serializers read them: the destination's slug joined, its credentials never loaded."""
    columns = [f for f in DeliverySerializer.Meta.fields if f not in ("url", "destination")]
    return Delivery.objects.select_related("destination").only(*columns, "destination__slug")

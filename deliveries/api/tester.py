"""POST /api/v1/destinations/<slug>/test: the Event Tester for scripts. A dry run answers what the admin's dry run
shows (routing, the mapped payload, the vendor's exact requests with secrets masked, why it could not be sent)
with no HTTP call and nothing stored; a test send stores the test event and delivery and queues the send as the
admin's does, answering the outcome so far and the delivery's URL to poll.

DestinationTestActions is a mixin for the destinations viewset (its `get_object` finds the destination); what it
answers leaves without any source's write key, whichever viewset it joins."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse

from deliveries.api.openapi import NamedChoiceField
from deliveries.api.permissions import needs
from deliveries.api.records import ExchangeSerializer
from deliveries.api.redaction import without_write_keys
from deliveries.engine.routing import decide
from deliveries.models import Delivery
from deliveries.pages.tester.dry_run import dry_run_of
from deliveries.pages.tester.event import normalised_event
from deliveries.pages.tester.send import first_sources, outcome_of, start_test
from deliveries.pages.tester.views import PERMISSION
from integrations.models import Destination, Source

SAMPLE = {"type": "identify", "userId": "user-42", "traits": {"email": "ada@example.com", "firstName": "Ada"}}


class TesterRequestSerializer(serializers.Serializer):
    event = serializers.JSONField(help_text="The event as an SDK sends it to the Tracking API (type, userId …)")
    send = serializers.BooleanField(default=False, help_text="false: a dry run; true: a test send, never retried")
    source = serializers.SlugField(
        required=False,
        help_text="A test send is stored as if it came from this source (default: the destination's first by name)",
    )

    def validate_event(self, item: Any) -> dict[str, Any]:
        payload, problem = normalised_event(item)  # the Tracking API's own normalisation and refusals
        if problem:
            raise ValidationError(problem)
        return payload

    def validate_source(self, slug: str) -> Source:
        source = Source.objects.filter(slug=slug).only("id", "name", "slug").first()
        if source is None:
            raise ValidationError(f'No source has the slug "{slug}".')
        return source


ROUTING = inline_serializer("Routing", {"send": serializers.BooleanField(), "reason": serializers.CharField()})
CANNOT_SEND = inline_serializer(
    "CannotSend",
    {"code": serializers.CharField(), "message": serializers.CharField(), "hint": serializers.CharField()},
    allow_null=True,
    help_text="Why the vendor could not send it, and how to fix that (null when it could)",
)


class TesterDryRunSerializer(serializers.Serializer):
    send = serializers.BooleanField(help_text="false: nothing was sent or stored")
    destination = serializers.CharField()
    routing = ROUTING
    event = serializers.JSONField(help_text="The event normalised, as destinations get it")
    mapped = serializers.JSONField(allow_null=True, help_text="The destination's mapping applied")
    requests = inline_serializer(
        "PreviewedRequest",
        {
            "method": serializers.CharField(),
            "url": serializers.CharField(),
            "note": serializers.CharField(help_text="e.g. the token call that comes first"),
            "headers": serializers.DictField(child=serializers.CharField()),
            "body": serializers.JSONField(),
        },
        many=True,
        help_text="The exact requests a send would make; credentials masked",
    )
    error = CANNOT_SEND


class TestExchangeSerializer(ExchangeSerializer):
    attempt = serializers.IntegerField(help_text="The try it belongs to (a test send makes one)")


class TesterSendSerializer(serializers.Serializer):
    send = serializers.BooleanField(help_text="true: stored as a test and sent once")
    destination = serializers.CharField()
    routing = ROUTING
    note = serializers.CharField(help_text="Said when routing would have filtered it: a test is sent anyway")
    delivery = serializers.IntegerField()
    event_id = serializers.IntegerField()
    status = NamedChoiceField(Delivery.Status.choices, enum="DeliveryStatus")
    done = serializers.BooleanField(help_text="false: poll `poll_url` until the delivery is delivered or failed")
    error_code = serializers.CharField()
    error_message = serializers.CharField()
    hint = serializers.CharField()
    attempts = serializers.IntegerField()
    exchanges = TestExchangeSerializer(many=True, help_text="Every HTTP exchange so far, in order, secrets redacted")
    poll_url = serializers.URLField(help_text="The delivery, with its attempts and their exchanges")


def dry_run_answer(destination: Destination, payload: dict[str, Any]) -> dict[str, Any]:
    """The admin's dry run as data: no HTTP, nothing stored."""
    result = dry_run_of(destination, payload)
    return {
        "send": False,
        "destination": destination.slug,
        "routing": {"send": result["send"], "reason": result["reason"]},
        "event": result["payload"],
        "mapped": result.get("mapped_payload"),
        "requests": [{key: r[key] for key in ("method", "url", "note", "headers", "body")} for r in result["requests"]],
        "error": result.get("error"),
    }


def send_answer(
    request: Request, destination: Destination, source: Source | None, payload: dict[str, Any]
) -> dict[str, Any]:
    """Store the test and queue its send as the admin's tester does; the outcome so far, and where to poll."""
    if source is None:
        first = first_sources([destination.pk]).get(destination.pk)
        sources = Source.objects.only("id", "name", "slug")
        source = sources.filter(pk=first).first() if first else sources.order_by("name").first()
    if source is None:
        raise ValidationError({"source": ["There is no source to store the test event under: create one first."]})
    decision = decide(destination, payload)
    delivery = start_test(destination, source, payload)
    outcome = outcome_of(Delivery.objects.get(pk=delivery.pk))  # as it stands now: sent already, or still queued
    return {
        "send": True,
        "destination": destination.slug,
        "routing": {"send": decision.send, "reason": decision.reason},
        "note": "" if decision.send else f"Routing would filter this event ({decision.reason}); sent anyway: a test.",
        "delivery": outcome["id"],
        **{key: outcome[key] for key in ("event_id", "status", "done", "error_code", "error_message", "hint")},
        "attempts": outcome["attempts"],
        "exchanges": [
            {key: x[key] for key in ("attempt", "request", "response", "error", "duration_ms")}
            for x in outcome["exchanges"]
        ],
        "poll_url": reverse("delivery-detail", args=[delivery.pk], request=request),
    }


class DestinationTestActions:
    """The destinations viewset's `test` action (the viewset finds the destination by its slug)."""

    @extend_schema(
        summary="Test an event against the destination",
        description=(
            "The Event Tester. `send: false` (a dry run): how the destination would route, map and send the event "
            "(the exact requests, credentials masked) and why it could not be sent; no HTTP, nothing stored. "
            "`send: true`: the event is stored as a test from a source and sent once, never retried, even if "
            "routing would filter it; the answer has the outcome so far and `poll_url`, the delivery to read until "
            "it is done. An event the Tracking API would refuse is a 400 with the Tracking API's reason."
        ),
        request=TesterRequestSerializer,
        responses={
            200: OpenApiResponse(TesterDryRunSerializer, description="The dry run (send: false)"),
            202: OpenApiResponse(TesterSendSerializer, description="The test send, queued (send: true)"),
        },
        examples=[
            OpenApiExample("A dry run", value={"event": SAMPLE, "send": False}, request_only=True),
            OpenApiExample(
                "A test send from the app's source",
                value={"event": {**SAMPLE, "type": "track", "event": "Order Completed"}, "send": True, "source": "app"},
                request_only=True,
            ),
        ],
        tags=["destinations"],
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="test",
        permission_classes=[needs(PERMISSION, "integrations.view_destination")],
    )
    def test(self, request: Request, **kwargs: Any) -> Response:
        destination = self.get_object()  # type: ignore[attr-defined]
        body = TesterRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        payload = body.validated_data["event"]
        if not body.validated_data["send"]:
            return Response(without_write_keys(dry_run_answer(destination, payload)))
        answer = send_answer(request, destination, body.validated_data.get("source"), payload)
        headers = {"Location": answer["poll_url"]}
        return Response(without_write_keys(answer), status=status.HTTP_202_ACCEPTED, headers=headers)

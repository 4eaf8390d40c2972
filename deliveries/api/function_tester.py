"""POST /api/v1/functions/<slug>/test: Run test for scripts, the admin's button's run_test(). One event (a webhook's
body for a source function) goes through the function's code, saved or as given in `code`, with the settings and
secrets given; every `fetch` is recorded and answered with an empty 200 unless `send` is true, which needs the right
to change the function (the code then reaches real endpoints). Nothing is stored; the given secrets are redacted
from the whole answer, not only from the console and the exchanges.

FunctionTestActions is a mixin for the functions viewset (its `get_object` finds the function by slug)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from deliveries.api.function_examples import TEST_EXAMPLES
from deliveries.api.permissions import needs
from deliveries.api.records import LogLineSerializer
from deliveries.api.redaction import without_secrets
from deliveries.api.secrets import SecretsField
from integrations.functions.testing import run_test
from integrations.models import Function

SEND = "integrations.change_function"


class FunctionTestSerializer(serializers.Serializer):
    event = serializers.DictField(
        required=False, help_text="A destination or insert function's event, as its handler gets it (type, userId …)"
    )
    body = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False, help_text="A source function's webhook body, raw"
    )
    headers = serializers.DictField(
        child=serializers.CharField(allow_blank=True), required=False, help_text="A source function's request headers"
    )
    settings = serializers.DictField(required=False, help_text="Plain setting values, by declared name")
    secrets = SecretsField(help_text="Sensitive setting values, by declared name: redacted from the whole answer")
    send = serializers.BooleanField(
        default=False,
        help_text="false: each fetch is recorded, not sent. true: sent for real (needs integrations.change_function)",
    )
    code = serializers.CharField(
        required=False, trim_whitespace=False, help_text="Run this code instead of the saved code: an edit, unsaved"
    )

    def check_for(self, kind: str) -> None:
        """A source function takes a webhook, the others an event: the wrong one is a 400 that says which."""
        data = self.validated_data
        if kind == Function.Kind.SOURCE:
            if "event" in data:
                raise serializers.ValidationError(
                    {"event": ["A source function gets a webhook: give its body (and headers), not an event."]}
                )
        else:
            wrong = sorted({"body", "headers"} & set(data))
            if wrong:
                raise serializers.ValidationError(
                    {
                        name: [f"A {kind} function gets an event: give `event`, not a webhook's {name}."]
                        for name in wrong
                    }
                )
            if "event" not in data:
                raise serializers.ValidationError(
                    {"event": ['Required: the event as the handler gets it, e.g. {"type": "track", "event": "…"}.']}
                )


class FunctionTestAnswerSerializer(serializers.Serializer):
    handler = serializers.CharField(help_text='The handler run, e.g. "onTrack" ("" when the event type has none)')
    outcome = serializers.CharField(
        help_text='"returned", "unsupported", or what the error would do to a delivery: "would be retried", "would '
        'be filtered", "would be dropped", "would be rejected", "would fail"'
    )
    ok = serializers.BooleanField(help_text="It returned without an error")
    value = serializers.JSONField(
        allow_null=True, help_text="What the handler returned (an insert function: the event)"
    )
    error = inline_serializer(
        "FunctionRunError",
        {
            "name": serializers.CharField(help_text="Segment's error class, e.g. RetryError"),
            "code": serializers.CharField(help_text="e.g. function_retry, function_timeout, syntax_error"),
            "message": serializers.CharField(),
            "stack": serializers.CharField(help_text="The line in the code, e.g. at onTrack (function.js:4:11)"),
            "text": serializers.CharField(),
        },
        allow_null=True,
    )
    logs = LogLineSerializer(many=True, help_text="The console output, secrets redacted")
    exchanges = serializers.ListField(
        child=serializers.DictField(), help_text="Each fetch: request, response (or error), duration; secrets redacted"
    )
    emitted = serializers.ListField(child=serializers.DictField(), help_text="A source function's Segment.* events")
    duration_ms = serializers.FloatField()
    sent = serializers.BooleanField(help_text="false: no fetch left the hub")


class FunctionTestActions:
    """The functions viewset's `test` action (the viewset finds the function by its slug)."""

    @extend_schema(
        summary="Run test",
        description=(
            "Run the function once, as the admin's Run test does: a destination or insert function with `event`, a "
            "source function with a webhook's `body` and `headers`; `settings` and `secrets` as a destination or "
            "source would give them; `code` to try an edit before saving it. Each fetch is recorded and answered "
            "with an empty 200 unless `send` is true. The answer is what the run did: the value or the error (with "
            "what it would do to a delivery), the console, each exchange, a source function's events. Nothing is "
            "stored. Needs `integrations.view_function`; `send: true` needs `integrations.change_function` too."
        ),
        request=FunctionTestSerializer,
        responses={200: FunctionTestAnswerSerializer},
        examples=TEST_EXAMPLES,
        tags=["functions"],
    )
    @action(detail=True, methods=["post"], url_path="test", permission_classes=[needs("integrations.view_function")])
    def test(self, request: Request, **kwargs: Any) -> Response:
        function = self.get_object()  # type: ignore[attr-defined]
        body = FunctionTestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        body.check_for(function.kind)
        given = body.validated_data
        if given["send"] and not request.user.has_perm(SEND):
            raise PermissionDenied(
                f"Sending needs the {SEND} permission: leave `send` out, and each fetch is recorded, not sent."
            )
        secrets = {key: value for key, value in (given.get("secrets") or {}).items() if value is not None}
        run = run_test(
            function,
            event=given.get("event"),
            body=given.get("body"),
            headers=given.get("headers"),
            settings=given.get("settings") or {},
            secrets=secrets,
            send=given["send"],
            code=given.get("code"),
        )
        values = [value for value in secrets.values() if isinstance(value, str)]
        return Response(without_secrets(run.as_json(), values))

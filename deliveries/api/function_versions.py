"""A function's kept versions through the API: /versions lists them (newest first, a page at a time), /versions/<n>
reads one with its code and settings declaration, /rollback makes one current again. A rollback never rewrites
history: it saves a new version (Function.roll_back), checked first as any save is, since the function's kind may
have changed since that version was kept. How a settings declaration reads in an answer is documented here too,
for the function and its versions alike.

FunctionVersionActions is a mixin for the functions viewset (its `get_object` finds the function by slug, its
serializer answers a rollback with the function)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse

from deliveries.api.openapi import NamedChoiceField
from deliveries.api.permissions import needs
from integrations.functions.declaration import TYPES
from integrations.models import FunctionVersion

CHANGE = ("integrations.view_function", "integrations.change_function")


class DeclaredSettingSerializer(serializers.Serializer):
    """One setting the code reads from its `settings` argument (documentation of the stored JSON)."""

    name = serializers.CharField(help_text="A JavaScript identifier: the code reads settings.<name>")
    label = serializers.CharField(required=False, help_text="What the admin's form calls it")
    type = NamedChoiceField([(t, t) for t in TYPES], enum="SettingType", help_text="Default: string")
    description = serializers.CharField(required=False)
    required = serializers.BooleanField(required=False)
    sensitive = serializers.BooleanField(
        required=False,
        help_text="A secret (a string): stored encrypted on each destination or source, write-only everywhere",
    )


@extend_schema_field(DeclaredSettingSerializer(many=True))
class DeclarationField(serializers.JSONField):
    """The declaration as stored; Function.clean() checks it item by item."""


class FunctionVersionSerializer(serializers.ModelSerializer):
    """A kept state of the function: its number, when, by whom and why."""

    url = serializers.SerializerMethodField()
    created_by = serializers.SerializerMethodField()

    class Meta:
        model = FunctionVersion
        fields = ["number", "url", "created_at", "created_by", "note"]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, version: FunctionVersion) -> str:
        where = {"slug": self.context["function"].slug, "number": version.number}
        return reverse("function-version", kwargs=where, request=self.context["request"])

    @extend_schema_field(
        {
            "type": "string",
            "nullable": True,
            "description": "The user who saved it (null: the workspace command or a deleted user)",
        }
    )
    def get_created_by(self, version: FunctionVersion) -> str | None:
        return version.created_by.get_username() if version.created_by is not None else None


class FunctionVersionDetailSerializer(FunctionVersionSerializer):
    settings = DeclarationField(read_only=True, help_text="The settings declaration of this version, as saved")

    class Meta(FunctionVersionSerializer.Meta):
        fields = [*FunctionVersionSerializer.Meta.fields, "code", "settings"]
        read_only_fields = fields


class FunctionRollbackSerializer(serializers.Serializer):
    version = serializers.IntegerField(min_value=1, help_text="The number of the version to make current again")


def no_version(number: Any, last: int) -> str:
    return f"There is no version {number}: this function has versions 1 to {last}."


class FunctionVersionActions:
    """The functions viewset's versions, version and rollback actions."""

    @extend_schema(
        summary="List a function's versions",
        description="Newest first, a page at a time; each with its number, author and note (read one for its code).",
        responses=FunctionVersionSerializer(many=True),
    )
    @action(detail=True, methods=["get"], url_path="versions", url_name="versions")
    def versions(self, request: Request, slug: str | None = None) -> Response:
        function = self.get_object()  # type: ignore[attr-defined]
        versions = function.versions.select_related("created_by")
        page = self.paginate_queryset(versions)  # type: ignore[attr-defined]
        context = {"request": request, "function": function}
        answer = FunctionVersionSerializer(page, many=True, context=context).data
        return self.get_paginated_response(answer)  # type: ignore[attr-defined]

    @extend_schema(summary="Read a version", description="Its code and settings declaration, as saved then.")
    @action(
        detail=True,
        methods=["get"],
        url_path=r"versions/(?P<number>[0-9]{1,9})",
        url_name="version",
        serializer_class=FunctionVersionDetailSerializer,
        pagination_class=None,
    )
    def version(self, request: Request, slug: str | None = None, number: str | None = None) -> Response:
        function = self.get_object()  # type: ignore[attr-defined]
        found = function.versions.select_related("created_by").filter(number=int(number or 0)).first()
        if found is None:
            raise exceptions.NotFound(no_version(number, function.version))
        return Response(FunctionVersionDetailSerializer(found, context={"request": request, "function": function}).data)

    @extend_schema(
        summary="Roll back to a version",
        description="Make an earlier version's code and settings current again. History is never rewritten: it "
        "becomes a new version, noted as a rollback, and what runs the function uses it from its next event. "
        "Checked first, as a save is (the function's kind may have changed since). Needs "
        "`integrations.change_function`.",
        request=FunctionRollbackSerializer,
        examples=[OpenApiExample("Back to version 3", value={"version": 3}, request_only=True)],
    )
    @action(detail=True, methods=["post"], permission_classes=[needs(*CHANGE)])
    def rollback(self, request: Request, slug: str | None = None) -> Response:
        function = self.get_object()  # type: ignore[attr-defined]
        body = FunctionRollbackSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        number = body.validated_data["version"]
        old = function.versions.filter(number=number).first()
        if old is None:
            raise serializers.ValidationError({"version": [no_version(number, function.version)]})
        function.code, function.settings = old.code, old.settings
        self.get_serializer().clean_row(function)  # type: ignore[attr-defined]
        function.roll_back(number, user=request.user)
        return Response(self.get_serializer(function).data)  # type: ignore[attr-defined]

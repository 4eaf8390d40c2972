"""/api/v1/functions: the team's JavaScript (Segment's function contract) by slug, with the settings it declares.
Function.clean() is the one place code is checked, as in the admin: a syntax error is a 400 under `code` with its
line and column. Every save that changes the code or the declaration keeps a version with the caller as its author
(read and rolled back in deliveries/api/function_versions.py; Run test is deliveries/api/function_tester.py).

Destinations and sources name their function by slug, so a function in use is neither deleted (409) nor renamed
(400), and the answer says which rows use it."""

from __future__ import annotations

from typing import Any

from django.db.models import ProtectedError, QuerySet
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import exceptions, serializers, status, viewsets

from deliveries.api.function_examples import ANSWER, CHANGE_EXAMPLES, CREATE_EXAMPLES
from deliveries.api.function_tester import FunctionTestActions
from deliveries.api.function_versions import DeclarationField, FunctionVersionActions
from deliveries.api.openapi import NamedChoiceField
from deliveries.api.pagination import Cursor
from deliveries.api.serializers import StrictModelSerializer
from integrations.models import Destination, Function, Source


def named_by(function: Function) -> list[str]:
    """The destinations and sources that run the function by its slug (a rename would leave them without it)."""
    destinations = Destination.objects.filter(vendor="function", config__function=function.slug)
    sources = Source.objects.filter(kind="function", config__function=function.slug)
    return [f"destination {slug}" for slug in destinations.order_by("slug").values_list("slug", flat=True)] + [
        f"source {slug}" for slug in sources.order_by("slug").values_list("slug", flat=True)
    ]


def users_of(function: Function) -> list[str]:
    """Every row that runs the function, by slug or as an insert function: the rows Function.in_use() looks for."""
    inserting = function.insert_destinations.order_by("slug").values_list("slug", flat=True)
    return named_by(function) + [f"destination {slug} (as its insert function)" for slug in inserting]


class InUse(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "in_use"


class FunctionSerializer(StrictModelSerializer):
    """JavaScript with Segment's handlers, the settings it declares, and the number of its current version."""

    kind = NamedChoiceField(
        Function.Kind.choices,
        enum="FunctionKind",
        what="a function kind",
        help_text="What runs it: a destination (vendor `function`), a source (kind `function`), or a destination's "
        "insert function. Default: destination",
    )
    settings = DeclarationField(
        required=False,
        help_text="The settings its code reads, each destination or source giving the values (sensitive ones "
        "write-only, as credentials). Names and types only: no value is stored here.",
    )
    note = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=200,
        help_text="Why: kept with the version this save makes (when the code or the settings change)",
    )

    class Meta:
        model = Function
        fields = [
            "id",
            "name",
            "slug",
            "kind",
            "description",
            "code",
            "settings",
            "version",
            "note",
            "created_at",
            "updated_at",
        ]
        extra_kwargs = {
            "slug": {"validators": []},  # unique: checked with the rest by the model's full_clean()
            "code": {"trim_whitespace": False},  # the code as written: line numbers in errors stay right
        }

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        row = self.instance if self.instance is not None else Function()
        self.note = attrs.pop("note", "")
        if row.pk and attrs.get("slug", row.slug) != row.slug and (users := named_by(row)):
            raise serializers.ValidationError(
                {
                    "slug": [
                        f"Cannot be changed: {', '.join(users)} run the function by its slug. Make a new function "
                        "and point them at it instead."
                    ]
                }
            )
        for name, value in attrs.items():
            setattr(row, name, value)
        self.clean_row(row)
        self.row = row
        return attrs

    def create(self, validated_data: dict[str, Any]) -> Function:
        self.row.save(user=self.context["request"].user, note=self.note)  # a version when code or settings changed
        return self.row

    def update(self, instance: Function, validated_data: dict[str, Any]) -> Function:
        return self.create(validated_data)


RIGHTS = (
    " Needs `integrations.add_function` (create) or `integrations.change_function` (change): an administrator's, "
    "or a Marketer's only if the Marketer group was given them."
)


@extend_schema_view(
    list=extend_schema(
        summary="List functions",
        description="Newest first, a page at a time (`?limit=`, `next`/`previous` links), with their code. Needs "
        "`integrations.view_function`.",
        parameters=[
            OpenApiParameter(
                "kind", str, enum=Function.Kind.values, description="Only functions of this kind, e.g. `insert`"
            )
        ],
        examples=[ANSWER],
    ),
    retrieve=extend_schema(summary="Read a function", examples=[ANSWER]),
    create=extend_schema(
        summary="Create a function",
        description="Checked as the admin checks it: the code is loaded in a throwaway V8 context, so a syntax "
        'error is a 400 under `code` with its line and column (`{"code": ["code: line 2, column 13: SyntaxError: '
        "Unexpected token ';'\"]}`), as is code without a handler of its kind; each bad item of the settings "
        "declaration is a 400 under `settings`. Nothing is saved then. The first version is kept." + RIGHTS,
        examples=[*CREATE_EXAMPLES, ANSWER],
    ),
    update=extend_schema(
        summary="Replace a function",
        description="`name`, `slug` and `code` must be given; any other field left out keeps its value. A new "
        "version is kept when the code or the settings change. The slug of a function a destination or source runs "
        "cannot change, nor its kind." + RIGHTS,
        examples=[*CREATE_EXAMPLES, ANSWER],
    ),
    partial_update=extend_schema(
        summary="Change a function",
        description="Only the fields given change; a new version is kept when the code or the settings change."
        + RIGHTS,
        examples=[*CHANGE_EXAMPLES, ANSWER],
    ),
    destroy=extend_schema(
        summary="Delete a function",
        description="With its versions. A function that a destination or source runs is not deleted: 409, naming them.",
        responses={204: None, 409: OpenApiResponse(inline_serializer("InUse", {"detail": serializers.CharField()}))},
    ),
)
class FunctionViewSet(FunctionVersionActions, FunctionTestActions, viewsets.ModelViewSet):
    """Bases stay open: versions and rollback (deliveries/api/function_versions.py) and Run test
    (deliveries/api/function_tester.py) are mixins added in front."""

    queryset = Function.objects.all()
    serializer_class = FunctionSerializer
    lookup_field = "slug"
    pagination_class = Cursor

    def get_queryset(self) -> QuerySet[Function]:
        functions = super().get_queryset()
        kind = self.request.query_params.get("kind") if self.action == "list" else None
        if kind is None:
            return functions
        if kind not in Function.Kind.values:
            raise serializers.ValidationError({"kind": [f"Use one of {', '.join(Function.Kind.values)}."]})
        return functions.filter(kind=kind)

    def perform_destroy(self, function: Function) -> None:
        users = users_of(function)
        if not users:
            try:
                function.delete()
                return
            except ProtectedError:  # a destination chose it as its insert function just now
                users = users_of(function)
        raise InUse(
            f"The function is in use: {', '.join(users)}. Point them at another function (or remove the insert "
            "function) first; nothing was deleted."
        )

"""/api/v1/workspace: the workspace as code over HTTP. GET exports what `manage.py export_workspace` prints, POST
imports what `manage.py import_workspace` reads (an upsert by slug: the same file twice changes nothing).

Secrets are write-only here as everywhere in the API: the export leaves out credentials, insert secrets and signing
secrets (as the command does) and write keys too. An import without write keys keeps the stored ones, so an
exported file goes back in unchanged; to move a hub with its write keys, use the command on the server.

Functions follow their own model permissions: the export holds them for whoever may view functions, and a file
with functions needs the rights to add and change them (the versions an import saves are the caller's).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import permissions, serializers, viewsets
from rest_framework.exceptions import ParseError, PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.admin.base import MANAGE_CREDENTIALS
from integrations.workspace import ImportReport, WorkspaceError, export_workspace, import_workspace

READ = ["integrations.view_source", "integrations.view_destination"]
WRITE = [
    MANAGE_CREDENTIALS,  # an import writes credentials, write keys and signing secrets
    "integrations.add_source",
    "integrations.change_source",
    "integrations.add_destination",
    "integrations.change_destination",
]
READ_FUNCTIONS = "integrations.view_function"
WRITE_FUNCTIONS = ["integrations.add_function", "integrations.change_function"]


class WorkspacePermission(permissions.BasePermission):
    """Export: view rights on sources and destinations. Import: an administrator's (it writes secrets)."""

    message = (
        "Importing a workspace needs an administrator: the credentials permission and the rights to add and change "
        "sources and destinations."
    )

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        return request.user.has_perms(READ if request.method in permissions.SAFE_METHODS else WRITE)


def without_write_keys(workspace: dict[str, Any]) -> dict[str, Any]:
    return {**workspace, "sources": [{k: v for k, v in s.items() if k != "write_key"} for s in workspace["sources"]]}


def report_of(report: ImportReport) -> dict[str, Any]:
    return {
        "functions": {
            "created": report.functions_created,
            "updated": [{"slug": slug, "fields": names} for slug, names in report.functions_updated],
            "unchanged": report.functions_unchanged,
        },
        "sources": {"created": report.created, "updated": report.updated, "unchanged": report.unchanged},
        "destinations": {
            "created": report.destinations_created,
            "updated": [{"slug": slug, "fields": names} for slug, names in report.destinations_updated],
            "unchanged": report.destinations_unchanged,
        },
        "lines": report.lines(),
    }


def slugs() -> serializers.ListField:
    return serializers.ListField(child=serializers.CharField())


@extend_schema_serializer(many=False)  # the answer of `list` is one workspace, not a list of them
class WorkspaceSerializer(serializers.Serializer):
    """The workspace file's shape (for the document; import_workspace() checks a file)."""

    functions = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text="Functions, by slug, code included (left out for a caller who may not view functions)",
    )
    sources = serializers.ListField(child=serializers.DictField(), help_text="Sources, by slug")
    destinations = serializers.ListField(child=serializers.DictField(), help_text="Destinations, by slug")


class ImportedSourcesSerializer(serializers.Serializer):
    created = slugs()
    updated = slugs()
    unchanged = slugs()


class ChangedDestinationSerializer(serializers.Serializer):
    slug = serializers.CharField()
    fields = slugs()  # the destination's changed fields (the metaclass moves it out of the way of .fields)


class ImportedDestinationsSerializer(serializers.Serializer):
    created = slugs()
    updated = ChangedDestinationSerializer(many=True)
    unchanged = slugs()


class ImportedFunctionsSerializer(ImportedDestinationsSerializer):
    """The functions created, changed (which fields: a new version when code or settings) and left as they were."""


class ImportReportSerializer(serializers.Serializer):
    functions = ImportedFunctionsSerializer()
    sources = ImportedSourcesSerializer()
    destinations = ImportedDestinationsSerializer()
    lines = serializers.ListField(child=serializers.CharField(), help_text="What `manage.py import_workspace` prints")


class ImportProblemsSerializer(serializers.Serializer):
    detail = serializers.CharField()
    problems = serializers.ListField(child=serializers.CharField(), help_text="Every problem, with its place")


FILE = {
    "functions": [
        {
            "slug": "drop-test-users",
            "name": "Drop test users",
            "kind": "insert",
            "code": 'async function onIdentify(event) {\n  if ((event.traits.email || "").endsWith("@example.com")) '
            'throw new DropEvent("a test user");\n  return event;\n}\n',
            "settings": [],
        }
    ],
    "sources": [
        {"slug": "website", "name": "Website", "kind": "http"},
        {"slug": "cio", "name": "Customer.io", "kind": "customerio", "settings": {"signing_secret": "…"}},
    ],
    "destinations": [
        {
            "slug": "welcome-journey",
            "name": "Welcome journey",
            "vendor": "sfmc_journey",
            "sources": ["website"],
            "enabled": True,
            "config": {"subdomain": "mc-abc123", "event_definition_key": "APIEvent-welcome"},
            "credentials": {"client_id": "…", "client_secret": "…"},
            "filter": {"types": ["identify"], "events": [], "condition": None},
            "mapping": {"ContactKey": "userId", "Data": {"email": "traits.email"}},
            "insert_function": "drop-test-users",
        }
    ],
}
EXPORTED = {
    "functions": [{**f, "description": ""} for f in FILE["functions"]],
    "sources": [{k: v for k, v in s.items() if k != "settings"} | {"enabled": True} for s in FILE["sources"]],
    "destinations": [
        {k: v for k, v in d.items() if k != "credentials"} | {"insert_settings": {}} for d in FILE["destinations"]
    ],
}


class WorkspaceViewSet(viewsets.ViewSet):
    permission_classes = [WorkspacePermission]

    @extend_schema(
        summary="Export the workspace",
        description="Functions, sources and destinations in the workspace file's format, by slug; no secret is "
        "included (credentials, insert secrets, signing secrets and write keys are left out; function code is not a "
        "secret). Needs view rights on sources and destinations; functions are left out for a caller who may not "
        "view them.",
        responses={200: WorkspaceSerializer},
        examples=[OpenApiExample("A workspace", value=EXPORTED, response_only=True)],
    )
    def list(self, request: Request) -> Response:
        exported = export_workspace()
        if not request.user.has_perm(READ_FUNCTIONS):
            del exported["functions"]
        return Response(without_write_keys(exported))

    @extend_schema(
        summary="Import a workspace",
        description="Creates or updates functions, then sources, then destinations, by slug; a key left out keeps "
        "the stored value (credentials, insert secrets and write keys included), so the same file twice changes "
        "nothing (a function keeps its version unless its code or settings change). Everything is checked first, as "
        "the admin checks it: a bad file is a 400 listing every problem (a function's syntax error with its line and "
        "column), and nothing is written. Needs an administrator (`integrations.manage_credentials` and the rights "
        "to add and change sources and destinations, and functions when the file has them).",
        request=OpenApiTypes.OBJECT,
        responses={
            200: ImportReportSerializer,
            400: OpenApiResponse(ImportProblemsSerializer, description="Nothing was imported"),
        },
        examples=[
            OpenApiExample("A workspace file", value=FILE, request_only=True),
            OpenApiExample(
                "What changed",
                response_only=True,
                status_codes=["200"],
                value={
                    "functions": {"created": ["drop-test-users"], "updated": [], "unchanged": []},
                    "sources": {"created": ["cio"], "updated": [], "unchanged": ["website"]},
                    "destinations": {
                        "created": [],
                        "updated": [{"slug": "welcome-journey", "fields": ["insert_function", "mapping"]}],
                        "unchanged": [],
                    },
                    "lines": [
                        "created function drop-test-users",
                        "created source cio",
                        "unchanged source website",
                        "updated destination welcome-journey (insert_function, mapping)",
                    ],
                },
            ),
            OpenApiExample(
                "A bad file",
                response_only=True,
                status_codes=["400"],
                value={
                    "detail": "Nothing was imported: fix these problems and send the file again.",
                    "problems": ["destinations[0] (welcome-journey).config.event_definition_key: required"],
                },
            ),
        ],
    )
    def create(self, request: Request) -> Response:
        try:
            has_functions = isinstance(request.data, dict) and "functions" in request.data
            if has_functions and not request.user.has_perms(WRITE_FUNCTIONS):
                raise PermissionDenied(
                    "This file has functions: importing it needs the rights to add and change functions. Nothing "
                    "was imported."
                )
            report = import_workspace(request.data, user=request.user)
        except ParseError as exc:  # not JSON: the answer has a bad file's shape all the same
            problems = [str(exc.detail)]
        except WorkspaceError as exc:
            problems = exc.problems
        else:
            return Response(report_of(report))
        detail = "Nothing was imported: fix these problems and send the file again."
        return Response({"detail": detail, "problems": problems}, status=400)

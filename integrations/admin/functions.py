"""The function admin: the list (kind, version, what runs each function), the change page with the code in the
code editor, the settings it declares as rows and Run test beside them; every save that changes the code keeps a
version, whose history, diffs and roll back are pages of their own (function_versions.py, function_test.py)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.db.models import CharField, OuterRef, QuerySet
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, reverse
from django.utils.html import format_html, format_html_join

from integrations.admin import function_test, function_versions
from integrations.admin.base import ago, count_of
from integrations.forms.function import TYPE_LABELS, FunctionForm, named_by
from integrations.models import Destination, Function, Source


def named_function() -> Cast:
    # config.function as plain text: compared with a column (OuterRef), a JSON key lookup would read the column
    # as JSON ("malformed JSON" on SQLite).
    return Cast(KT("config__function"), output_field=CharField())


def destination_runs(slug: Any) -> QuerySet[Destination]:
    """The destinations whose vendor is this destination function (`slug`: a value or an OuterRef)."""
    return Destination.objects.annotate(runs=named_function()).filter(vendor="function", runs=slug)


def source_runs(slug: Any) -> QuerySet[Source]:
    return Source.objects.annotate(runs=named_function()).filter(kind="function", runs=slug)


@admin.register(Function)
class FunctionAdmin(admin.ModelAdmin):
    form = FunctionForm
    list_display = ["name", "kind", "version_", "updated", "used_by"]
    list_filter = ["kind"]
    search_fields = ["name", "slug", "description"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["version_", "updated", "used_by_", "code_", "settings_"]

    class Media:
        css = {"all": ["integrations/exchanges.css", "integrations/functions.css"]}
        js = ["integrations/editor/editor.js", "integrations/functions.js"]

    def get_urls(self) -> list[URLPattern]:
        # Before the stock ones: "<path:object_id>/" would take these.
        return function_versions.urls(self) + function_test.urls(self) + super().get_urls()

    def get_queryset(self, request: HttpRequest) -> QuerySet[Function]:
        """Count what runs each function in the same query as the functions."""
        return (
            super()
            .get_queryset(request)
            .annotate(
                destinations=count_of(destination_runs(OuterRef("slug")).order_by()),
                inserts=count_of(Destination.objects.filter(insert_function=OuterRef("pk")).order_by()),
                sources=count_of(source_runs(OuterRef("slug")).order_by()),
            )
        )

    def get_fieldsets(self, request: HttpRequest, obj: Function | None = None) -> list[tuple[str | None, dict]]:
        editable = obj is None or self.has_change_permission(request, obj)
        fieldsets: list[tuple[str | None, dict]] = [
            (None, {"fields": ["name", "slug", "kind", "description"]}),
            ("Code", {"fields": ["code" if editable else "code_"], "classes": ["code-fieldset"]}),
            ("Settings", {"fields": ["settings" if editable else "settings_"]}),
        ]
        if obj is not None:
            fieldsets.insert(0, ("Status", {"fields": ["version_", "updated", "used_by_"]}))
        if editable:
            fieldsets.append(("Save", {"fields": ["note"]}))
        return fieldsets

    def save_model(self, request: HttpRequest, obj: Function, form: ModelForm, change: bool) -> None:
        # The version a save makes records who made it and why.
        obj.save(user=request.user, note=form.cleaned_data.get("note") or "")

    def get_deleted_objects(
        self, objs: QuerySet[Function] | list[Function], request: HttpRequest
    ) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
        """A function a destination or source runs by its slug is kept, as one an insert function is (PROTECT)."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        for function in objs:
            protected += [
                format_html("{} {} runs {} by its slug", user._meta.verbose_name.capitalize(), user.name, function)
                for user in named_by(function.slug)
            ]
        return deleted, counts, perms_needed, protected

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Function | None = None,
    ) -> HttpResponse:
        extra = function_test.panel_context(self, request, obj)
        if obj is not None:
            extra["versions_url"] = reverse("admin:integrations_function_versions", args=[obj.pk])
        return super().render_change_form(request, {**context, **extra}, add, change, form_url, obj)

    # Columns and read-only fields

    @admin.display(description="Version", ordering="version")
    def version_(self, function: Function) -> str:
        if not function.pk:
            return "-"
        url = reverse("admin:integrations_function_versions", args=[function.pk])
        return format_html(
            '<a href="{}" title="Every version, with diffs and roll back">v{}</a>', url, function.version
        )

    @admin.display(description="Updated", ordering="updated_at")
    def updated(self, function: Function) -> str:
        return ago(function.updated_at)

    @admin.display(description="Used by")
    def used_by(self, function: Function) -> str:
        parts = [
            (getattr(function, name, 0), noun if getattr(function, name, 0) == 1 else plural)
            for name, noun, plural in (
                ("destinations", "destination", "destinations"),
                ("inserts", "destination (insert)", "destinations (insert)"),
                ("sources", "source", "sources"),
            )
        ]
        used = [(n, noun) for n, noun in parts if n]
        if not used:
            return format_html('<span class="quiet">{}</span>', "nothing yet")
        return format_html_join(", ", "{} {}", used)

    @admin.display(description="Used by")
    def used_by_(self, function: Function) -> str:
        """Each destination and source that runs the function, linked (a new version reaches them all)."""
        users = [*named_by(function.slug), *function.insert_destinations.all()]
        if not users:
            return "Nothing runs it yet: choose it on a destination or a source."
        return format_html_join(
            ", ",
            '<a href="{}">{}</a>',
            ((reverse(f"admin:integrations_{u._meta.model_name}_change", args=[u.pk]), u.name) for u in users),
        )

    @admin.display(description="Code")
    def code_(self, function: Function) -> str:
        # A read-only editor (highlighting, search), and the code Run test runs.
        return format_html(
            '<textarea id="id_code" data-code-editor="javascript" data-readonly="1" readonly>{}</textarea>',
            function.code,
        )

    @admin.display(description="Settings")
    def settings_(self, function: Function) -> str:
        items = function.declared()
        if not items:
            return "No settings."
        rows = (
            (
                item.get("name", ""),
                item.get("label", ""),
                TYPE_LABELS.get(item.get("type") or "string", item.get("type")),
                "required" if item.get("required") else "",
                "sensitive" if item.get("sensitive") else "",
                item.get("description", ""),
            )
            for item in items
        )
        return format_html(
            '<table class="declaration-readonly" data-declaration="{}">{}</table>',
            json.dumps(items),
            format_html_join(
                "", "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows
            ),
        )

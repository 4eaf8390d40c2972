"""A function's versions: every saved state of its code and settings (who saved it, when, why), any one diffed
against the current code, and roll back (a new version with the old code, logged like an admin change)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from integrations.models import Function, FunctionVersion


def urls(model_admin: admin.ModelAdmin) -> list[URLPattern]:
    """The pages' URL patterns, for the function admin's get_urls (each wrapped in admin_view)."""
    site = model_admin.admin_site

    def view(page: Any) -> Any:
        return site.admin_view(lambda request, **kwargs: page(model_admin, request, **kwargs))

    return [
        path("<int:object_id>/versions/", view(versions_view), name="integrations_function_versions"),
        path("<int:object_id>/versions/<int:number>/", view(version_view), name="integrations_function_version"),
        path(
            "<int:object_id>/versions/<int:number>/roll-back/",
            view(roll_back_view),
            name="integrations_function_roll_back",
        ),
    ]


def viewable(model_admin: admin.ModelAdmin, request: HttpRequest, object_id: int) -> Function:
    function = get_object_or_404(Function, pk=object_id)
    if not model_admin.has_view_or_change_permission(request, function):
        raise PermissionDenied
    return function


def page(model_admin: admin.ModelAdmin, request: HttpRequest, function: Function, title: str, **context: Any) -> dict:
    return {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "original": function,
        "title": title,
        "change_url": reverse("admin:integrations_function_change", args=[function.pk]),
        "versions_url": reverse("admin:integrations_function_versions", args=[function.pk]),
        **context,
    }


def versions_view(model_admin: admin.ModelAdmin, request: HttpRequest, object_id: int) -> HttpResponse:
    function = viewable(model_admin, request, object_id)
    versions = function.versions.select_related("created_by").order_by("-number")
    rows = [
        {
            "version": version,
            "current": version.number == function.version,
            "url": reverse("admin:integrations_function_version", args=[function.pk, version.number]),
        }
        for version in versions
    ]
    context = page(model_admin, request, function, f"Versions of {function.name}", rows=rows)
    return TemplateResponse(request, "admin/integrations/function/versions.html", context)


def version_view(model_admin: admin.ModelAdmin, request: HttpRequest, object_id: int, number: int) -> HttpResponse:
    """One version against the current code and settings (a read-only diff), with Roll back beside it."""
    function = viewable(model_admin, request, object_id)
    version = get_object_or_404(FunctionVersion.objects.select_related("created_by"), function=function, number=number)
    context = page(
        model_admin,
        request,
        function,
        f"{function.name}: version {number}",
        version=version,
        current=version.number == function.version,
        may_roll_back=model_admin.has_change_permission(request, function) and version.number != function.version,
        roll_back_url=reverse("admin:integrations_function_roll_back", args=[function.pk, number]),
        **diff_texts(version, function),
    )
    return TemplateResponse(request, "admin/integrations/function/version.html", context)


def roll_back_view(model_admin: admin.ModelAdmin, request: HttpRequest, object_id: int, number: int) -> HttpResponse:
    """GET asks to confirm (showing what changes); POST makes the version's code current again, as a new version."""
    function = viewable(model_admin, request, object_id)
    if not model_admin.has_change_permission(request, function):
        raise PermissionDenied
    version = get_object_or_404(FunctionVersion, function=function, number=number)
    if request.method == "POST":
        before = function.version
        made = function.roll_back(number, user=request.user)
        if made.number == before:
            messages.info(request, f"Version {number}'s code and settings are the current ones: nothing changed.")
        else:
            model_admin.log_change(
                request, function, f"Rolled back to version {number} (saved as version {made.number})."
            )
            messages.success(
                request,
                f"Rolled back to version {number}: its code is now current, as version {made.number}. "
                "Destinations and sources running the function use it from their next delivery.",
            )
        return HttpResponseRedirect(reverse("admin:integrations_function_change", args=[function.pk]))
    context = page(
        model_admin,
        request,
        function,
        f"Roll back {function.name} to version {number}?",
        version=version,
        # What the roll back does: the current code (left) becomes the version's (right).
        **diff_texts(version, function, reverse_sides=True),
    )
    return TemplateResponse(request, "admin/integrations/function/roll_back.html", context)


def diff_texts(version: FunctionVersion, function: Function, reverse_sides: bool = False) -> dict[str, str]:
    """The texts a diff shows: the version's code and settings on the left, the current ones on the right."""
    old = {"code": version.code, "settings": json.dumps(version.settings, indent=2)}
    new = {"code": function.code, "settings": json.dumps(function.settings, indent=2)}
    left, right = (new, old) if reverse_sides else (old, new)
    return {
        "code_left": left["code"],
        "code_right": right["code"],
        "settings_left": left["settings"],
        "settings_right": right["settings"],
        "settings_changed": old["settings"] != new["settings"],
    }

"""What the marketer's pages share: the permission check, links to other pages, the window a page shows, a page's
admin context, and the read-only inline of a record."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any, TypeVar

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.http import urlencode

W = TypeVar("W")


def check_permission(request: HttpRequest, permission: str) -> None:
    if not request.user.has_perm(permission):
        raise PermissionDenied


def optional_url(name: str, args: Iterable[Any] = (), query: dict[str, Any] | None = None) -> str:
    """A URL of another page with its query, or "" while that page is not installed (its link is then left out)."""
    try:
        url = reverse(name, args=list(args))
    except NoReverseMatch:
        return ""
    return f"{url}?{urlencode(query)}" if query else url


def window_of(request: HttpRequest, windows: Mapping[str, W], default: str, allowed: Collection[str] = ()) -> W:
    """The time window the page's query (or its posted form) asks for, among `allowed` (all by default)."""
    data = request.POST if request.method == "POST" else request.GET
    key = data.get("window", "")
    return windows[key] if key in (allowed or windows) else windows[default]


def page_context(model_admin: admin.ModelAdmin, request: HttpRequest, title: str, **context: Any) -> dict[str, Any]:
    """A page's template context: the admin site's (header, sidebar, breadcrumbs) and the page's own."""
    return {**model_admin.admin_site.each_context(request), "title": title, "opts": model_admin.opts, **context}


class ReadOnlyInline(admin.TabularInline):
    """A record of what happened: shown, never added to, edited or deleted from the page."""

    extra = 0

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

"""The retention policy's page: one form (no list) where a superuser sets how many days each kind of row is kept; a
blank field keeps the default from the environment, shown beside it with the days in force."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseRedirect
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from deliveries.models import RetentionPolicy
from deliveries.models.retention import KINDS

SUMMARY_NOTE = " After that, each HTTP exchange keeps its method, URL, status, duration and sizes."


class RetentionPolicyAdmin(admin.ModelAdmin):
    fields = [*(f"{kind}_days" for kind in KINDS), "in_force"]
    readonly_fields = ["in_force"]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        defaults = RetentionPolicy.defaults()
        for kind in KINDS:
            days = defaults[kind]
            form.base_fields[f"{kind}_days"].help_text = (
                f"Blank: the default, {days} day{pluralize(days)} (CDPHUB_RETENTION_{kind.upper()}_DAYS). At least 1."
                + (SUMMARY_NOTE if kind == "exchange_bodies" else "")
            )
        return form

    @admin.display(description="In force")
    def in_force(self, obj: RetentionPolicy) -> str:
        days = obj.days()
        rows = [
            (label, days[kind], "" if getattr(obj, f"{kind}_days") else " (default)") for kind, label in KINDS.items()
        ]
        return format_html(
            '<div class="readonly">{}<p>The worker deletes what is older a little every minute; '
            "<code>python manage.py purge --dry-run</code> shows what would go now.</p></div>",
            format_html_join("", "<div>{}: <b>{} days</b>{}</div>", rows),
        )

    # One row, for superusers only: the list opens it, nobody adds a second one or deletes it.
    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        if not self.has_view_permission(request):
            raise PermissionDenied
        policy = RetentionPolicy.load()
        return HttpResponseRedirect(reverse("admin:deliveries_retentionpolicy_change", args=[policy.pk]))

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> RetentionPolicy:
        return RetentionPolicy.load()

    def response_change(self, request: HttpRequest, obj: RetentionPolicy) -> Any:
        self.message_user(request, "Retention saved: the worker applies it within a minute.")
        return HttpResponseRedirect(request.path)

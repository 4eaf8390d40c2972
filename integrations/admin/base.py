"""What the Source and Destination admins share: who may see secrets, how a hidden secret and a time read, and
a deletion that counts what goes with it instead of listing millions of rows."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin
from django.contrib.humanize.templatetags.humanize import naturaltime
from django.db import models
from django.db.models import Func, IntegerField, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.text import capfirst

from integrations.crypto import Undecryptable

ACTIVITY_WINDOW = timedelta(hours=24)
MANAGE_CREDENTIALS = "integrations.manage_credentials"
ERROR_CHARS = 80


def sees_secrets(request: HttpRequest) -> bool:
    """Credentials, write keys and signing secrets are for administrators; a marketer never receives them."""
    return request.user.has_perm(MANAGE_CREDENTIALS)


def count_of(queryset: QuerySet[Any]) -> Subquery:
    """COUNT(*) of a correlated subquery, without a GROUP BY."""
    return Subquery(
        queryset.annotate(n=Func("pk", function="COUNT")).values("n"),
        output_field=IntegerField(),
    )


def ago(value: datetime | None, empty: str = "never") -> str:
    if value is None:
        return empty
    at = timezone.localtime(value)
    return format_html('<span title="{}">{}</span>', date_format(at, "Y-m-d H:i:s T"), naturaltime(value))


def stored_line(stored: Any, them: str = "them") -> str:
    """Whether secrets are stored, for someone who may not see them: no value, no mask, no key names."""
    is_stored = isinstance(stored, Undecryptable) or (isinstance(stored, dict) and any(stored.values()))
    return format_html(
        '<span class="credential-hidden">{}</span>',
        f"stored — only an administrator can see or change {them}" if is_stored else "none stored",
    )


class CountedDeletes:
    """Count what goes with the deleted objects instead of listing it: a busy one has millions of rows."""

    model: type[models.Model]
    admin_site: admin.AdminSite

    def get_deleted_objects(
        self, objs: QuerySet[Any] | list[Any], request: HttpRequest
    ) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
        opts = self.model._meta
        chosen = list(objs)
        to_delete: list[Any] = [
            format_html(
                '{}: <a href="{}">{}</a>',
                capfirst(opts.verbose_name),
                reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]),
                obj,
            )
            for obj in chosen
        ]
        model_count = {str(opts.verbose_name_plural): len(chosen)}
        perms_needed: set[str] = set()
        for relation in opts.related_objects:
            if not relation.one_to_many or relation.on_delete is not models.CASCADE:
                continue
            if not self.admin_site.is_registered(relation.related_model):
                continue  # bookkeeping rows (a destination's slots) go too, unmentioned
            related = relation.related_model._meta
            count = relation.related_model._base_manager.filter(**{f"{relation.field.name}__in": chosen}).count()
            if not count:
                continue
            name = str(related.verbose_name_plural)
            model_count[name] = count
            to_delete.append(f"{count:,} {name}, with everything recorded for them")
            if not request.user.has_perm(f"{related.app_label}.delete_{related.model_name}"):
                perms_needed.add(str(related.verbose_name))
        return to_delete, model_count, perms_needed, []


class ChangePageContext:
    """What a saved object's change page adds to Django's context, said once per admin in `change_context`
    instead of a render_change_form override in each."""

    def change_context(self, request: HttpRequest, obj: Any) -> dict[str, Any]:
        return {}

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> HttpResponse:
        if obj is not None:
            context = {**context, **self.change_context(request, obj)}
        return super().render_change_form(request, context, add, change, form_url, obj)  # type: ignore[misc]

"""The project's admin site: the stock one, with the delivery dashboard on its index page."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse


class AdminSite(admin.AdminSite):
    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        from deliveries.pages.dashboard import dashboard  # not at import: the site is made while apps load

        return super().index(request, {**dashboard(request), **(extra_context or {})})

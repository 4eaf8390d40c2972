"""Install the project's admin site (cdphub.admin.AdminSite) as django.contrib.admin's default site."""

from __future__ import annotations

import django.contrib.admin.apps


class AdminConfig(django.contrib.admin.apps.AdminConfig):
    default_site = "cdphub.admin.AdminSite"

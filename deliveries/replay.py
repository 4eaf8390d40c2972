"""Placeholder: Replay is being written."""

from __future__ import annotations

from django.contrib import admin


class ReplayAdmin(admin.ModelAdmin):
    pass

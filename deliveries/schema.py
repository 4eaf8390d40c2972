"""Placeholder: the schema admin page is being written."""

from __future__ import annotations

from typing import Any


def urls(model_admin: Any) -> list[Any]:
    """The page's URL patterns, added to its ModelAdmin's get_urls (each wrapped in admin_view)."""
    return []

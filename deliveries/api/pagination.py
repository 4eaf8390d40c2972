"""Keyset (cursor) pages for every list: a page costs the same at row 10 and at row 2 million."""

from __future__ import annotations

from rest_framework.pagination import CursorPagination


class Cursor(CursorPagination):
    """Newest first by primary key (unique and never changing, as a cursor needs); `?limit=` up to 500."""

    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500
    ordering = "-id"

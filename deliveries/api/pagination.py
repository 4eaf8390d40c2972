"""Keyset (cursor) pages for every list: a page costs the same at row 10 and at row 2 million."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request


class Cursor(CursorPagination):
    """Newest first by primary key (unique and never changing, as a cursor needs); `?limit=` up to 500."""

    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500
    ordering = "-id"


class NewestFirst(Cursor):
    """Newest first by id, or by the view's `time_order` column, then id, when its filters are read in the order of
    an index on that column (a time range, say): a sort of millions of rows avoided either way. Ties in time (a
    batch's events share their received_at) are paged by an offset into the tie, as CursorPagination does."""

    offset_cutoff = 10_000  # a tie: up to four batches of 2,500 events received in the same millisecond

    def get_ordering(self, request: Request, queryset: QuerySet, view: Any) -> tuple[str, ...]:
        column = getattr(view, "time_order", "")
        return (f"-{column}", "-id") if column else super().get_ordering(request, queryset, view)

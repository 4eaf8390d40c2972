"""A list's query parameters, read by a serializer: a bad value or an unknown name is a 400 that says which and
why, never a 500, an empty page for a typo or a filter silently left out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

from deliveries.api.pagination import Cursor

# Read by the paginator and DRF themselves (`limit` is checked here too: DRF falls back to the default page size).
PAGING = (Cursor.cursor_query_param, Cursor.page_size_query_param, "format")


class QueryTime(serializers.DateTimeField):
    """ISO 8601; a "+02:00" offset typed into a URL unencoded arrives as " 02:00" and is read as meant."""

    def to_internal_value(self, value: Any) -> datetime:
        if isinstance(value, str):
            value = value.strip().replace(" ", "+")
        return super().to_internal_value(value)


class TimeRange(serializers.Serializer):
    since = QueryTime(required=False, help_text="From this time on (ISO 8601, e.g. 2026-12-01T00:00:00Z).")
    until = QueryTime(required=False, help_text="Before this time (ISO 8601).")

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("since") and data.get("until") and data["since"] >= data["until"]:
            raise ValidationError({"until": ["The end of the time range must come after its start."]})
        return data


def read_query(query_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    """The list's filters from the query string, validated (400 on a bad value or an unknown parameter)."""
    known = set(query_class().fields)
    params = request.query_params
    problems: dict[str, list[str]] = {
        name: [f"Unknown parameter: this list takes {', '.join(sorted(known | set(PAGING[:2])))}."]
        for name in params
        if name not in known and name not in PAGING
    }
    limit = params.get(Cursor.page_size_query_param)
    if limit is not None and not (limit.isdigit() and 1 <= int(limit) <= Cursor.max_page_size):
        problems[Cursor.page_size_query_param] = [f"A page holds 1 to {Cursor.max_page_size} items."]
    query = query_class(data={name: params[name] for name in params if name in known})
    if not query.is_valid():
        problems.update(query.errors)
    if problems:
        raise ValidationError(problems)
    return {name: value for name, value in query.validated_data.items() if value not in (None, "")}

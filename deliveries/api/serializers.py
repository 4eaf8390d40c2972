"""What the configuration endpoints (sources, destinations) share: a body says exactly what it changes, and the
model's own clean() is the one place settings are checked.

DRF quietly ignores an unknown field and coerces "true" into true; here an unknown or read-only field is refused by
name and a value of the wrong JSON type is refused, so a typo never looks like a success. The model's messages
("config.url: required") are filed under the API's field names. Lists filter strictly too (`?enabled=maybe` is a 400).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import timedelta
from typing import Any, ClassVar

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as ModelValidationError
from django.db import models
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers
from rest_framework.relations import ManyRelatedField
from rest_framework.request import Request
from rest_framework.settings import api_settings

# The JSON type each kind of field takes, in the words of the error message.
JSON_TYPES: list[tuple[tuple[type, ...], tuple[type, ...], str]] = [
    ((serializers.BooleanField,), (bool,), "Must be true or false."),
    ((serializers.IntegerField, serializers.FloatField), (int, float), "Must be a number."),
    ((serializers.CharField, serializers.ChoiceField), (str,), "Must be a string."),
    ((ManyRelatedField,), (list,), "Must be a list."),
]


def type_problem(field: serializers.Field, value: Any) -> str:
    """What is wrong with the JSON type of `value` for `field` ("" when nothing is); null is the field's to judge."""
    if value is None:
        return ""
    for kinds, types, message in JSON_TYPES:
        if isinstance(field, kinds):
            ok = isinstance(value, types) and not (bool not in types and isinstance(value, bool))
            return "" if ok else message
    return ""


class SecondsField(serializers.FloatField):
    """A duration as a number of seconds (the workspace file's `retry_deadline_seconds`)."""

    default_error_messages = {"too_large": "Too large: give a number of seconds."}

    def to_internal_value(self, data: Any) -> timedelta:
        seconds = super().to_internal_value(data)
        try:
            return timedelta(seconds=seconds)
        except OverflowError:
            self.fail("too_large")

    def to_representation(self, value: timedelta) -> int | float:
        seconds = value.total_seconds()
        return int(seconds) if seconds.is_integer() else seconds


class StrictModelSerializer(serializers.ModelSerializer):
    """Refuse unknown, read-only and wrongly typed fields by name; check the row with the model's full_clean()."""

    renamed: ClassVar[dict[str, str]] = {}  # model field -> API field, where the names differ

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            problems = {key: [problem] for key, value in data.items() if (problem := self.problem(key, value))}
            if problems:
                raise serializers.ValidationError(problems)
        return super().to_internal_value(data)

    def problem(self, key: str, value: Any) -> str:
        field = self.fields.get(key)
        if field is None:
            writable = sorted(name for name, f in self.fields.items() if not f.read_only)
            return f"Unknown field: use {', '.join(writable)}."
        if field.read_only:
            return "Read-only: leave it out."
        return type_problem(field, value)

    def clean_row(self, row: models.Model, only: Collection[str] | None = None) -> None:
        """Run the model's full_clean() (the admin's checks, vendor and JMESPath included) on the row as it will be
        saved; `only`: check and report these model fields alone (and problems of the whole row)."""
        exclude = [f.name for f in row._meta.fields if only is not None and f.name not in only]
        try:
            row.full_clean(exclude=exclude)
        except ModelValidationError as exc:
            errors: dict[str, list[str]] = {}
            for name, messages in exc.message_dict.items():
                if only is not None and name not in only and name != NON_FIELD_ERRORS:
                    continue  # a problem of a field this caller may not change stays the administrator's to fix
                key = api_settings.NON_FIELD_ERRORS_KEY if name == NON_FIELD_ERRORS else self.renamed.get(name, name)
                for message in messages:
                    if key != name and message.startswith(name):
                        message = key + message[len(name) :]
                    # JMESPath errors come with a caret line under the expression: one line reads better in JSON.
                    errors.setdefault(key, []).append(" ".join(message.split()))
            if errors:
                raise serializers.ValidationError(errors) from None


ENABLED = OpenApiParameter("enabled", bool, description="Only enabled (true) or disabled (false) ones")


def strict_boolean(request: Request, name: str) -> bool | None:
    """A `?name=true|false` filter; absent: None; anything else is a 400."""
    value = request.query_params.get(name)
    if value is None:
        return None
    if value.lower() not in ("true", "false", "1", "0"):
        raise serializers.ValidationError({name: ["Use true or false."]})
    return value.lower() in ("true", "1")

"""Form fields for the JSON settings people read and type: indented JSON, and comma-separated names."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.forms.fields import InvalidJSONInput, JSONString


class PrettyJSONField(forms.JSONField):
    """JSON in a textarea, indented; blank is an empty object; a syntax error says where it is."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["widget"] = forms.Textarea(attrs={"rows": 5, "class": "vLargeTextField json", "spellcheck": "false"})
        super().__init__(*args, **kwargs)

    def to_python(self, value: Any) -> Any:
        if self.disabled:
            return value
        if value in self.empty_values:
            return {}
        if isinstance(value, list | dict | int | float | JSONString):
            return value
        try:
            converted = json.loads(value, cls=self.decoder)
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"This is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).", code="invalid"
            ) from None
        if converted is None:
            return {}  # the columns are not nullable: null means "nothing", like blank
        return JSONString(converted) if isinstance(converted, str) else converted

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, InvalidJSONInput):
            return value
        if value in (None, {}):
            return ""
        return json.dumps(value, ensure_ascii=False, indent=2, cls=self.encoder)


class CategoriesField(forms.CharField):
    """A list of names typed as "Advertising, Analytics"."""

    def prepare_value(self, value: Any) -> Any:
        return ", ".join(str(v) for v in value) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[str]:
        return [part.strip() for part in super().to_python(value).split(",") if part.strip()]

"""Form fields for the JSON settings people read and type: indented JSON, and comma-separated names; and the
one way typed JSON is read (strictly: what every database stores and every JSON reader takes back)."""

from __future__ import annotations

import json
import math
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.forms.fields import InvalidJSONInput, JSONString

MAX_DEPTH = 64  # as the Tracking API's events: no setting nests this deep, and Python's own JSON stops near 1,000


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text[:20]} is too large for a JSON number")
    return number


def _whole(text: str) -> int:
    if len(text.lstrip("-")) > 4300:  # Python's own limit on reading an integer
        raise ValueError("a number has more than 4,300 digits")
    return int(text)


def load_json(text: str) -> Any:
    """The JSON value of `text`, or json.JSONDecodeError with what is wrong: besides syntax, what Python's JSON
    takes but a database or the API's JSON would not (NaN and Infinity, numbers past a float or 4,300 digits,
    nesting past MAX_DEPTH levels, NUL characters, which PostgreSQL cannot store, and lone surrogates, which
    UTF-8 cannot carry)."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite, parse_int=_whole)
    except json.JSONDecodeError:
        raise
    except ValueError as exc:  # a constant or a number refused above
        raise json.JSONDecodeError(str(exc), text, 0) from None
    except RecursionError:
        raise json.JSONDecodeError(f"it is nested more than {MAX_DEPTH} levels deep", text, 0) from None
    problem = _problem(value)
    if problem:
        raise json.JSONDecodeError(problem, text, 0)
    return value


def _problem(value: Any) -> str:
    """What keeps a parsed value from being stored and read back alike everywhere ('' when nothing does)."""
    depth, level = 0, [[value]]  # inside a list, so that a value that is one text is checked too
    while level:
        if depth > MAX_DEPTH:
            return f"it is nested more than {MAX_DEPTH} levels deep"
        depth += 1
        below = []
        for node in level:
            children = list(node.items()) if isinstance(node, dict) else [(None, v) for v in node]
            for key, child in children:
                for text in (key, child):
                    if isinstance(text, str) and "\x00" in text:
                        return "a text holds a NUL character (\\u0000), which the database cannot store"
                    if isinstance(text, str) and not text.isascii() and _has_surrogate(text):
                        return "a text holds half a surrogate pair (\\ud800-\\udfff), which is no character"
                if isinstance(child, dict | list):
                    below.append(child)
        level = below
    return ""


def _has_surrogate(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def strict_bound_data(field: forms.Field, data: Any, initial: Any) -> Any:
    """What a JSON field shows again after an error: the value typed, read the strict way (Django's own reading
    lets a 5,000-digit number or deep nesting through as a server error)."""
    if field.disabled:
        return initial
    if data is None:
        return None
    try:
        return load_json(data)
    except json.JSONDecodeError:
        return InvalidJSONInput(data)


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
            converted = load_json(value)
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"This is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).", code="invalid"
            ) from None
        if converted is None:
            return {}  # the columns are not nullable: null means "nothing", like blank
        return JSONString(converted) if isinstance(converted, str) else converted

    def bound_data(self, data: Any, initial: Any) -> Any:
        return strict_bound_data(self, data, initial)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, InvalidJSONInput):
            return value
        if value in (None, {}):
            return ""
        return json.dumps(value, ensure_ascii=False, indent=2, cls=self.encoder)


class CategoriesField(forms.CharField):
    """A list of names typed as "Advertising, Analytics"."""

    def bound_data(self, data: Any, initial: Any) -> Any:
        return strict_bound_data(self, data, initial)

    def prepare_value(self, value: Any) -> Any:
        return ", ".join(str(v) for v in value) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[str]:
        return [part.strip() for part in super().to_python(value).split(",") if part.strip()]

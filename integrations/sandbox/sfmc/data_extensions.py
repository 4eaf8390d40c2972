"""SFMC data extensions as the fake knows them: the default one, SFMC's column types and what each accepts.

Contract: /work/shared/reference/vendor-contracts.md §1.5. Apart from the routes because the column types are a
table of their own, and the `sfmc_data_extensions` setting is checked against it before it is configured.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

DEFAULT_DATA_EXTENSIONS: dict[str, dict[str, Any]] = {
    "CDPHubContacts": {
        "primary_keys": ["ContactKey"],
        "columns": {
            "ContactKey": "Text",
            "Email": "EmailAddress",
            "FirstName": "Text",
            "LastName": "Text",
            "Phone": "Phone",
            "Plan": "Text",
            "LastSeen": "Date",
        },
    },
}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_decimal(value: Any) -> bool:
    try:
        return (_is_number(value) or isinstance(value, str)) and math.isfinite(float(value))
    except ValueError:
        return False


def _is_date(value: Any) -> bool:
    try:
        return isinstance(value, str) and bool(datetime.fromisoformat(value))
    except ValueError:
        return False


# column type -> (what the error calls it, SFMC's parse error, the check)
COLUMN_CHECKS: dict[str, tuple[str, str, Callable[[Any], bool]]] = {
    "EmailAddress": (
        "email address",
        "InvalidEmailAddress",
        lambda v: isinstance(v, str) and re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", v) is not None,
    ),
    "Number": (
        "number",
        "InvalidNumber",
        lambda v: (
            (isinstance(v, int) and not isinstance(v, bool))
            or (isinstance(v, str) and re.fullmatch(r"-?\d+", v.strip()) is not None)
        ),
    ),
    "Decimal": ("decimal", "InvalidDecimal", _is_decimal),
    "Date": ("date", "InvalidDate", _is_date),
    "Boolean": (
        "boolean",
        "InvalidBoolean",
        lambda v: isinstance(v, bool) or (isinstance(v, str) and v.lower() in {"true", "false"}),
    ),
    "Phone": (
        "phone number",
        "InvalidPhone",
        lambda v: _is_number(v) or (isinstance(v, str) and re.fullmatch(r"\+?[\d\s().-]{4,}", v) is not None),
    ),
}


COLUMN_TYPES = {"Text", *COLUMN_CHECKS}


def check_data_extensions(name: str, extensions: dict[str, dict[str, Any]]) -> None:
    """Refuse a data extension the rowset route could not use, before it is configured."""
    for key, extension in extensions.items():
        columns, primary_keys = extension.get("columns"), extension.get("primary_keys")
        if not isinstance(columns, dict) or set(columns.values()) - COLUMN_TYPES:
            raise ValueError(f"Data extension '{key}' needs columns typed {', '.join(sorted(COLUMN_TYPES))}.")
        if not isinstance(primary_keys, list) or not primary_keys or not set(primary_keys) <= columns.keys():
            raise ValueError(f"Data extension '{key}' needs primary_keys: a list of some of its columns.")


def type_error(column: str, kind: str, value: Any) -> str | None:
    """Why `value` cannot be saved in a column of this SFMC type, or None when it can ("" and null clear it)."""
    if value is None or value == "":
        return None
    if isinstance(value, dict | list):
        name, code = "value", "InvalidValue"
    elif kind in COLUMN_CHECKS and not COLUMN_CHECKS[kind][2](value):
        name, code, _ = COLUMN_CHECKS[kind]
    else:
        return None  # Text takes any scalar
    return f"{column}: The value for column [{column}] is not a valid {name}. Parse error [{code}]"


def de_id(key: str) -> uuid.UUID:
    """A stable made-up data extension ID, as SFMC quotes in 10006 messages."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"cdphub-sandbox:data-extension:{key}")


def is_row(row: Any) -> bool:
    """A rowset item: {"keys": {...}, "values": {...}} (values may be left out)."""
    return isinstance(row, dict) and isinstance(row.get("keys"), dict) and isinstance(row.get("values", {}), dict)

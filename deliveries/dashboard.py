"""Placeholder: the admin index dashboard is being written."""

from __future__ import annotations

from typing import Any


def dashboard(request: Any) -> dict[str, Any]:
    return {}

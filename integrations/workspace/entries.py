"""The shape every entry of a workspace file's lists shares: an object with a slug and only known keys."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


def open_entry(
    section: str, index: int, spec: Any, keys: Collection[str], problems: list[str]
) -> tuple[str, list[str]] | None:
    """Where the entry is, for messages ("destinations[2] (welcome)"), and what is wrong with its shape (no slug,
    unknown keys); None, with the problem added to `problems`, when it is not even an object."""
    where = f"{section}[{index}]"
    if not isinstance(spec, dict):
        problems.append(f"{where}: must be an object")
        return None
    found: list[str] = []
    slug = spec.get("slug")
    if isinstance(slug, str):
        where = f"{section}[{index}] ({slug})"
    else:
        found.append(f"{where}.slug: required (a string)")
    unknown = set(spec) - set(keys)
    if unknown:
        found.append(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    return where, found

"""Workspace as code: read, validate and apply a workspace file; export the same shape without secrets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from integrations.models import Source

SOURCE_KEYS = {"slug", "name", "kind", "write_key", "enabled", "settings"}


class WorkspaceError(Exception):
    """The file cannot be imported; `problems` lists every bad field, nothing was changed."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [
            f"{verb} source {slug}"
            for verb, slugs in (("created", self.created), ("updated", self.updated), ("unchanged", self.unchanged))
            for slug in slugs
        ]
        return out + self.notes


def _source_fields(index: int, spec: Any, problems: list[str]) -> dict[str, Any] | None:
    where = f"sources[{index}]"
    if not isinstance(spec, dict):
        problems.append(f"{where}: must be an object")
        return None
    unknown = set(spec) - SOURCE_KEYS
    if unknown:
        problems.append(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    slug = spec.get("slug")
    where = f"sources[{index}] ({slug})" if isinstance(slug, str) else where
    values = {k: spec[k] for k in SOURCE_KEYS & set(spec)}
    instance = Source(**{"name": slug, **{k: v for k, v in values.items() if k != "settings"}})
    try:
        instance.full_clean(exclude=["write_key"] if "write_key" not in spec else [], validate_unique=False)
    except ValidationError as exc:
        problems.extend(f"{where}.{name}: {' '.join(msgs)}" for name, msgs in exc.message_dict.items())
    else:  # compare and store what Django stores (2024 -> "2024"), or a re-import always looks changed
        values.update({k: getattr(instance, k) for k in values if k != "settings"})
    if "settings" in spec and not isinstance(spec["settings"], dict):
        problems.append(f"{where}.settings: must be an object")
    if "enabled" in spec and not isinstance(spec["enabled"], bool):
        problems.append(f"{where}.enabled: must be true or false")
    return values


def import_workspace(data: Any) -> ImportReport:
    """Upsert sources by slug; importing the same file twice changes nothing."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise WorkspaceError(["The workspace file must hold a JSON object with a sources list."])
    unknown = set(data) - {"sources", "destinations"}
    if unknown:
        problems.append(f"unknown top-level keys: {', '.join(sorted(unknown))}")
    specs = data.get("sources", [])
    if not isinstance(specs, list):
        problems.append("sources: must be a list")
        specs = []
    parsed = [_source_fields(i, spec, problems) for i, spec in enumerate(specs)]
    slugs = [p["slug"] for p in parsed if p and isinstance(p.get("slug"), str)]
    keys = [p["write_key"] for p in parsed if p and isinstance(p.get("write_key"), str)]
    for label, values in (("slug", slugs), ("write_key", keys)):
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            problems.append(f"sources: {label} used more than once: {', '.join(repeated)}")
    for values in parsed:
        if values and "write_key" in values:
            clash = Source.objects.filter(write_key=values["write_key"]).exclude(slug=values.get("slug")).first()
            if clash:
                problems.append(f"sources ({values.get('slug')}): write_key is already used by source {clash.slug}")
    if problems:
        raise WorkspaceError(problems)

    report = ImportReport()
    with transaction.atomic():
        for values in parsed:
            assert values is not None
            source = Source.objects.filter(slug=values["slug"]).first()
            if source is None:
                Source.objects.create(**{"name": values["slug"], **values})
                report.created.append(values["slug"])
                continue
            changed = [k for k, v in values.items() if getattr(source, k) != v]
            if changed:
                for name in changed:
                    setattr(source, name, values[name])
                source.save()
                report.updated.append(values["slug"])
            else:
                report.unchanged.append(values["slug"])
    if data.get("destinations"):
        report.notes.append(f"skipped {len(data['destinations'])} destinations: this version imports sources only")
    return report


def export_workspace() -> dict[str, Any]:
    """Return the workspace in the import format; secrets (source settings) are left out."""
    return {
        "sources": [
            {"slug": s.slug, "name": s.name, "kind": s.kind, "write_key": s.write_key, "enabled": s.enabled}
            for s in Source.objects.order_by("slug")
        ]
    }

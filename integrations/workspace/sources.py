"""The workspace file's sources: each checked with Source's own rules (a webhook source's settings the way its
source function reads them), then upserted by slug; exported without their secret settings."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError

from integrations.models import Source
from integrations.workspace.report import ImportReport

SOURCE_KEYS = {"slug", "name", "kind", "write_key", "enabled", "config", "settings"}


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
    # The settings (secrets) are checked with the rest, the way the source function will read them; what the file
    # leaves out keeps its stored value, so the check reads that (a JavaScript source's required secret, say).
    existing = Source.objects.filter(slug=slug).first() if isinstance(slug, str) else None
    kept = {k: getattr(existing, k) for k in ("name", "kind", "enabled", "config", "settings")} if existing else {}
    instance = Source(**{"name": slug, **kept, **values})
    try:
        instance.full_clean(exclude=["write_key"] if "write_key" not in spec else [], validate_unique=False)
    except ValidationError as exc:
        problems.extend(f"{where}.{name}: {' '.join(msgs)}" for name, msgs in exc.message_dict.items())
    else:  # compare and store what Django stores (2024 -> "2024"), or a re-import always looks changed
        values.update({k: getattr(instance, k) for k in values if k != "settings"})
    said = any(p.startswith(f"{where}.settings") for p in problems)  # by the source function's check
    if "settings" in spec and not isinstance(spec["settings"], dict) and not said:
        problems.append(f"{where}.settings: must be an object")
    if "enabled" in spec and not isinstance(spec["enabled"], bool):
        problems.append(f"{where}.enabled: must be true or false")
    return values


def check_sources(data: dict[str, Any], problems: list[str]) -> list[dict[str, Any]]:
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
    return [p for p in parsed if p is not None]


def apply_sources(parsed: list[dict[str, Any]], report: ImportReport) -> None:
    for values in parsed:
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


def exported_sources() -> list[dict[str, Any]]:
    """The sources in the file's format; their settings (secrets) are not even loaded."""
    return [
        {"slug": s.slug, "name": s.name, "kind": s.kind, "write_key": s.write_key, "enabled": s.enabled}
        | ({"config": s.config} if s.config else {})
        for s in Source.objects.order_by("slug").defer("settings")
    ]

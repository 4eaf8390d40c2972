"""Workspace as code: read, validate and apply a workspace file; export the same shape without secrets.

Sources and destinations are matched by slug. A key left out of the file keeps the stored value (a new row
gets the model default); destination `credentials` left out keep the stored secrets, so an exported file,
which never holds them, re-imports without change. Every problem is listed with its place and nothing is
applied unless the whole file is good.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from integrations.models import Destination, Source
from integrations.vendors import VENDORS

SOURCE_KEYS = {"slug", "name", "kind", "write_key", "enabled", "config", "settings"}
# The workspace key of each destination setting, in export order; retry_deadline is written in seconds.
DESTINATION_KEYS = (
    "slug",
    "name",
    "vendor",
    "sources",
    "enabled",
    "config",
    "credentials",
    "filter",
    "mapping",
    "consent_categories",
    "rate_limit",
    "rate_period",
    "concurrency",
    "timeout",
    "retry_deadline_seconds",
)
INTEGER_OR_NULL = ("rate_limit", "concurrency")
NUMBER_OR_NULL = ("rate_period",)
NUMBER = ("timeout", "retry_deadline_seconds")


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
    destinations_created: list[str] = field(default_factory=list)
    destinations_updated: list[tuple[str, list[str]]] = field(default_factory=list)
    destinations_unchanged: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """One line per source, then per destination; changed destination fields by name, never by value."""
        out = [
            f"{verb} source {slug}"
            for verb, slugs in (("created", self.created), ("updated", self.updated), ("unchanged", self.unchanged))
            for slug in slugs
        ]
        out += [f"created destination {slug}" for slug in self.destinations_created]
        out += [f"updated destination {slug} ({', '.join(names)})" for slug, names in self.destinations_updated]
        out += [f"unchanged destination {slug}" for slug in self.destinations_unchanged]
        return out


# Sources ---------------------------------------------------------------------------------------------


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
    # The settings (secrets) are checked with the rest, the way the source function will read them.
    instance = Source(**{"name": slug, **values})
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


def _check_sources(data: dict[str, Any], problems: list[str]) -> list[dict[str, Any]]:
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


def _apply_sources(parsed: list[dict[str, Any]], report: ImportReport) -> None:
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


# Destinations ----------------------------------------------------------------------------------------


@dataclass
class DestinationPlan:
    slug: str
    values: dict[str, Any]  # model field name -> value, only the keys the file gives (credentials included)
    sources: list[str] | None  # source slugs, None when the file leaves them out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_whole(value: Any) -> bool:
    return _is_number(value) and float(value).is_integer()


def _key(name: str) -> str:
    """The workspace key of a model field."""
    return "retry_deadline_seconds" if name == "retry_deadline" else name


def _destination_plan(index: int, spec: Any, known_sources: set[str], problems: list[str]) -> DestinationPlan | None:
    """Check one destination with the rules of Destination.clean(); return what to apply, or None."""
    where = f"destinations[{index}]"
    if not isinstance(spec, dict):
        problems.append(f"{where}: must be an object")
        return None
    found: list[str] = []
    slug = spec.get("slug")
    if isinstance(slug, str):
        where = f"destinations[{index}] ({slug})"
    else:
        found.append(f"{where}.slug: required (a string)")
    unknown = set(spec) - set(DESTINATION_KEYS)
    if unknown:
        found.append(f"{where}: unknown keys {', '.join(sorted(unknown))}")

    # Type checks first; a key that fails one stays out of the model checks below, which would repeat it.
    bad: set[str] = set()
    if "enabled" in spec and not isinstance(spec["enabled"], bool):
        bad.add("enabled")
        found.append(f"{where}.enabled: must be true or false")
    for name in INTEGER_OR_NULL:
        if name in spec and spec[name] is not None and not _is_whole(spec[name]):
            bad.add(name)
            found.append(f"{where}.{name}: must be a whole number or null")
    for name in NUMBER_OR_NULL + NUMBER:
        if name in spec and not (_is_number(spec[name]) or (name in NUMBER_OR_NULL and spec[name] is None)):
            bad.add(name)
            found.append(f"{where}.{name}: must be a number of seconds{' or null' if name in NUMBER_OR_NULL else ''}")
    existing = Destination.objects.filter(slug=slug).first() if isinstance(slug, str) else None
    vendor = spec.get("vendor")
    if "vendor" in spec and vendor not in VENDORS:
        bad.add("vendor")
        found.append(f"{where}.vendor: {str(vendor)[:60]!r} is not a vendor (use {', '.join(sorted(VENDORS))})")
    elif existing is None and "vendor" not in spec:
        found.append(f"{where}.vendor: required (one of {', '.join(sorted(VENDORS))})")
    sources = spec.get("sources")
    if "sources" in spec:
        if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
            found.append(f"{where}.sources: must be a list of source slugs")
            sources = None
        else:
            missing = [s for s in sources if s not in known_sources]
            if missing:
                found.append(f"{where}.sources: no source with slug {', '.join(map(repr, missing))}")

    values = {
        k: spec[k]
        for k in DESTINATION_KEYS
        if k in spec and k not in bad and k not in ("slug", "sources", "retry_deadline_seconds")
    }
    for name in INTEGER_OR_NULL:
        if values.get(name) is not None:
            values[name] = int(values[name])  # 20.0 -> 20
    if "retry_deadline_seconds" in spec and "retry_deadline_seconds" not in bad:
        try:
            values["retry_deadline"] = timedelta(seconds=spec["retry_deadline_seconds"])
        except OverflowError:
            found.append(f"{where}.retry_deadline_seconds: too large")

    # The row as it will be: the stored one (credentials, decrypted, kept unless the file gives them) or a new
    # one, with the file's values on top; then the same checks as the admin's form.
    if existing is not None:
        instance = Destination(**{f.attname: getattr(existing, f.attname) for f in Destination._meta.concrete_fields})
        for name, value in values.items():
            setattr(instance, name, value)
    else:
        instance = Destination(**{"name": slug, "slug": slug, **values})
    if "vendor" in bad:
        instance.vendor = ""  # no vendor rules for a vendor that does not exist
    try:
        instance.clean_fields(exclude=["vendor", "credentials"] + ([] if isinstance(slug, str) else ["slug", "name"]))
    except ValidationError as exc:
        found.extend(f"{where}.{_key(name)}: {' '.join(msgs)}" for name, msgs in exc.message_dict.items())
    try:
        instance.clean()
    except ValidationError as exc:  # each message starts with its path: "config.url: required"
        found.extend(
            f"{where}.{_key(name)}{message[len(name) :]}" if message.startswith(name) else f"{where}: {message}"
            for name, messages in exc.message_dict.items()
            for message in messages
        )
    if found:
        problems.extend(found)
        return None
    # Compare and store what Django stores ("2024" for a name of 2024), or a re-import always looks changed.
    return DestinationPlan(slug, {name: getattr(instance, name) for name in values}, sources)


def _check_destinations(data: dict[str, Any], known_sources: set[str], problems: list[str]) -> list[DestinationPlan]:
    specs = data.get("destinations", [])
    if not isinstance(specs, list):
        problems.append("destinations: must be a list")
        return []
    plans = [_destination_plan(i, spec, known_sources, problems) for i, spec in enumerate(specs)]
    slugs = [spec["slug"] for spec in specs if isinstance(spec, dict) and isinstance(spec.get("slug"), str)]
    repeated = sorted({s for s in slugs if slugs.count(s) > 1})
    if repeated:
        problems.append(f"destinations: slug used more than once: {', '.join(repeated)}")
    return [p for p in plans if p is not None]


def _apply_destinations(plans: list[DestinationPlan], report: ImportReport) -> None:
    sources = {s.slug: s for s in Source.objects.all()}
    for plan in plans:
        destination = Destination.objects.filter(slug=plan.slug).first()
        if destination is None:
            destination = Destination.objects.create(**{"name": plan.slug, "slug": plan.slug, **plan.values})
            if plan.sources:
                destination.sources.set([sources[s] for s in plan.sources])
            report.destinations_created.append(plan.slug)
            continue
        changed = [name for name, value in plan.values.items() if getattr(destination, name) != value]
        sources_changed = plan.sources is not None and set(plan.sources) != set(
            destination.sources.values_list("slug", flat=True)
        )
        if not changed and not sources_changed:
            report.destinations_unchanged.append(plan.slug)
            continue
        for name in changed:
            setattr(destination, name, plan.values[name])
        # Only what changed is written: unchanged credentials keep their token as it is.
        destination.save(update_fields=[*changed, "updated_at"])
        if sources_changed:
            destination.sources.set([sources[s] for s in plan.sources or []])
        names = [_key(n) for n in changed] + (["sources"] if sources_changed else [])
        report.destinations_updated.append((plan.slug, names))


# Import and export -----------------------------------------------------------------------------------


def import_workspace(data: Any) -> ImportReport:
    """Upsert sources, then destinations, by slug; importing the same file twice changes nothing."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise WorkspaceError(["The workspace file must hold a JSON object with sources and destinations lists."])
    unknown = set(data) - {"sources", "destinations"}
    if unknown:
        problems.append(f"unknown top-level keys: {', '.join(sorted(unknown))}")
    sources = _check_sources(data, problems)
    known_sources = set(Source.objects.values_list("slug", flat=True)) | {
        s["slug"] for s in sources if isinstance(s.get("slug"), str)
    }
    destinations = _check_destinations(data, known_sources, problems)
    if problems:  # one line each: JMESPath errors come with a caret line under the expression
        raise WorkspaceError([" ".join(p.split()) for p in problems])

    report = ImportReport()
    with transaction.atomic():
        _apply_sources(sources, report)
        _apply_destinations(destinations, report)
    return report


def _seconds(value: timedelta) -> int | float:
    seconds = value.total_seconds()
    return int(seconds) if seconds.is_integer() else seconds


def export_workspace() -> dict[str, Any]:
    """Return the workspace in the import format; secrets (source settings, credentials) are left out."""
    # Secrets are not even loaded (nor decrypted): deferred fields are read only when touched.
    destinations = Destination.objects.order_by("slug").defer("credentials").prefetch_related("sources")
    return {
        "sources": [
            {"slug": s.slug, "name": s.name, "kind": s.kind, "write_key": s.write_key, "enabled": s.enabled}
            | ({"config": s.config} if s.config else {})
            for s in Source.objects.order_by("slug").defer("settings")
        ],
        "destinations": [
            {
                "slug": d.slug,
                "name": d.name,
                "vendor": d.vendor,
                "sources": sorted(s.slug for s in d.sources.all()),
                "enabled": d.enabled,
                "config": d.config,
                "filter": d.filter,
                "mapping": d.mapping,
                "consent_categories": d.consent_categories,
                "rate_limit": d.rate_limit,
                "rate_period": d.rate_period,
                "concurrency": d.concurrency,
                "timeout": d.timeout,
                "retry_deadline_seconds": _seconds(d.retry_deadline),
            }
            for d in destinations
        ],
    }

"""The workspace file's destinations: each checked with the rules of Destination.clean() on the row as it will be
(the stored one with the file's values on top), then upserted by slug, writing only what changed; exported
without their credentials. A destination's insert function is named by slug, with its plain `insert_settings`
(exported) and its `insert_secrets` (never exported, kept when left out, like credentials)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError

from integrations.models import Destination, Function, Source
from integrations.vendors import VENDORS
from integrations.workspace.entries import open_entry
from integrations.workspace.report import ImportReport

# The workspace key of each destination setting, in export order; retry_deadline is written in seconds.
DESTINATION_KEYS = (
    "slug",
    "name",
    "vendor",
    "sources",
    "enabled",
    "config",
    "credentials",
    "insert_function",
    "insert_settings",
    "insert_secrets",
    "filter",
    "mapping",
    "consent_categories",
    "rate_mode",
    "rate_limit",
    "rate_period",
    "concurrency",
    "timeout",
    "retry_deadline_seconds",
)
INTEGER_OR_NULL = ("rate_limit", "concurrency")
NUMBER_OR_NULL = ("rate_period",)
NUMBER = ("timeout", "retry_deadline_seconds")


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
    opened = open_entry("destinations", index, spec, DESTINATION_KEYS, problems)
    if opened is None:
        return None
    where, found = opened
    slug = spec.get("slug")

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
    if "rate_mode" in spec and spec["rate_mode"] not in Destination.RateMode.values:
        bad.add("rate_mode")
        found.append(f"{where}.rate_mode: must be {' or '.join(map(repr, Destination.RateMode.values))}")
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
    chosen, insert = spec.get("insert_function"), None
    if chosen is not None:  # a slug: the file's own functions are stored by now
        insert = Function.objects.filter(slug=chosen).first() if isinstance(chosen, str) else None
        if insert is None:
            bad.add("insert_function")
            found.append(
                f"{where}.insert_function: "
                + (f"no function with slug {chosen[:60]!r}" if isinstance(chosen, str) else "must be a slug or null")
            )

    values = {
        k: spec[k]
        for k in DESTINATION_KEYS
        if k in spec and k not in bad and k not in ("slug", "sources", "retry_deadline_seconds")
    }
    for name in INTEGER_OR_NULL:
        if values.get(name) is not None:
            values[name] = int(values[name])  # 20.0 -> 20
    if "insert_function" in values:
        values["insert_function"] = insert
        if insert is None:  # no insert function: none of its settings or secrets either, unless the file says
            values.setdefault("insert_settings", {})
            values.setdefault("insert_secrets", {})
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
        secrets = ["credentials", "insert_function", "insert_secrets"]  # checked by clean(), with better words
        instance.clean_fields(exclude=["vendor", *secrets] + ([] if isinstance(slug, str) else ["slug", "name"]))
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


def check_destinations(data: dict[str, Any], known_sources: set[str], problems: list[str]) -> list[DestinationPlan]:
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


def apply_destinations(plans: list[DestinationPlan], report: ImportReport) -> None:
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


def _seconds(value: timedelta) -> int | float:
    seconds = value.total_seconds()
    return int(seconds) if seconds.is_integer() else seconds


def exported_destinations() -> list[dict[str, Any]]:
    """The destinations in the file's format; their credentials and insert secrets are not even loaded (nor
    decrypted): deferred fields are read only when touched."""
    destinations = (
        Destination.objects.order_by("slug")
        .defer("credentials", "insert_secrets")
        .select_related("insert_function")
        .prefetch_related("sources")
    )
    return [
        {
            "slug": d.slug,
            "name": d.name,
            "vendor": d.vendor,
            "sources": sorted(s.slug for s in d.sources.all()),
            "enabled": d.enabled,
            "config": d.config,
            **(
                {"insert_function": d.insert_function.slug, "insert_settings": d.insert_settings}
                if d.insert_function is not None
                else {}
            ),
            "filter": d.filter,
            "mapping": d.mapping,
            "consent_categories": d.consent_categories,
            "rate_mode": d.rate_mode,
            "rate_limit": d.rate_limit,
            "rate_period": d.rate_period,
            "concurrency": d.concurrency,
            "timeout": d.timeout,
            "retry_deadline_seconds": _seconds(d.retry_deadline),
        }
        for d in destinations
    ]
